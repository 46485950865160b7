"""The unit of work: one transaction per request or per consumed message."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from nexus.db.errors import translate_db_errors


@contextlib.asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Open a session and a transaction; commit on success, roll back on any error.

    Database failures surface as `NexusError`s (see `translate_db_errors`).
    """
    async with translate_db_errors():
        async with sessionmaker() as session, session.begin():
            yield session


@contextlib.asynccontextmanager
async def autocommit(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncConnection]:
    """A connection on which every statement commits by itself: no BEGIN/COMMIT round
    trips. Only for writes that are one statement (a counter, a status mark)."""
    async with translate_db_errors():
        async with sessionmaker.kw["bind"].connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")
