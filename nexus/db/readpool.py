"""A pool of asyncpg connections of its own for the API's hottest reads.

`nexus.db.raw` ran those reads on the driver connection of a SQLAlchemy pool checkout:
the checkout and return alone cost ~55 us of CPU per request (bench/api.py,
docs/performance.md). asyncpg's own `Pool` costs as much (a task per release, timeouts,
a reset hook), so this is a small pool of plain asyncpg connections: taking a free one
and putting it back await nothing. Its connections are opened at start (`open`), or by
the reads that first need them up to the pool size (apps on a caller's engine: tests),
and never closed for idleness or a query count, and go back with no reset statement (these
reads begin no transaction and set nothing on the session), so the steady state opens no
PostgreSQL backend and adds no round trip; asyncpg keeps each connection's prepared
statements. A connection that failed or was cut half-way by the request deadline is
closed (asyncpg first cancels its statement on the server) and a later read opens
another. As the engine's pool does, a connection idle for longer than
`nexus.db.engine.PING_AFTER_IDLE_SECONDS` is pinged before use and replaced if the ping
fails (a server restart or a killed backend), so only a connection that dies while in
steady use fails its statement. Failures become domain errors (503) like
`nexus.db.raw`'s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
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
CLOSE_TIMEOUT_SECONDS = 2.0

QueryLogger = Callable[[Any], None]


def asyncpg_dsn(url: URL) -> str:
    """The engine URL as a libpq DSN for asyncpg (its query, e.g. `ssl=`, kept)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class ReadPool:
    """See the module docstring. `open()` opens every connection (at app start); without
    it, reads open them as they need them, up to `size`, and keep them."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self.size = max(1, size)
        # Free connections with when each came back (for the ping after an idle gap).
        self._free: collections.deque[tuple[asyncpg.Connection, float]] = collections.deque()
        # Reads waiting for a connection: given one, or None to open one themselves.
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection | None]] = (
            collections.deque()
        )
        self._opened = 0  # connections open or being opened
        self._closing: set[asyncio.Task[None]] = set()
        self._loggers: list[QueryLogger] = []
        self.checked_out = 0

    async def open(self) -> None:
        """Open every connection (a failure closes those opened and is raised)."""
        missing = self.size - self._opened
        self._opened += missing
        results = await asyncio.gather(
            *(self._connect() for _ in range(missing)), return_exceptions=True
        )
        failure: BaseException | None = None
        for result in results:
            if isinstance(result, BaseException):
                failure = failure or result
                self._put_back(None)
            else:
                self._put_back(result)  # reads that came meanwhile are waiting for it
        if failure is not None:
            await self.close()
            raise failure

    async def close(self) -> None:
        free = [con for con, _ in self._free]
        self._free.clear()
        self._opened -= len(free)
        await asyncio.gather(*(self._close(con) for con in free))
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings={"application_name": APPLICATION_NAME},
        )

    @staticmethod
    async def _close(con: asyncpg.Connection) -> None:
        # Graceful first: asyncpg waits for a statement it cancelled half-way, so the
        # server does not go on running it for nobody.
        try:
            await con.close(timeout=CLOSE_TIMEOUT_SECONDS)
        except BaseException:
            con.terminate()
            raise

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
            con = await self._acquire()
        self.checked_out += 1
        reader = DriverReader(con)
        loggers = self._loggers
        for logger in loggers:
            con.add_query_logger(logger)
        try:
            yield reader
        finally:
            self.checked_out -= 1
            for logger in loggers:
                con.remove_query_logger(logger)
            self._release(con, reader.broken)

    async def _acquire(self) -> asyncpg.Connection:
        while True:
            taken = await self._take()
            if taken is None:
                return await self._open_one()
            con, last = taken
            if time.monotonic() - last < engine_module.PING_AFTER_IDLE_SECONDS:
                return con
            try:
                await con.fetchval("SELECT 1")
            except BaseException as exc:
                self._release(con, broken=True)
                if not isinstance(exc, Exception):
                    raise
                continue
            return con

    async def _take(self) -> tuple[asyncpg.Connection, float] | None:
        """A free connection and when it came back, or None: open one."""
        if self._free:
            return self._free.pop()
        if self._opened < self.size:
            self._opened += 1
            return None
        waiter: asyncio.Future[asyncpg.Connection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(ACQUIRE_TIMEOUT_SECONDS):
                con = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Handed over just as the wait ended: pass it on.
                self._put_back(waiter.result())
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        # Handed over by a read that just used it.
        return None if con is None else (con, time.monotonic())

    async def _open_one(self) -> asyncpg.Connection:
        try:
            return await self._connect()
        except BaseException:
            self._put_back(None)
            raise

    def _release(self, con: asyncpg.Connection, broken: bool) -> None:
        if broken or con.is_closed():
            task = asyncio.ensure_future(self._close(con))
            self._closing.add(task)
            task.add_done_callback(self._closed)
            self._put_back(None)
        else:
            self._put_back(con)

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed close only ends a dead connection

    def _put_back(self, con: asyncpg.Connection | None) -> None:
        """`con` back to a waiting read or to the free list; None: a connection less
        (the first waiting read opens one)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(con)
                return
        if con is None:
            self._opened -= 1
        else:
            self._free.append((con, time.monotonic()))
