"""Reading media: one media, its fragments, a library's media (SPEC §4, §5, §8).

Every read applies `can_read_media` (SPEC §5): media the viewer may not read is reported
exactly like missing media, 404 E_MEDIA_NOT_FOUND. An id that `media_merges` maps to a
winner is answered with the winner (when the viewer may read the winner).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db.types import TimeKey
from nexus.errors import Forbidden, NotFound
from nexus.libraries import service as libraries
from nexus.media import repo
from nexus.media.schemas import Capabilities, MediaOut
from nexus.media.states import READABLE, MediaKind, ProcessingStatus
from nexus.sharing import closure

PLAYABLE_KINDS = frozenset({MediaKind.VIDEO, MediaKind.PODCAST_EPISODE})


def media_not_found() -> NotFound:
    return NotFound("media not found", code="E_MEDIA_NOT_FOUND")


def capabilities(
    *,
    kind: str,
    status: str,
    has_file: bool,
    has_text: bool,
    external_playback_url: str | None,
) -> Capabilities:
    """SPEC §8: ready = status in (ready_for_reading, embedding, ready); pdf `can_read` =
    its file exists; every other kind `can_read` = ready (a video or podcast is read through
    its transcript); `can_highlight` = `can_read`; `can_quote`/`can_search` = a fragment
    has text; `can_play` = video/podcast with a playback URL; `can_download_file` = a file
    exists."""
    ready = ProcessingStatus(status) in READABLE
    media_kind = MediaKind(kind)
    can_read = has_file if media_kind == MediaKind.PDF else ready
    return Capabilities(
        can_read=can_read,
        can_highlight=can_read,
        can_quote=has_text,
        can_search=has_text,
        can_play=media_kind in PLAYABLE_KINDS and bool(external_playback_url),
        can_download_file=has_file,
    )


def media_out(row: repo.MediaRow) -> MediaOut:
    """A `repo` media row (with has_file/has_text) as the public shape."""
    return MediaOut(
        id=row.id,
        kind=row.kind,
        title=row.title,
        canonical_source_url=row.canonical_source_url,
        processing_status=row.processing_status,
        failure_stage=row.failure_stage,
        last_error_code=row.last_error_code,
        capabilities=capabilities(
            kind=row.kind,
            status=row.processing_status,
            has_file=row.has_file,
            has_text=row.has_text,
            external_playback_url=row.external_playback_url,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def resolve_merged_id(session: AsyncSession, media_id: uuid.UUID) -> uuid.UUID:
    """The id `media_id` lives under now (itself, or its merge winner); no access check."""
    return await repo.resolve_merges(session, media_id)


async def readable_media_id(
    session: AsyncSession, viewer: uuid.UUID, media_id: uuid.UUID
) -> uuid.UUID:
    """The id to serve for `media_id` (merges followed); 404 E_MEDIA_NOT_FOUND unless the
    viewer may read it."""
    resolved = await repo.resolve_merges(session, media_id)
    if not await closure.can_read_media(session, viewer, resolved):
        raise media_not_found()
    return resolved


async def check_shareable(session: AsyncSession, media_id: uuid.UUID) -> None:
    """403 E_FORBIDDEN for an upload whose file has not passed its type check (magic bytes,
    at POST /media/{id}/ingest): until then only its creator may see it."""
    if await repo.has_unchecked_upload(session, media_id):
        raise Forbidden(
            "an uploaded file can be shared once it has passed its type check "
            "(POST /media/{id}/ingest)"
        )


async def get_media(session: AsyncSession, viewer: uuid.UUID, media_id: uuid.UUID) -> MediaOut:
    """Order: merges followed → 404 E_MEDIA_NOT_FOUND unless readable."""
    resolved = await readable_media_id(session, viewer, media_id)
    row = await repo.get_media(session, resolved)
    if row is None:  # deleted between the two statements
        raise media_not_found()
    return media_out(row)


@dataclass(frozen=True)
class FragmentPage:
    media: MediaOut
    rows: list[repo.FragmentRow]


async def list_fragments(
    session: AsyncSession,
    viewer: uuid.UUID,
    media_id: uuid.UUID,
    *,
    limit: int,
    after_idx: int | None,
) -> FragmentPage:
    """The media (for its capabilities) and up to `limit + 1` fragments after `after_idx`.

    Order: merges followed → 404 E_MEDIA_NOT_FOUND unless readable."""
    media = await get_media(session, viewer, media_id)
    rows = await repo.list_fragments(session, media.id, limit=limit, after_idx=after_idx)
    return FragmentPage(media, rows)


async def list_library_media(
    session: AsyncSession,
    viewer: uuid.UUID,
    library_id: uuid.UUID,
    *,
    limit: int,
    after: TimeKey | None,
) -> list[repo.LinkedMediaRow]:
    """Up to `limit + 1` media rows of a library (with `linked_at`), in link order.

    Order: 404 E_LIBRARY_NOT_FOUND unless a member. In a default library only media the
    viewer may read are listed (a bare `library_media` row grants nothing, SPEC §5); in a
    shared library membership already makes every row readable.
    """
    lib = await libraries.access(session, viewer, library_id)
    return await repo.list_library_media(
        session,
        library_id,
        readable_by=viewer if lib.is_default else None,
        limit=limit,
        after=after,
    )
