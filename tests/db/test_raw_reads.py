"""Reads on the driver connection (`nexus.db.raw`): one SQL text for both executors, the
pool's own connections, failures translated, and a connection that failed or was cut
half-way never handed out again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nexus.db import engine as engine_module
from nexus.db.engine import make_engine, make_sessionmaker
from nexus.db.raw import Statement, driver_reading, fetch
from nexus.errors import NexusError
from tests.conftest import make_settings
from tests.support.db import backend_gone

BACKEND = Statement("SELECT pg_backend_pid() AS pid")


@pytest_asyncio.fixture
async def one_conn(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A pool of one connection, never pinged: reads one after the other get the same
    connection unless it was replaced."""
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    eng: AsyncEngine = make_engine(make_settings(database_url=db_url), pool_size=1)
    try:
        yield make_sessionmaker(eng)
    finally:
        await eng.dispose()


async def _pid(sm: async_sessionmaker[AsyncSession]) -> int:
    async with driver_reading(sm) as reader:
        (row,) = await fetch(reader, BACKEND, {})
        return int(row["pid"])


def test_named_parameters_become_asyncpg_numbers_once_per_name() -> None:
    st = Statement("SELECT :a::int + CAST(:b AS int) WHERE :a > 0 AND x::text = 'y:z'")
    assert st.positional == "SELECT $1::int + CAST($2 AS int) WHERE $1 > 0 AND x::text = 'y:z'"
    assert st.names == ("a", "b")
    assert st.arguments({"b": 2, "a": 1}) == [1, 2]


async def test_both_executors_answer_the_same_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    st = Statement("SELECT CAST(:n AS int) * 2 AS doubled, CAST(:s AS text) AS s")
    params = {"n": 21, "s": "x"}
    async with driver_reading(sessionmaker) as reader:
        raw = [dict(r) for r in await fetch(reader, st, params)]
    async with sessionmaker() as session:
        via_session = [dict(r) for r in await fetch(session, st, params)]
    assert raw == via_session == [{"doubled": 42, "s": "x"}]


async def test_reads_reuse_the_pools_connection(
    one_conn: async_sessionmaker[AsyncSession],
) -> None:
    assert await _pid(one_conn) == await _pid(one_conn)


async def test_a_server_error_leaves_the_connection_in_the_pool(
    one_conn: async_sessionmaker[AsyncSession],
) -> None:
    before = await _pid(one_conn)
    with pytest.raises(asyncpg.DivisionByZeroError):  # not ours to translate: a 500
        async with driver_reading(one_conn) as reader:
            await fetch(reader, Statement("SELECT 1 / 0"), {})
    assert await _pid(one_conn) == before


async def test_a_statement_cut_half_way_does_not_return_its_connection(
    one_conn: async_sessionmaker[AsyncSession], db_name: str
) -> None:
    """The request deadline cancels a read mid-statement: the protocol state of that
    connection is unknown, so the next read gets a new one (and it works), and the
    server does not keep running the abandoned statement."""
    before = await _pid(one_conn)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2), driver_reading(one_conn) as reader:
            await fetch(reader, Statement("SELECT pg_sleep(60)"), {})
    assert await _pid(one_conn) != before
    await backend_gone(db_name, before)  # the server does not run it on for nobody


async def test_a_killed_backend_is_503_and_replaced(
    one_conn: async_sessionmaker[AsyncSession], db_name: str
) -> None:
    before = await _pid(one_conn)
    await backend_gone(db_name, before, terminate=True)
    with pytest.raises(NexusError) as raised:
        async with driver_reading(one_conn) as reader:
            await fetch(reader, BACKEND, {})
    assert raised.value.code == "E_DEPENDENCY_UNAVAILABLE"
    assert await _pid(one_conn) != before


async def test_an_unreachable_database_is_503() -> None:
    eng = make_engine(
        make_settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:5432/nexus_none_x"),
        pool_size=1,
    )
    try:
        with pytest.raises(NexusError) as raised:
            async with driver_reading(make_sessionmaker(eng)):
                pass
        assert raised.value.code == "E_DEPENDENCY_UNAVAILABLE"
    finally:
        await eng.dispose()
