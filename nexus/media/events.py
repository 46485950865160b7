"""Live media status changes for `GET /media/{id}/events`, driven by Postgres NOTIFY.

A trigger on `media` (migration 0004) calls `pg_notify('nexus_media', json)` whenever
`processing_status` changes (payload `{media_id, processing_status, failure_stage,
last_error_code}`) and when a media row is deleted (`{media_id, deleted: true}`: a merge).
It runs in the writer's transaction, so every writer is covered and a notification is
delivered only after commit, in commit order.

`MediaEventHub`: ONE dedicated asyncpg connection per process LISTENs (opened for the first
subscriber, closed by `close()`), and fans notifications out to in-process subscribers
keyed by media id. A lost connection is re-opened with backoff; after a reconnect every
subscriber is told to re-read its row (notifications sent while nobody listened are lost).

`watch()`: the stream one subscriber sees: the current state first, then one item per
change, ending at a terminal state. Besides notifications it re-reads the row every
`reread_seconds` (a safety net: a silently dead listener, a revoked reader) and yields
`None` when nothing was sent for `keepalive_seconds` (the route writes an SSE comment).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.media import service
from nexus.media.states import ProcessingStatus
from nexus.sharing import closure

log = logging.getLogger(__name__)

CHANNEL = "nexus_media"
TERMINAL = frozenset(
    {ProcessingStatus.READY_FOR_READING, ProcessingStatus.READY, ProcessingStatus.FAILED}
)


@dataclass(frozen=True)
class MediaStatus:
    media_id: uuid.UUID
    processing_status: str
    failure_stage: str | None
    last_error_code: str | None

    @property
    def terminal(self) -> bool:
        return self.processing_status in TERMINAL

    def as_json(self) -> dict[str, str | None]:
        return {
            "media_id": str(self.media_id),
            "processing_status": self.processing_status,
            "failure_stage": self.failure_stage,
            "last_error_code": self.last_error_code,
        }


@dataclass(frozen=True)
class _Gone:
    media_id: uuid.UUID


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


RESYNC = _Signal("RESYNC")  # the listener reconnected: re-read, a change may have been missed
CLOSED = _Signal("CLOSED")  # the hub is shutting down: end the stream

Item = MediaStatus | _Gone | _Signal
Connect = Callable[[str], Awaitable[Any]]


def asyncpg_dsn(database_url: str) -> str:
    """`postgresql+asyncpg://...` (SQLAlchemy) → `postgresql://...` (asyncpg)."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class Subscription:
    """One subscriber's queue and the media ids it follows (more than one after a merge)."""

    def __init__(self, hub: MediaEventHub) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.media_ids: set[uuid.UUID] = set()

    def add(self, media_id: uuid.UUID) -> None:
        self.media_ids.add(media_id)
        self._hub._subs.setdefault(media_id, set()).add(self)

    def drop(self) -> None:
        for media_id in self.media_ids:
            subs = self._hub._subs.get(media_id)
            if subs is not None:
                subs.discard(self)
                if not subs:
                    del self._hub._subs[media_id]
        self.media_ids.clear()


class MediaEventHub:
    """Process-wide NOTIFY listener. Not thread-safe: use it from one event loop."""

    def __init__(
        self,
        dsn: str,
        *,
        connect: Connect | None = None,
        ready_timeout: float = 5.0,
        health_interval: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self._connect: Connect = connect or asyncpg.connect
        self._ready_timeout = ready_timeout
        self._health_interval = health_interval
        self._subs: dict[uuid.UUID, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self.connects = 0  # how many times the listener connected (tests, metrics)

    @property
    def listening(self) -> bool:
        return self._ready.is_set()

    @contextlib.asynccontextmanager
    async def subscribe(self, media_id: uuid.UUID) -> AsyncIterator[Subscription]:
        """Register a subscriber and wait (bounded) until the LISTEN is in place, so a
        change committed after this returns is seen. If the database cannot be reached in
        time the subscriber still works, on re-reads only, until the listener recovers."""
        if self._closed:
            raise RuntimeError("the media event hub is closed")
        sub = Subscription(self)
        sub.add(media_id)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen_forever(), name="media-events")
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ready_timeout):
                    await self._ready.wait()
            yield sub
        finally:
            sub.drop()

    async def close(self) -> None:
        """Stop listening, close the connection and end every subscriber's stream."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._broadcast(CLOSED)

    def _broadcast(self, item: Item) -> None:
        for subs in list(self._subs.values()):
            for sub in subs:
                sub.queue.put_nowait(item)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            media_id = uuid.UUID(data["media_id"])
            item: Item = (
                _Gone(media_id)
                if data.get("deleted")
                else MediaStatus(
                    media_id,
                    str(data["processing_status"]),
                    data.get("failure_stage"),
                    data.get("last_error_code"),
                )
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed %s notification", CHANNEL)
            return
        for sub in self._subs.get(media_id, ()):
            sub.queue.put_nowait(item)

    async def _listen_forever(self) -> None:
        backoff = 0.5
        while not self._closed:
            try:
                await self._listen_once()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("media event listener failed: %s", type(exc).__name__)
            if not self._closed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _listen_once(self) -> None:
        conn = await self._connect(self._dsn)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._on_notify)
            self.connects += 1
            self._ready.set()
            if self.connects > 1:
                self._broadcast(RESYNC)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._health_interval):
                        await lost.wait()
                if not lost.is_set():  # a half-open TCP connection never reports itself
                    async with asyncio.timeout(10):
                        await conn.fetchval("SELECT 1")
        finally:
            self._ready.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)


async def read_status(
    session: AsyncSession, viewer: uuid.UUID | None, media_id: uuid.UUID
) -> MediaStatus | None:
    """The media's status as the viewer may see it (merges followed); None when it is
    missing or (with a viewer) not readable by them (SPEC §5 `can_read_media`)."""
    resolved = await service.resolve_merged_id(session, media_id)
    if viewer is not None and not await closure.can_read_media(session, viewer, resolved):
        return None
    row = (
        await session.execute(
            text(
                "SELECT id, processing_status, failure_stage, last_error_code "
                "FROM media WHERE id = :m"
            ),
            {"m": resolved},
        )
    ).one_or_none()
    if row is None:
        return None
    return MediaStatus(
        row.id,
        str(row.processing_status),
        None if row.failure_stage is None else str(row.failure_stage),
        row.last_error_code,
    )


Reader = Callable[[uuid.UUID], Awaitable[MediaStatus | None]]


async def watch(
    hub: MediaEventHub,
    read: Reader,
    media_id: uuid.UUID,
    *,
    reread_seconds: float = 15.0,
    keepalive_seconds: float = 15.0,
) -> AsyncGenerator[MediaStatus | None, None]:
    """Current state, then each change, until a terminal state (or the media disappears or
    becomes unreadable: the stream just ends). `None` items are keep-alives.

    `read(id)` must apply the access rules and follow merges (see `read_status`)."""
    loop = asyncio.get_running_loop()
    async with hub.subscribe(media_id) as sub:
        first = await read(media_id)
        if first is None:
            return
        last: MediaStatus = first
        if last.media_id != media_id:
            sub.add(last.media_id)
        yield last
        sent_at = next_reread = loop.time()
        next_reread += reread_seconds
        while not last.terminal:
            wait = max(0.0, min(sent_at + keepalive_seconds, next_reread) - loop.time())
            item: Item | None = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    item = await sub.queue.get()
            if item is CLOSED:
                return
            fresh = last
            if isinstance(item, MediaStatus):
                fresh = item
            elif item is not None or loop.time() >= next_reread:
                reread = await read(last.media_id)  # resync, gone, or the safety timer
                next_reread = loop.time() + reread_seconds
                if reread is None:
                    return
                fresh = reread
                if fresh.media_id not in sub.media_ids:
                    sub.add(fresh.media_id)  # merged: follow the winner
            if fresh != last:
                last = fresh
                sent_at = loop.time()
                yield fresh
            elif loop.time() - sent_at >= keepalive_seconds:
                sent_at = loop.time()
                yield None
