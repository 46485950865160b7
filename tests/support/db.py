"""Rows by SQL for tests, through either a session or a sessionmaker.

A session reads inside the test's own transaction (what it has not committed included);
a sessionmaker opens a new session per call and sees only committed rows, as another
process would. Writes through a sessionmaker commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.processes import poll
from tests.support.services import asyncpg_dsn

Db = AsyncSession | async_sessionmaker[AsyncSession]


@asynccontextmanager
async def reading(db: Db) -> AsyncIterator[AsyncSession]:
    if isinstance(db, AsyncSession):
        yield db
    else:
        async with db() as session:
            yield session


async def scalar(db: Db, sql: str, **params: Any) -> Any:
    async with reading(db) as s:
        return await s.scalar(text(sql), params)


async def count(db: Db, sql: str, **params: Any) -> int:
    """`sql` is a `SELECT count(*) ...`."""
    return int(await scalar(db, sql, **params) or 0)


async def first(db: Db, sql: str, **params: Any) -> Row[Any] | None:
    async with reading(db) as s:
        return (await s.execute(text(sql), params)).first()


async def one(db: Db, sql: str, **params: Any) -> Row[Any]:
    """The only row `sql` returns (fails when there is none or more than one)."""
    async with reading(db) as s:
        return (await s.execute(text(sql), params)).one()


async def rows(db: Db, sql: str, **params: Any) -> list[Row[Any]]:
    async with reading(db) as s:
        return list(await s.execute(text(sql), params))


async def execute(db: Db, sql: str, **params: Any) -> None:
    if isinstance(db, AsyncSession):
        await db.execute(text(sql), params)
        return
    async with db() as s, s.begin():
        await s.execute(text(sql), params)


async def backend_gone(db_name: str, pid: int, *, terminate: bool = False) -> None:
    """Wait until PostgreSQL backend `pid` of `db_name` has exited, terminating it first
    when asked (`pg_terminate_backend` only signals: the backend ends a moment later)."""
    admin = await asyncpg.connect(asyncpg_dsn(db_name))
    try:
        if terminate:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

        async def gone() -> bool:
            n = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
            return n == 0

        await poll(gone, deadline_s=10, what=f"backend {pid} to exit")
    finally:
        await admin.close()
