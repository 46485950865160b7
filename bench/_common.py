"""Shared set-up for the pipeline benchmarks: a fresh migrated database, a broker, workers.

Everything is real and local: PostgreSQL on 127.0.0.1:5432 (or NEXUS_TEST_ADMIN_DSN), a
Tansu broker on a free port, Faust workers as subprocesses (the helpers the pipeline tests
use). Nothing here runs when the file itself is executed (tox runs every bench/*.py).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: E402

from nexus.config import Settings  # noqa: E402
from nexus.db.engine import make_engine, make_sessionmaker  # noqa: E402
from nexus.db.migrate import migrate_async  # noqa: E402
from tests.support import services  # noqa: E402
from tests.support.processes import Child, start_agents  # noqa: E402
from tests.support.services import Broker  # noqa: E402


@dataclass
class Stack:
    settings: Settings
    engine: AsyncEngine
    sm: async_sessionmaker[AsyncSession]
    dsn: str
    broker: Broker
    logs: Path
    workers: list[Child]

    async def start_worker(self, name: str = "agents") -> Child:
        child = await start_agents(self.settings, self.logs, name=name)
        self.workers.append(child)
        return child


def bench_settings(db_name: str, bootstrap: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": services.sqlalchemy_url(db_name),
        "kafka_bootstrap": bootstrap,
        "topic_prefix": f"b{uuid.uuid4().hex[:8]}.",
        "topic_partitions": 4,
        "agents_web_port": services.free_port(),
        "api_port": services.free_port(),
        "log_json": False,
        "log_level": "WARNING",
        "internal_secret": "bench-internal-secret",
        "jwt_hs256_secret": "bench-jwt-secret-with-enough-bytes-for-hs256",
        "kafka_session_timeout_seconds": 6.0,
        "kafka_heartbeat_seconds": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def stack(**overrides: Any) -> AsyncIterator[Stack]:
    """A fresh database (migrated), a broker, settings; workers are started on demand."""
    db_name = services.unique_name("nexus_bench")
    logs = Path(tempfile.mkdtemp(prefix="nexus-bench-"))
    await services.create_database(db_name)
    broker = Broker(port=services.free_port(), log_path=logs / "tansu.log")
    engine: AsyncEngine | None = None
    workers: list[Child] = []
    try:
        await migrate_async(services.sqlalchemy_url(db_name))
        broker.start()
        await services.broker_ready(broker.bootstrap)
        settings = bench_settings(db_name, broker.bootstrap, **overrides)
        engine = make_engine(settings, pool_size=5)
        yield Stack(
            settings,
            engine,
            make_sessionmaker(engine),
            services.asyncpg_dsn(db_name),
            broker,
            logs,
            workers,
        )
    finally:
        for child in workers:
            child.stop()
        if engine is not None:
            await engine.dispose()
        broker.stop()
        await services.drop_database(db_name)


async def analyze(dsn: str) -> None:
    """Fresh planner statistics and visibility map after bulk seeding (as autovacuum would
    soon give), so neither side of a comparison pays for the seeding."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
