"""A pool of asyncpg connections of its own for the API's hottest reads.

`nexus.db.raw` ran those reads on the driver connection of a SQLAlchemy pool checkout:
the checkout and return alone cost ~55 us of CPU per request (bench/api.py,
docs/performance.md). This pool hands out asyncpg connections directly. Its connections
are all opened at start (min_size = max_size), never closed for idleness or a query
count, and return to the pool with no reset statement (these reads begin no transaction
and set nothing on the session), so the steady state opens no PostgreSQL backend and
adds no round trip. A connection that failed or was cut half-way by the request
deadline is discarded once asyncpg has cancelled its statement on the server; the pool
opens a new one on the next acquire. As the engine's pool does, a connection idle for
longer than `nexus.db.engine.PING_AFTER_IDLE_SECONDS` is pinged before use and replaced
if the ping fails (a server restart or a killed backend), so only a connection that dies
while in steady use fails its statement. Failures become domain errors (503) like
`nexus.db.raw`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from nexus.db import engine as engine_module
from nexus.db.errors import translate_db_errors
from nexus.db.raw import DriverReader

# As the engine's (`nexus.db.engine`): connect timeout, checkout timeout, backend name.
CONNECT_TIMEOUT_SECONDS = 5.0
ACQUIRE_TIMEOUT_SECONDS = 10.0
APPLICATION_NAME = "nexus"
# Bounds the wait for a cancelled statement before its connection is dropped anyway.
RELEASE_TIMEOUT_SECONDS = 2.0

QueryLogger = Callable[[Any], None]


class _Discard(Exception):
    """Raised by the pool's reset hook so asyncpg terminates the connection."""


def asyncpg_dsn(url: URL) -> str:
    """The engine URL as a libpq DSN for asyncpg (its query, e.g. `ssl=`, kept)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class ReadPool:
    """See the module docstring. Opened by `open()` (at app start) or by the first read."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self.size = max(1, size)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        # Connections to drop at release (their statement failed or was cut half-way).
        self._broken: weakref.WeakSet[Any] = weakref.WeakSet()
        # When each connection went back to the pool (for the ping after an idle gap).
        self._last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._loggers: list[QueryLogger] = []
        self.checked_out = 0

    async def open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self.size,
                    max_size=self.size,
                    # Never close a connection for its age or use: a new one is a backend fork.
                    max_queries=2**62,
                    max_inactive_connection_lifetime=0,
                    reset=self._reset,
                    timeout=CONNECT_TIMEOUT_SECONDS,
                    server_settings={"application_name": APPLICATION_NAME},
                )
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _reset(self, connection: Any) -> None:
        # Called at release, after asyncpg waited for a cancelled statement to end.
        if connection in self._broken:
            raise _Discard
        self._last_used[connection] = time.monotonic()

    def add_query_logger(self, logger: QueryLogger) -> None:
        """Log every statement run on this pool's connections (tests count them)."""
        self._loggers.append(logger)

    def remove_query_logger(self, logger: QueryLogger) -> None:
        self._loggers.remove(logger)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[DriverReader]:
        """A connection of this pool for statements that write nothing (no transaction:
        each statement sees its own snapshot)."""
        async with translate_db_errors():
            pool = self._pool or await self.open()
            proxy = await self._acquire(pool)
        self.checked_out += 1
        reader = DriverReader(proxy)
        loggers = self._loggers
        if loggers:
            for logger in loggers:
                proxy.add_query_logger(logger)
        try:
            yield reader
        finally:
            self.checked_out -= 1
            if loggers:
                for logger in loggers:
                    proxy.remove_query_logger(logger)
            await self._release(pool, proxy, reader.broken)

    async def _acquire(self, pool: asyncpg.Pool) -> Any:
        # Ends: a connection that fails its ping is replaced by a new one, never pinged.
        while True:
            proxy = await pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS)
            last = self._last_used.get(proxy._con)
            if last is None or time.monotonic() - last < engine_module.PING_AFTER_IDLE_SECONDS:
                return proxy
            try:
                await proxy.fetchval("SELECT 1")
            except BaseException as exc:
                await self._release(pool, proxy, broken=True)
                if not isinstance(exc, Exception):
                    raise
                continue
            return proxy

    async def _release(self, pool: asyncpg.Pool, proxy: Any, broken: bool) -> None:
        connection = proxy._con  # None once asyncpg saw it close and took it back
        if connection is None:
            return
        if broken:
            self._broken.add(connection)
        with contextlib.suppress(Exception):
            # On failure asyncpg has terminated the connection (a broken one: on purpose);
            # the pool opens another on a later acquire, and the read itself is done.
            await pool.release(proxy, timeout=RELEASE_TIMEOUT_SECONDS)
