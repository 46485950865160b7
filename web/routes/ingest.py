"""Saving media: `POST /media/from_url` (SPEC §8)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from quart import Blueprint, g
from quart_schema import validate_request, validate_response

from nexus.ingest import service as ingest
from nexus.messaging.topics import Topics
from web.auth import current_user, user_required
from web.envelope import Data
from web.idempotency import Reply, idempotent_unit_of_work
from web.ratelimit import rate_limited
from web.state import nexus_state

bp = Blueprint("ingest", __name__)


class FromUrlIn(BaseModel):
    # Length and shape are checked by the service so that every bad URL is E_INVALID_URL.
    url: str


class FromUrlOut(BaseModel):
    media_id: uuid.UUID
    duplicate: bool
    processing_status: str


@bp.post("/media/from_url")
@validate_request(FromUrlIn)
@validate_response(Data[FromUrlOut], 202)
@validate_response(Data[FromUrlOut], 200)
@user_required
@rate_limited()
async def from_url(data: FromUrlIn) -> Reply:
    """Save a web article by URL: 202 when a new media is created and queued, 200 with
    `duplicate: true` when an article with the same canonical URL exists (it is added to
    the caller's default library). Order: 400 body → 401 → 429 E_RATE_LIMITED (shared with
    upload init) → 400 Idempotency-Key → replay or 409
    E_IDEMPOTENCY_KEY_REUSED → 400 E_INVALID_URL."""
    state = nexus_state()
    user = current_user()
    async with idempotent_unit_of_work(data) as work:
        if work.replay is not None:
            return work.replay
        result = await ingest.create_from_url(
            work.session,
            user.user_id,
            user.default_library_id,
            data.url,
            Topics.from_settings(state.settings),
            allow_hosts=state.settings.fetch_allow_hosts,
            request_id=g.request_id,
            correlation_id=g.correlation_id,
        )
        body = FromUrlOut(
            media_id=result.media_id,
            duplicate=result.duplicate,
            processing_status=result.processing_status,
        )
        return await work.respond(Data(data=body), result.status_code)
