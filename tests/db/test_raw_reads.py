"""`nexus.db.raw`: one SQL text for both executors, named parameters numbered once.

How a read pool connection behaves when a statement fails, is cut half-way or loses its
backend: tests/db/test_read_pool.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.raw import Statement, fetch
from nexus.db.readpool import ReadPool, asyncpg_dsn


@pytest_asyncio.fixture
async def pool(db_url: str) -> AsyncIterator[ReadPool]:
    read_pool = ReadPool(asyncpg_dsn(make_url(db_url)), size=1)
    try:
        yield read_pool
    finally:
        await read_pool.close()


def test_named_parameters_become_asyncpg_numbers_once_per_name() -> None:
    st = Statement("SELECT :a::int + CAST(:b AS int) WHERE :a > 0 AND x::text = 'y:z'")
    assert st.positional == "SELECT $1::int + CAST($2 AS int) WHERE $1 > 0 AND x::text = 'y:z'"
    assert st.names == ("a", "b")
    assert st.arguments({"b": 2, "a": 1}) == [1, 2]


async def test_both_executors_answer_the_same_rows(
    pool: ReadPool, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    st = Statement("SELECT CAST(:n AS int) * 2 AS doubled, CAST(:s AS text) AS s")
    params = {"n": 21, "s": "x"}
    async with pool.reading() as reader:
        raw = [dict(r) for r in await fetch(reader, st, params)]
    async with sessionmaker() as session:
        via_session = [dict(r) for r in await fetch(session, st, params)]
    assert raw == via_session == [{"doubled": 42, "s": "x"}]
