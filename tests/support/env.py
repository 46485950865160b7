"""NEXUS_* environments for the settings tests."""

from __future__ import annotations

import pytest

# What staging and prod refuse to start without, with values their checks find sound.
PROD_REQUIRED = {
    "NEXUS_UPLOAD_SIGNING_KEY": "Qm9vbS1zaWduaW5nLWtleS0xMjM0NTY3ODkw-xYz",
    "NEXUS_INTERNAL_SECRET": "bff-Shared-7f3c9a1e5d2b",
    "NEXUS_JWKS_URL": "https://id.example/.well-known/jwks.json",
    "NEXUS_JWT_ISSUER": "https://id.example/",
    "NEXUS_DATABASE_URL": "postgresql+asyncpg://nexus@db:5432/nexus",
}
PROD = {"NEXUS_ENV": "prod", **PROD_REQUIRED}


def set_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
