"""ASGI entry point: `hypercorn web.asgi:app` (settings from the NEXUS_* environment)."""

from __future__ import annotations

from web.app import create_app

app = create_app()
