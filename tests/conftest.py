"""Shared fixtures: a migrated template database, per-test clones, a broker per session.

Every fixture talks to the real thing. When PostgreSQL or the broker is missing the tests
fail (they never skip).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.engine import make_engine, make_sessionmaker
from nexus.db.migrate import migrate_async
from tests.support.services import (
    Broker,
    DatabasePool,
    broker_ready,
    create_database,
    drop_database,
    free_port,
    sqlalchemy_url,
    unique_name,
)

TEST_JWT_SECRET = "test-jwt-secret-with-enough-bytes-for-hs256"
TEST_INTERNAL_SECRET = "test-internal-secret"


@pytest.fixture(autouse=True)
def _clean_nexus_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build Settings explicitly; a developer's NEXUS_* variables (and the OTLP
    endpoint, which Settings reads too) must not leak in."""
    for name in list(os.environ):
        if name.startswith("NEXUS_") and not name.startswith("NEXUS_TEST_"):
            if name != "NEXUS_TANSU_BIN":
                monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)


@pytest_asyncio.fixture(scope="session")
async def template_db() -> AsyncIterator[str]:
    """A database migrated to head once per run; every test database is cloned from it."""
    name = unique_name("nexus_tpl")
    await create_database(name)
    try:
        await migrate_async(sqlalchemy_url(name))
        yield name
    finally:
        await drop_database(name)


@pytest_asyncio.fixture(scope="session")
async def db_pool(template_db: str) -> AsyncIterator[DatabasePool]:
    pool = DatabasePool(template_db)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture
async def db_name(db_pool: DatabasePool) -> AsyncIterator[str]:
    """A database of this test's own, as freshly migrated, for tests that commit or race
    (API and agents processes included). Emptied and reused after the test."""
    name = await db_pool.acquire()
    try:
        yield name
    finally:
        await db_pool.release(name)


@pytest.fixture
def db_url(db_name: str) -> str:
    return sqlalchemy_url(db_name)


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "jwt_hs256_secret": TEST_JWT_SECRET,
        "internal_secret": TEST_INTERNAL_SECRET,
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}.",
        "topic_partitions": 4,
        "log_json": False,
        "publish_timeout_seconds": 2.0,
        "kafka_session_timeout_seconds": 2.0,
        "kafka_heartbeat_seconds": 0.3,
        "outbox_relay_after_seconds": 1.0,
        "outbox_relay_interval_seconds": 0.5,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    """Where uploads go in this test (never the working tree's ./var/storage)."""
    return tmp_path / "storage"


@pytest.fixture
def settings(db_url: str, storage_dir: Path) -> Settings:
    return make_settings(
        database_url=db_url, kafka_bootstrap="127.0.0.1:1", storage_dir=storage_dir
    )


@pytest_asyncio.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(settings, pool_size=5)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest_asyncio.fixture(scope="session")
async def rollback_engine(db_pool: DatabasePool) -> AsyncIterator[AsyncEngine]:
    """An engine on one database shared by every test that only needs a transaction."""
    name = await db_pool.acquire()
    eng = make_engine(make_settings(database_url=sqlalchemy_url(name)), pool_size=2)
    try:
        yield eng
    finally:
        await eng.dispose()
        await db_pool.release(name)


@pytest_asyncio.fixture
async def session(rollback_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test, on a database
    shared by such tests (no clone). The code under test may commit: with
    `create_savepoint` its transactions are savepoints inside the one rolled back.
    A test that also needs committed data seen by other connections uses `sessionmaker`."""
    async with rollback_engine.connect() as conn:
        outer = await conn.begin()
        s = AsyncSession(
            bind=conn,
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
            autoflush=False,
        )
        try:
            yield s
        finally:
            await s.close()
            await outer.rollback()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One Tansu broker per test session, on a free port (topics are per-test prefixed)."""
    import asyncio

    b = Broker(port=free_port(), log_path=tmp_path_factory.mktemp("broker") / "tansu.log")
    b.start()
    try:
        asyncio.run(broker_ready(b.bootstrap))
        yield b
    finally:
        b.stop()


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d
