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
    """A database migrated to head once per run; clones are made from it."""
    name = unique_name("nexus_tpl")
    await create_database(name)
    try:
        await migrate_async(sqlalchemy_url(name))
        yield name
    finally:
        await drop_database(name)


@pytest_asyncio.fixture
async def db_name(template_db: str) -> AsyncIterator[str]:
    """A fresh database cloned from the template, for tests that commit or race."""
    name = unique_name("nexus_t")
    await create_database(name, template=template_db)
    try:
        yield name
    finally:
        await drop_database(name)


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
def settings(db_url: str) -> Settings:
    return make_settings(database_url=db_url, kafka_bootstrap="127.0.0.1:1")


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


@pytest_asyncio.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test."""
    async with sessionmaker() as s:
        await s.begin()
        try:
            yield s
        finally:
            await s.rollback()


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
