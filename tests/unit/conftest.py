from __future__ import annotations

import pytest


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI in this process talks to the test's own database."""
    monkeypatch.setenv("NEXUS_DATABASE_URL", db_url)
    return db_url
