"""ASGI entry point: `hypercorn web.asgi:app` (settings from the NEXUS_* environment)."""

from __future__ import annotations

import gc

from web.app import create_app

app = create_app()

# What exists now (the app, its routes and schemas, SQLAlchemy, pydantic: ~185,000 tracked
# objects) lives as long as the worker. Frozen, the collector stops walking it again on
# every full collection: the 50-media page spent ~85 µs a request in the collector
# before, ~30 µs after (docs/performance.md). Only here, in the serving process: a test
# process builds and drops many apps, and frozen objects are never collected.
gc.collect()
gc.freeze()
