"""`GET /media/{id}/events`: server-sent events of a media's status until it is terminal.

The first event is the current state, then one event per change (driven by Postgres
NOTIFY through the process-wide `MediaEventHub`, see `nexus.media.events`), then the
stream ends at `ready_for_reading`, `ready` or `failed`. Every event:

    event: status
    data: {"media_id": ..., "processing_status": ..., "failure_stage": ..., "last_error_code": ...}

    id: <opaque id of this state>

Comments (`: keep-alive`) are sent when nothing happened for a while. Access as for
`GET /media/{id}`: internal header, user JWT, 404 E_MEDIA_NOT_FOUND unless readable; the
stream ends early if the media becomes unreadable or disappears.

Bounds (docs/security.md):
- at most `NEXUS_SSE_MAX_STREAMS_PER_USER` open streams per user in each API process
  (not global: N processes allow N times as many) → 429 E_TOO_MANY_STREAMS with
  `Retry-After`; a slot is freed when its stream ends or its client goes away;
- a stream lasts at most `NEXUS_SSE_MAX_SECONDS`, then sends `event: end` with
  `data: {"reason": "max_duration"}` and closes: the client reconnects;
- `Last-Event-ID` resumes: the id names a state, so when the current state is the one the
  client last received it is not sent again (unless terminal: a resumed client always
  learns that the stream is over). Events missed while disconnected are not replayed; the
  stream is of states, and the first event after a resume is the current one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Quart, Response, current_app, make_response, request

from nexus.db.tx import transaction
from nexus.errors import NexusError
from nexus.media import events
from nexus.media import service as media
from web.auth import current_user, user_required
from web.deadline import WaitExpired, each_within
from web.openapi import header_param, raises, responds
from web.state import nexus_state

bp = Blueprint("media_events", __name__)

_HUB_KEY = "nexus_media_events"
_SLOTS_KEY = "nexus_media_event_slots"
# Seconds a refused client waits before trying again (a slot frees when a stream ends).
RETRY_AFTER_SECONDS = 5
_MAX_EVENT_ID_CHARS = 64


class TooManyStreamsError(NexusError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            "E_TOO_MANY_STREAMS",
            f"at most {limit} open event streams per user",
            details={"limit": limit},
            retry_after=RETRY_AFTER_SECONDS,
        )


class StreamSlots:
    """Open streams per user in this process (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[uuid.UUID, int] = {}

    def open_count(self, user_id: uuid.UUID) -> int:
        return self._open.get(user_id, 0)

    def acquire(self, user_id: uuid.UUID) -> StreamSlot:
        """A slot for one stream of `user_id`; 429 E_TOO_MANY_STREAMS when all are taken."""
        if self.open_count(user_id) >= self.limit:
            raise TooManyStreamsError(self.limit)
        self._open[user_id] = self.open_count(user_id) + 1
        return StreamSlot(self, user_id)

    def _release(self, user_id: uuid.UUID) -> None:
        left = self.open_count(user_id) - 1
        if left > 0:
            self._open[user_id] = left
        else:
            self._open.pop(user_id, None)


class StreamSlot:
    """Released once: by the stream when it ends, or when the slot is garbage (a response
    whose body was never iterated, e.g. the client left before the first byte)."""

    def __init__(self, slots: StreamSlots, user_id: uuid.UUID) -> None:
        self._finalizer = weakref.finalize(self, slots._release, user_id)

    def release(self) -> None:
        self._finalizer()


def _slots() -> StreamSlots:
    slots = current_app.extensions.get(_SLOTS_KEY)
    if slots is None:
        limit = nexus_state().settings.sse_max_streams_per_user
        slots = current_app.extensions[_SLOTS_KEY] = StreamSlots(limit)
    assert isinstance(slots, StreamSlots)
    return slots


# OpenAPI 3.1 (as schemathesis reads it): the schema of each event of the stream.
_STATUS_DATA = {
    "type": "object",
    "required": ["media_id", "processing_status"],
    "properties": {
        "media_id": {"type": "string", "format": "uuid"},
        "processing_status": {"type": "string"},
        "failure_stage": {"type": ["string", "null"]},
        "last_error_code": {"type": ["string", "null"]},
    },
}
_END_DATA = {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}}


def _event(name: str, data: dict[str, Any], *, with_id: bool) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "object",
        "required": ["event", "data", *(["id"] if with_id else [])],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
        },
    }
    if with_id:
        event["properties"]["id"] = {"type": "string"}
    return event


# OpenAPI 3.1 (as schemathesis reads it): the schema of each event of the stream.
SSE_CONTENT = {
    "text/event-stream": {
        "oneOf": [
            _event("status", _STATUS_DATA, with_id=True),
            _event("end", _END_DATA, with_id=False),
        ]
    }
}


def media_event_hub(app: Quart | None = None) -> events.MediaEventHub:
    """The app's hub (one LISTEN connection per process), created on first use."""
    app = app or current_app
    hub = app.extensions.get(_HUB_KEY)
    if hub is None:
        dsn = events.asyncpg_dsn(nexus_state(app).settings.database_url)
        hub = app.extensions[_HUB_KEY] = events.MediaEventHub(dsn)
    assert isinstance(hub, events.MediaEventHub)
    return hub


@bp.after_app_serving
async def _close_hub() -> None:
    hub = current_app.extensions.pop(_HUB_KEY, None)
    if hub is not None:
        await hub.close()


def event_id(status: events.MediaStatus) -> str:
    """An opaque id naming the state (equal states, equal ids)."""
    raw = json.dumps(status.as_json(), sort_keys=True).encode()
    return hashlib.blake2s(raw, digest_size=8).hexdigest()


def _frame(status: events.MediaStatus | None) -> bytes:
    if status is None:
        return b": keep-alive\n\n"
    data = json.dumps(status.as_json())
    return f"id: {event_id(status)}\nevent: status\ndata: {data}\n\n".encode()


_END_FRAME = b'event: end\ndata: {"reason": "max_duration"}\n\n'


def _last_event_id() -> str | None:
    sent = request.headers.get("Last-Event-ID", "").strip()
    return sent if 0 < len(sent) <= _MAX_EVENT_ID_CHARS else None


@bp.get("/media/<uuid:media_id>/events")
@raises("E_MEDIA_NOT_FOUND", "E_TOO_MANY_STREAMS")
@header_param("Last-Event-ID", "Resume: the id of the last event received.")
@responds(
    200,
    "Server-sent `status` events (with ids) until the media is terminal, or `end` after "
    "NEXUS_SSE_MAX_SECONDS (reconnect with `Last-Event-ID`).",
    SSE_CONTENT,
)
@user_required
async def media_events(media_id: uuid.UUID) -> Response:
    """Order: 400 id → 401 → merges followed → 404 E_MEDIA_NOT_FOUND unless readable → 429
    E_TOO_MANY_STREAMS → 200 `text/event-stream`."""
    state = nexus_state()
    viewer = current_user().user_id
    async with transaction(state.sessionmaker) as session:
        resolved = await media.readable_media_id(session, viewer, media_id)
    hub = media_event_hub()
    slot = _slots().acquire(viewer)
    resume_from = _last_event_id()
    max_seconds = state.settings.sse_max_seconds

    async def read(mid: uuid.UUID) -> events.MediaStatus | None:
        async with transaction(state.sessionmaker) as session:
            return await events.read_status(session, viewer, mid)

    async def stream() -> AsyncIterator[bytes]:
        updates = events.watch(
            hub,
            read,
            resolved,
            reread_seconds=state.settings.media_events_reread_seconds,
            keepalive_seconds=state.settings.media_events_keepalive_seconds,
        )
        deadline = asyncio.get_running_loop().time() + max_seconds
        first = True
        items = each_within(updates, lambda: asyncio.timeout_at(deadline))
        try:
            async for item in items:
                skip = (
                    first
                    and item is not None
                    and not item.terminal
                    and event_id(item) == resume_from
                )
                first = False
                if not skip:
                    yield _frame(item)
        except WaitExpired:
            yield _END_FRAME
        finally:
            slot.release()
            await items.aclose()
            await updates.aclose()

    response = await make_response(
        stream(),
        200,
        {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )
    assert isinstance(response, Response)
    response.timeout = None
    return response
