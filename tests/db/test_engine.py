"""Pooled connections: pinged only after an idle gap, replaced when the server dropped them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine

from nexus.db import engine as engine_module
from nexus.db.engine import make_engine
from tests.conftest import make_settings
from tests.support.db import backend_gone
from tests.support.processes import poll

EngineFactory = Callable[[float], AbstractAsyncContextManager[AsyncEngine]]


@pytest.fixture
def one_conn_engine(db_url: str, monkeypatch: pytest.MonkeyPatch) -> EngineFactory:
    @asynccontextmanager
    async def build(idle_seconds: float) -> AsyncIterator[AsyncEngine]:
        monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", idle_seconds)
        eng = make_engine(make_settings(database_url=db_url), pool_size=1)
        try:
            yield eng
        finally:
            await eng.dispose()

    return build


async def _backend_pid(eng: AsyncEngine) -> int:
    async with eng.connect() as conn:
        pid: int = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        return pid


async def _kill(db_name: str, pid: int) -> None:
    await backend_gone(db_name, pid, terminate=True)


async def test_a_connection_killed_while_idle_is_replaced_without_an_error(
    one_conn_engine: EngineFactory, db_name: str
) -> None:
    async with one_conn_engine(0.2) as eng:
        first = await _backend_pid(eng)
        await _kill(db_name, first)
        await asyncio.sleep(0.3)  # idle past the threshold: the next checkout pings
        assert await _backend_pid(eng) != first


async def test_a_connection_in_steady_use_is_not_pinged(
    one_conn_engine: EngineFactory, db_name: str
) -> None:
    """The trade-off made for the hot path: no ping within the idle threshold, so a
    connection killed just now fails its next statement once, then the pool recovers."""
    async with one_conn_engine(3600) as eng:
        first = await _backend_pid(eng)
        await _kill(db_name, first)
        with pytest.raises(exc.DBAPIError):
            await _backend_pid(eng)
        assert await _backend_pid(eng) != first


async def test_database_errors_never_carry_sql_parameters(db_url: str) -> None:
    """Logged and rendered errors hold the statement, never the bound values (user data,
    URLs, token hashes): the engine is built with `hide_parameters`."""
    eng = make_engine(make_settings(database_url=db_url), pool_size=1)
    secret = "user-secret-value-4711"
    try:
        async with eng.connect() as conn:
            with pytest.raises(exc.DBAPIError) as info:
                await conn.execute(text("SELECT 1 / 0 WHERE CAST(:v AS text) <> ''"), {"v": secret})
    finally:
        await eng.dispose()
    rendered = str(info.value)
    assert "division by zero" in rendered and "CAST" in rendered
    assert secret not in rendered
    assert "hidden" in rendered


async def test_a_burst_above_the_setting_keeps_its_connections(db_url: str) -> None:
    """The default pool has no overflow: twice the setting, and a connection opened during
    a burst is kept, not closed at check-in (the next burst starts no backend)."""
    eng = make_engine(make_settings(database_url=db_url, database_pool_size=2))

    async def burst() -> set[int]:
        pids: set[int] = set()
        gate = asyncio.Event()

        async def hold() -> None:
            async with eng.connect() as conn:
                pids.add((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                await gate.wait()

        async def all_in() -> bool:
            return len(pids) == 4

        tasks = [asyncio.ensure_future(hold()) for _ in range(4)]
        await poll(all_in, what="4 connections checked out")
        gate.set()
        await asyncio.gather(*tasks)
        return pids

    try:
        assert await burst() == await burst()
        assert eng.sync_engine.pool.size() == 4  # type: ignore[attr-defined]
    finally:
        await eng.dispose()
