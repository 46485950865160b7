"""Media routes (SPEC §4, §8): save by URL, read, fragments, retry.

Every read applies `can_read_media`: media the caller may not read is answered exactly
like missing media, 404 E_MEDIA_NOT_FOUND. An id merged into another media
(`media_merges`) is answered with the winner."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field
from quart import Blueprint, Response, g
from quart_schema import (
    document_response,
    validate_request,
    validate_response,
)
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.fetching.urls import MAX_URL_LENGTH
from nexus.ingest import retry
from nexus.ingest import service as ingest
from nexus.media import service as media
from nexus.media.schemas import Capabilities, FragmentOut, MediaOut
from nexus.messaging.topics import Topics
from nexus.uploads.storage import LocalStorage
from web.auth import current_user, user_required, viewer_required
from web.envelope import Data, json_response
from web.idempotency import Reply, idempotent_unit_of_work
from web.openapi import idempotent, links, raises
from web.pagination import ListQuery, Page, after_key, page_of
from web.querystring import validate_querystring
from web.ratelimit import rate_limited
from web.state import nexus_state
from web.uow import read_as_viewer, unit_of_work

bp = Blueprint("media", __name__)

_SAVED = {"media_id": "$response.body#/data/media_id"}
MEDIA_LINKS = {
    op: _SAVED for op in ("get_media", "list_fragments", "retry_media", "media_events", "file_url")
}


class FragmentsPage(BaseModel):
    """`{"data": [fragments], "media_id", "capabilities", "page"}`: `media_id` is the id
    served (the winner when the requested id was merged)."""

    data: list[FragmentOut]
    media_id: uuid.UUID
    capabilities: Capabilities
    page: Page


@bp.get("/media/<uuid:media_id>")
@raises("E_MEDIA_NOT_FOUND")
@document_response(Data[MediaOut])
@viewer_required
async def get_media(media_id: uuid.UUID) -> Response:
    """Order: 400 id → merges followed → 404 E_MEDIA_NOT_FOUND (missing or not readable)."""
    row = await read_as_viewer(lambda conn, viewer: media.readable_row(conn, viewer, media_id))
    return json_response({"data": media.media_dict(row)})


@bp.get("/media/<uuid:media_id>/fragments")
@raises("E_MEDIA_NOT_FOUND")
@viewer_required
@validate_querystring(ListQuery)
@document_response(FragmentsPage)
async def list_fragments(media_id: uuid.UUID, query_args: ListQuery) -> Response:
    """Fragments in reading order (by `idx`) with the media's capabilities. Order: 400
    id/limit/cursor → merges followed → 404 E_MEDIA_NOT_FOUND."""
    scope = f"fragments:{media_id}"
    after = after_key(query_args.cursor, scope, (int,))
    result = await read_as_viewer(
        lambda conn, viewer: media.list_fragments(
            conn,
            viewer,
            media_id,
            limit=query_args.limit,
            after_idx=int(after[0]) if after else None,
        )
    )
    items, page = page_of(result.rows, query_args.limit, scope, lambda r: (r["fragment_idx"],))
    # Our own rows, in the `FragmentsPage` shape: not re-validated.
    return json_response(
        {
            "data": [media.fragment_dict(r) for r in items],
            "media_id": result.media["id"],
            "capabilities": media.capabilities_of(result.media),
            "page": page,
        }
    )


class FromUrlIn(BaseModel):
    # Length and shape are checked by the service so that every bad URL is E_INVALID_URL;
    # the schema only documents them.
    url: str = Field(
        json_schema_extra={"format": "uri", "maxLength": MAX_URL_LENGTH},
        examples=["https://example.com/articles/a-long-read"],
    )


class FromUrlOut(BaseModel):
    media_id: uuid.UUID
    duplicate: bool
    processing_status: str


@bp.post("/media/from_url")
@raises("E_INVALID_URL")
@idempotent
@links(202, **MEDIA_LINKS)
@links(200, **MEDIA_LINKS)
@user_required
@validate_request(FromUrlIn)
@validate_response(Data[FromUrlOut], 202)
@validate_response(Data[FromUrlOut], 200)
@rate_limited()
async def from_url(data: FromUrlIn) -> Reply:
    """Save a web article by URL: 202 when a new media is created and queued, 200 with
    `duplicate: true` when an article with the same canonical URL exists (it is added to
    the caller's default library). Order: 401 → 400 body → 429 E_RATE_LIMITED
    (shared with upload init and retry) → 400 Idempotency-Key → replay or 409
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


class RetryOut(BaseModel):
    media_id: uuid.UUID
    processing_status: str


async def reset_media(
    session: AsyncSession, media_id: uuid.UUID, *, viewer: uuid.UUID | None, actor: str
) -> retry.RetryResult:
    """`retry.retry_media` with this request's topics, storage and ids; `viewer=None` is
    the operator retry (no ownership check)."""
    settings = nexus_state().settings
    return await retry.retry_media(
        session,
        media_id,
        Topics.from_settings(settings),
        LocalStorage(settings.storage_dir),
        viewer=viewer,
        actor=actor,
        request_id=g.request_id,
        correlation_id=g.correlation_id,
    )


@bp.post("/media/<uuid:media_id>/retry")
@raises("E_MEDIA_NOT_FOUND", "E_FORBIDDEN", "E_MEDIA_NOT_RETRYABLE", "E_STORAGE_MISSING")
@validate_response(Data[RetryOut], 202)
@user_required
@rate_limited()
async def retry_media(media_id: uuid.UUID) -> tuple[Data[RetryOut], int]:
    """Reset a failed media per its failure stage and re-enqueue it → 202.

    Order: 400 id → 401 → 429 E_RATE_LIMITED (the ingest limit: every attempt counts) →
    merges followed → 404 E_MEDIA_NOT_FOUND unless readable → 403
    E_FORBIDDEN unless creator or admin of a library containing it → 409
    E_MEDIA_NOT_RETRYABLE unless failed → 400 E_STORAGE_MISSING (upload stage, file gone).
    """
    user = current_user().user_id
    async with unit_of_work() as uow:
        result = await reset_media(uow.session, media_id, viewer=user, actor=f"user:{user}")
    return Data(data=RetryOut(media_id=result.media_id, processing_status="pending")), 202
