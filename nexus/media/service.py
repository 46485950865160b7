"""Reading media: one media, its fragments, a library's media (SPEC §4, §5, §8).

Every read applies `can_read_media` (SPEC §5): media the viewer may not read is reported
exactly like missing media, 404 E_MEDIA_NOT_FOUND. An id that `media_merges` maps to a
winner is answered with the winner (when the viewer may read the winner).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db.raw import Executor
from nexus.db.types import TimeKey
from nexus.errors import Forbidden, NotFound
from nexus.libraries import service as libraries
from nexus.media import repo
from nexus.media.schemas import MediaOut
from nexus.media.states import READABLE, MediaKind
from nexus.sharing import closure

PLAYABLE_KINDS = frozenset({MediaKind.VIDEO, MediaKind.PODCAST_EPISODE})
# The same sets as plain strings, for `capabilities_of` (50 times a page): rows carry the
# strings, and a str compares and hashes faster against a str than against an enum member.
_PDF = MediaKind.PDF.value
_READABLE = frozenset(status.value for status in READABLE)
_PLAYABLE = frozenset(kind.value for kind in PLAYABLE_KINDS)


def media_not_found() -> NotFound:
    return NotFound("media not found", code="E_MEDIA_NOT_FOUND")


def capabilities_of(row: repo.MediaRow) -> dict[str, bool]:
    """SPEC §8: ready = status in (ready_for_reading, embedding, ready); pdf `can_read` =
    its file exists; every other kind `can_read` = ready (a video or podcast is read through
    its transcript); `can_highlight` = `can_read`; `can_quote`/`can_search` = a fragment
    has text; `can_play` = video/podcast with a playback URL; `can_download_file` = a file
    exists. (`kind` and `status` compare as their enums' string values.)"""
    kind = row["kind"]
    has_file = bool(row["has_file"])
    has_text = bool(row["has_text"])
    can_read = has_file if kind == _PDF else row["processing_status"] in _READABLE
    return {
        "can_read": can_read,
        "can_highlight": can_read,
        "can_quote": has_text,
        "can_search": has_text,
        "can_play": kind in _PLAYABLE and bool(row["external_playback_url"]),
        "can_download_file": has_file,
    }


def media_dict(row: repo.MediaRow) -> dict[str, Any]:
    """A `repo` media row (with has_file/has_text) as the public `MediaOut` shape, as a
    plain dict in the model's field order: pages of media are serialised from these
    (`web.envelope.json_response` gives the same bytes as the model would) without building
    and validating 50 models from our own rows, which cost a fifth of the request's CPU.
    The id as its text here: the encoder would call back into Python for each of asyncpg's
    own UUID objects."""
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "title": row["title"],
        "canonical_source_url": row["canonical_source_url"],
        "processing_status": row["processing_status"],
        "failure_stage": row["failure_stage"],
        "last_error_code": row["last_error_code"],
        "capabilities": capabilities_of(row),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def fragment_dict(row: repo.FragmentRow) -> dict[str, Any]:
    """A fragment row as the public `FragmentOut` shape (its field order), not
    re-validated (the id as text, as in `media_dict`)."""
    return {
        "id": str(row["fragment_id"]),
        "idx": row["fragment_idx"],
        "canonical_text": row["fragment_text"],
        "html_sanitized": row["fragment_html"],
        "created_at": row["fragment_created_at"],
    }


def media_out(row: repo.MediaRow) -> MediaOut:
    """A `repo` media row (with has_file/has_text) as the public model (validated)."""
    return MediaOut.model_validate(media_dict(row))


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


async def readable_row(executor: Executor, viewer: uuid.UUID, media_id: uuid.UUID) -> repo.MediaRow:
    """Order: merges followed → 404 E_MEDIA_NOT_FOUND unless readable (one statement)."""
    row = await repo.readable_media(executor, viewer, media_id)
    if row is None:
        raise media_not_found()
    return row


async def get_media(executor: Executor, viewer: uuid.UUID, media_id: uuid.UUID) -> MediaOut:
    """`readable_row` as the public model (validated)."""
    return media_out(await readable_row(executor, viewer, media_id))


@dataclass(frozen=True)
class FragmentPage:
    media: repo.MediaRow
    rows: list[repo.FragmentRow]  # read with `fragment_dict`


async def list_fragments(
    executor: Executor,
    viewer: uuid.UUID,
    media_id: uuid.UUID,
    *,
    limit: int,
    after_idx: int | None,
) -> FragmentPage:
    """The media (for its capabilities) and up to `limit + 1` fragments after `after_idx`,
    in one statement.

    Order: merges followed → 404 E_MEDIA_NOT_FOUND unless readable."""
    found = await repo.readable_media_fragments(
        executor, viewer, media_id, limit=limit, after_idx=after_idx
    )
    if found is None:
        raise media_not_found()
    return FragmentPage(*found)


async def list_library_media(
    session: Executor,
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
    rows = await repo.member_library_media(session, viewer, library_id, limit=limit, after=after)
    if rows is None:
        raise libraries.library_not_found()
    return rows
