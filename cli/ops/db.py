"""One unit of work for a CLI command: engine, session, transaction, then dispose."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from nexus.config import Settings
from nexus.db.engine import make_engine, make_sessionmaker
from nexus.db.tx import transaction


@contextlib.asynccontextmanager
async def session_scope(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session in one transaction (commit on success); the engine lives only this long."""
    engine = make_engine(settings, pool_size=1)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            yield session
    finally:
        await engine.dispose()
