"""Engine and session factory; created by composition roots, never at import time."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from nexus.config import Settings

# A pooled connection idle for longer than this is pinged before use. A connection in
# steady use is not: `pool_pre_ping` would add a round trip to every transaction (~15 % of
# the ingest worker's database time). A server restart or a killed backend is found by the
# ping on the next checkout after the idle gap; a connection that dies while in steady
# use fails its statement once, which callers already handle (503 / job retry).
PING_AFTER_IDLE_SECONDS = 2.0
_LAST_USED = "nexus_last_used"


def _ping_if_idle(dbapi_conn: Any, record: Any, proxy: Any) -> None:
    last = record.info.get(_LAST_USED)
    if last is None or time.monotonic() - last < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_conn.ping()
    except Exception as error:
        # The pool discards this connection and checks out (or opens) another.
        raise exc.DisconnectionError("stale pooled connection") from error


def _mark_used(dbapi_conn: Any, record: Any) -> None:
    record.info[_LAST_USED] = time.monotonic()


def make_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    # By default no overflow: the pool keeps every connection it opened, up to twice the
    # setting (the capacity it had as size + overflow). An overflow connection is closed
    # on check-in, so a burst above the pool size (32 requests in flight on the API) forked
    # a new PostgreSQL backend for nearly every request. An explicit small `pool_size`
    # (CLI commands, tests) keeps the setting as overflow for rare bursts.
    if pool_size is None:
        size, overflow = settings.database_pool_size * 2, 0
    else:
        size, overflow = pool_size, settings.database_pool_size
    engine = create_async_engine(
        settings.database_url,
        pool_size=size,
        max_overflow=overflow,
        pool_timeout=10,
        # Errors (and the logs and tracebacks that render them) never carry bound values:
        # they hold user data, URLs and token hashes.
        hide_parameters=True,
        connect_args={"timeout": 5, "server_settings": {"application_name": "nexus"}},
    )
    # On the pool itself: engine-level listeners would make every Connection build its
    # own event dispatcher (~3 % of the ingest worker's CPU).
    event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    event.listen(engine.sync_engine.pool, "checkin", _mark_used)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
