"""`GET /media/{id}/events`: server-sent events of a media's status until it is terminal.

The first event is the current state, then one event per change (driven by Postgres
NOTIFY through the process-wide `MediaEventHub`, see `nexus.media.events`), then the
stream ends at `ready_for_reading`, `ready` or `failed`. Every event:

    event: status
    data: {"media_id": ..., "processing_status": ..., "failure_stage": ..., "last_error_code": ...}

Comments (`: keep-alive`) are sent when nothing happened for a while. Access as for
`GET /media/{id}`: internal header, user JWT, 404 E_MEDIA_NOT_FOUND unless readable; the
stream ends early if the media becomes unreadable or disappears.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

from quart import Blueprint, Quart, Response, current_app, make_response

from nexus.db.tx import transaction
from nexus.media import events
from nexus.media import service as media
from web.auth import current_user, user_required
from web.openapi import raises, responds
from web.state import nexus_state

bp = Blueprint("media_events", __name__)

_HUB_KEY = "nexus_media_events"

# OpenAPI 3.1 (as schemathesis reads it): the schema of each event of the stream.
SSE_CONTENT = {
    "text/event-stream": {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": "status"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "object",
                    "required": ["media_id", "processing_status"],
                    "properties": {
                        "media_id": {"type": "string", "format": "uuid"},
                        "processing_status": {"type": "string"},
                        "failure_stage": {"type": ["string", "null"]},
                        "last_error_code": {"type": ["string", "null"]},
                    },
                },
            },
        },
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


def _frame(status: events.MediaStatus | None) -> bytes:
    if status is None:
        return b": keep-alive\n\n"
    return f"event: status\ndata: {json.dumps(status.as_json())}\n\n".encode()


@bp.get("/media/<uuid:media_id>/events")
@raises("E_MEDIA_NOT_FOUND")
@responds(200, "Server-sent `status` events until the media is terminal.", SSE_CONTENT)
@user_required
async def media_events(media_id: uuid.UUID) -> Response:
    """Order: 400 id → merges followed → 404 E_MEDIA_NOT_FOUND unless readable → 200
    `text/event-stream`."""
    state = nexus_state()
    viewer = current_user().user_id
    async with transaction(state.sessionmaker) as session:
        resolved = await media.readable_media_id(session, viewer, media_id)
    hub = media_event_hub()

    async def read(mid: uuid.UUID) -> events.MediaStatus | None:
        async with transaction(state.sessionmaker) as session:
            return await events.read_status(session, viewer, mid)

    async def stream() -> AsyncIterator[bytes]:
        async for item in events.watch(
            hub,
            read,
            resolved,
            reread_seconds=state.settings.media_events_reread_seconds,
            keepalive_seconds=state.settings.media_events_keepalive_seconds,
        ):
            yield _frame(item)

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
