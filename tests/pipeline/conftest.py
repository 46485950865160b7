from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from nexus.config import Settings
from tests.conftest import make_settings
from tests.support.processes import Child, start_agents
from tests.support.services import Broker, free_port


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


@pytest_asyncio.fixture
async def agents(pipeline_settings: Settings, logs_dir: Path) -> AsyncIterator[Child]:
    child = await start_agents(pipeline_settings, logs_dir)
    try:
        yield child
    finally:
        child.stop()
