"""Pipeline fixtures: settings for agents on the session's broker and the test's database,
and one agents worker started with them.

A module changes the worker's settings by overriding `agents_settings` (it receives the
default one, `pipeline_settings`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from nexus.config import Settings
from tests.conftest import make_settings
from tests.support.processes import Child, start_agents
from tests.support.running import running
from tests.support.services import Broker, asyncpg_dsn, free_port


@pytest.fixture
def pipeline_settings(db_url: str, broker: Broker) -> Settings:
    return make_settings(
        database_url=db_url,
        kafka_bootstrap=broker.bootstrap,
        agents_web_port=free_port(),
        api_port=free_port(),
        backfill_retry_delays=(0.2, 0.4),
        lease_seconds=30,
    )


@pytest.fixture
def agents_settings(pipeline_settings: Settings) -> Settings:
    return pipeline_settings


@pytest_asyncio.fixture
async def agents(agents_settings: Settings, logs_dir: Path) -> AsyncIterator[Child]:
    async with running(start_agents(agents_settings, logs_dir)) as child:
        yield child


@pytest_asyncio.fixture
async def short_lock_timeout(db_name: str) -> AsyncIterator[None]:
    """The test's database makes every session give up a lock wait after 300 ms, as a DBA
    might set it: a job that waits on a row the test holds fails transiently, for real.
    Reset afterwards (the database is reused by later tests)."""

    async def alter(clause: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(db_name))
        try:
            await conn.execute(f'ALTER DATABASE "{db_name}" {clause}')
        finally:
            await conn.close()

    await alter("SET lock_timeout = '300ms'")
    try:
        yield
    finally:
        await alter("RESET lock_timeout")
