"""The hot reads' own asyncpg pool (`nexus.db.readpool`): its connections are kept and
reused, failures are 503s, and a connection that failed, was cut half-way or went stale
while idle is never handed out again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from nexus.db import engine as engine_module
from nexus.db.raw import Statement, fetch
from nexus.db.readpool import ReadPool, asyncpg_dsn
from nexus.errors import NexusError
from tests.support.db import backend_gone

BACKEND = Statement("SELECT pg_backend_pid() AS pid")


@pytest_asyncio.fixture
async def one_conn(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ReadPool]:
    """A read pool of one connection, never pinged (unless a test says so): reads one
    after the other get the same connection unless it was replaced."""
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    pool = ReadPool(asyncpg_dsn(make_url(db_url)), size=1)
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


async def _pid(pool: ReadPool) -> int:
    async with pool.reading() as reader:
        (row,) = await fetch(reader, BACKEND, {})
        return int(row["pid"])


async def _kill(db_name: str, pid: int) -> None:
    await backend_gone(db_name, pid, terminate=True)


def test_the_engine_url_becomes_a_libpq_dsn_with_its_password_and_query() -> None:
    url = make_url("postgresql+asyncpg://u:p%40ss@db:5433/nexus?ssl=require")
    assert asyncpg_dsn(url) == "postgresql://u:p%40ss@db:5433/nexus?ssl=require"


async def test_reads_reuse_the_pools_connection_and_are_counted(
    one_conn: ReadPool,
) -> None:
    before = await _pid(one_conn)
    assert await _pid(one_conn) == before
    seen: list[str] = []

    def log(record: asyncpg.connection.LoggedQuery) -> None:
        seen.append(record.query)

    one_conn.add_query_logger(log)
    await _pid(one_conn)
    one_conn.remove_query_logger(log)
    await _pid(one_conn)
    assert seen == [BACKEND.positional]
    assert one_conn.checked_out == 0


async def test_a_server_error_leaves_the_connection_in_the_pool(one_conn: ReadPool) -> None:
    before = await _pid(one_conn)
    with pytest.raises(asyncpg.DivisionByZeroError):  # not ours to translate: a 500
        async with one_conn.reading() as reader:
            await fetch(reader, Statement("SELECT 1 / 0"), {})
    assert await _pid(one_conn) == before


async def test_a_statement_cut_half_way_does_not_return_its_connection(
    one_conn: ReadPool, db_name: str
) -> None:
    """The request deadline cancels a read mid-statement: the next read gets a new
    connection (and it works), and the server does not keep running the statement."""
    before = await _pid(one_conn)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2), one_conn.reading() as reader:
            await fetch(reader, Statement("SELECT pg_sleep(60)"), {})
    assert await _pid(one_conn) != before
    await backend_gone(db_name, before)  # the server does not run it on for nobody


async def test_a_backend_killed_in_steady_use_is_503_and_replaced(
    one_conn: ReadPool, db_name: str
) -> None:
    before = await _pid(one_conn)
    await _kill(db_name, before)
    with pytest.raises(NexusError) as raised:
        async with one_conn.reading() as reader:
            await fetch(reader, BACKEND, {})
    assert raised.value.code == "E_DEPENDENCY_UNAVAILABLE"
    assert await _pid(one_conn) != before


async def test_a_backend_killed_while_idle_is_replaced_by_the_ping(
    one_conn: ReadPool, db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await _pid(one_conn)
    await _kill(db_name, before)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert await _pid(one_conn) != before


async def test_an_unreachable_database_is_503(db_url: str) -> None:
    missing = make_url(db_url).set(database="nexus_none_x")
    pool = ReadPool(asyncpg_dsn(missing), size=1)
    try:
        with pytest.raises(NexusError) as raised:
            async with pool.reading():
                pass
        assert raised.value.code == "E_DEPENDENCY_UNAVAILABLE"
    finally:
        await pool.close()


async def test_reads_beyond_the_pool_size_wait_for_its_connections(db_url: str) -> None:
    """More reads in flight than connections: they take turns on the same two backends,
    and one cut half-way hands its place to a new connection."""
    pool = ReadPool(asyncpg_dsn(make_url(db_url)), size=2)
    await pool.open()
    try:
        sleepy = Statement("SELECT pg_backend_pid() AS pid, pg_sleep(0.02)")

        async def read() -> int:
            async with pool.reading() as reader:
                (row,) = await fetch(reader, sleepy, {})
                return int(row["pid"])

        first = set(await asyncio.gather(*(read() for _ in range(12))))
        assert len(first) == 2
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2), pool.reading() as reader:
                await fetch(reader, Statement("SELECT pg_sleep(60)"), {})
        after = set(await asyncio.gather(*(read() for _ in range(12))))
        assert len(after) == 2 and len(after & first) == 1
        assert pool.checked_out == 0
    finally:
        await pool.close()
