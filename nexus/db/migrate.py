"""Run Alembic programmatically (the `nexus migrate` command and the tests use this)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations


def alembic_config(database_url: str) -> Config:
    folder = Path(migrations.__file__).resolve().parent
    cfg = Config(str(folder / "alembic.ini"))
    cfg.set_main_option("script_location", str(folder))
    cfg.attributes["database_url"] = database_url
    return cfg


def _run(database_url: str, action: str, revision: str) -> None:
    cfg = alembic_config(database_url)
    if action == "upgrade":
        command.upgrade(cfg, revision)
    elif action == "downgrade":
        command.downgrade(cfg, revision)
    else:
        raise ValueError(f"unknown migration action {action!r}")


def migrate(database_url: str, action: str = "upgrade", revision: str = "head") -> None:
    """Apply migrations synchronously (Alembic's env runs its own event loop)."""
    _run(database_url, action, revision)


async def migrate_async(database_url: str, action: str = "upgrade", revision: str = "head") -> None:
    """Apply migrations from async code without nesting event loops."""
    await asyncio.to_thread(_run, database_url, action, revision)
