"""Media read routes (SPEC §4, §8). Every one applies `can_read_media`: media the caller
may not read is answered exactly like missing media, 404 E_MEDIA_NOT_FOUND. An id merged
into another media (`media_merges`) is answered with the winner."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from nexus.media import service as media
from nexus.media.schemas import Capabilities, FragmentOut, MediaOut
from web.auth import current_user, user_required
from web.envelope import Data
from web.pagination import ListQuery, Page, after_key, page_of
from web.uow import unit_of_work

bp = Blueprint("media", __name__)


class FragmentsPage(BaseModel):
    """`{"data": [fragments], "media_id", "capabilities", "page"}`: `media_id` is the id
    served (the winner when the requested id was merged)."""

    data: list[FragmentOut]
    media_id: uuid.UUID
    capabilities: Capabilities
    page: Page


@bp.get("/media/<uuid:media_id>")
@validate_response(Data[MediaOut])
@user_required
async def get_media(media_id: uuid.UUID) -> Data[MediaOut]:
    """Order: 400 id → merges followed → 404 E_MEDIA_NOT_FOUND (missing or not readable)."""
    async with unit_of_work() as uow:
        out = await media.get_media(uow.session, current_user().user_id, media_id)
    return Data(data=out)


@bp.get("/media/<uuid:media_id>/fragments")
@validate_querystring(ListQuery)
@validate_response(FragmentsPage)
@user_required
async def list_fragments(media_id: uuid.UUID, query_args: ListQuery) -> FragmentsPage:
    """Fragments in reading order (by `idx`) with the media's capabilities. Order: 400
    id/limit/cursor → merges followed → 404 E_MEDIA_NOT_FOUND."""
    scope = f"fragments:{media_id}"
    after = after_key(query_args.cursor, scope, (int,))
    async with unit_of_work() as uow:
        result = await media.list_fragments(
            uow.session,
            current_user().user_id,
            media_id,
            limit=query_args.limit,
            after_idx=int(after[0]) if after else None,
        )
    items, page = page_of(result.rows, query_args.limit, scope, lambda r: (r.idx,))
    return FragmentsPage(
        data=[FragmentOut.model_validate(r) for r in items],
        media_id=result.media.id,
        capabilities=result.media.capabilities,
        page=page,
    )
