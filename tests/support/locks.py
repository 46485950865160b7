"""Synchronise on real lock waits (pg_stat_activity), never on sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def lock_waiters(sm: async_sessionmaker[AsyncSession]) -> int:
    """How many other backends of this database are waiting on a lock right now."""
    async with sm() as session:
        n = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        )
        return int(n or 0)


async def wait_until_blocked(
    sm: async_sessionmaker[AsyncSession], task: asyncio.Task[Any], *, deadline_s: float = 10.0
) -> None:
    """Return once some backend waits on a lock; fail if `task` finishes first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if task.done():
            raise AssertionError("the operation finished instead of waiting on the lock")
        if await lock_waiters(sm) >= 1:
            return
        await asyncio.sleep(0.005)  # polling interval, not synchronisation
    raise AssertionError("no lock wait before the deadline")


@asynccontextmanager
async def rows_locked(
    sm: async_sessionmaker[AsyncSession], sql: str, **params: Any
) -> AsyncIterator[AsyncSession]:
    """Hold the rows `sql` selects `FOR UPDATE` in an open transaction until the block ends
    (then rolled back): whoever needs them meanwhile waits, for real."""
    async with sm() as holder:
        await holder.begin()
        try:
            await holder.execute(text(f"{sql} FOR UPDATE"), params)
            yield holder
        finally:
            await holder.rollback()


def membership_locked(
    sm: async_sessionmaker[AsyncSession], library_id: object, user_id: object
) -> AbstractAsyncContextManager[AsyncSession]:
    """`rows_locked` on one membership: a backfill of it waits in its first chunk."""
    return rows_locked(
        sm,
        "SELECT 1 FROM memberships WHERE library_id = :s AND user_id = :u",
        s=library_id,
        u=user_id,
    )
