"""Media read queries (SQL only). Access checks are applied by `nexus.media.service`.

Every media row is selected with the two facts its capabilities need: `has_file` (a
`media_file` row exists and, for an upload, its bytes arrived and passed the type check at
ingest) and `has_text` (a
fragment with non-blank text exists), as EXISTS sub-queries of the same statement, so a
page of media is one query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db.types import BindParams, TimeKey, fields_of
from nexus.sharing import closure


@dataclass(frozen=True, slots=True)
class MediaRow:
    """A media row as `_COLUMNS` selects it (statuses and kinds as their string values)."""

    id: uuid.UUID
    kind: str
    title: str | None
    canonical_source_url: str | None
    processing_status: str
    failure_stage: str | None
    last_error_code: str | None
    external_playback_url: str | None
    created_at: datetime
    updated_at: datetime
    has_file: bool
    has_text: bool


@dataclass(frozen=True, slots=True)
class LinkedMediaRow(MediaRow):
    """A media row of a library listing, with when it was linked (the page order)."""

    linked_at: datetime


@dataclass(frozen=True, slots=True)
class FragmentRow:
    id: uuid.UUID
    idx: int
    canonical_text: str
    html_sanitized: str
    created_at: datetime


# How many merge hops `resolve_merges` follows (a winner may itself have been merged).
MAX_MERGE_HOPS = 8

_COLUMNS = """
    m.id, m.kind, m.title, m.canonical_source_url, m.processing_status, m.failure_stage,
    m.last_error_code, m.external_playback_url, m.created_at, m.updated_at,
    EXISTS (SELECT 1 FROM media_file f WHERE f.media_id = m.id AND NOT EXISTS (
            SELECT 1 FROM media_uploads u WHERE u.media_id = m.id AND u.verified_at IS NULL))
        AS has_file,
    EXISTS (SELECT 1 FROM fragments fr
            WHERE fr.media_id = m.id AND btrim(fr.canonical_text) <> '') AS has_text
"""

# can_read_media (SPEC §5) as a predicate on `m.id` for viewer `:viewer`; the same definition
# as `nexus.sharing.closure.readable_media_ids` (tests hold the two equal), inlined so a
# filtered page stays one query.
READABLE_BY_VIEWER = closure.READABLE_BY_VIEWER


async def resolve_merges(session: AsyncSession, media_id: uuid.UUID) -> uuid.UUID:
    """The id `media_id` now lives under: itself, or the last winner of its merge chain."""
    winner = await session.scalar(
        text(
            f"""
            WITH RECURSIVE chain(id, hops) AS (
                SELECT CAST(:media_id AS uuid), 0
                UNION ALL
                SELECT mm.into_media_id, c.hops + 1
                FROM chain c JOIN media_merges mm ON mm.from_media_id = c.id
                WHERE c.hops < {MAX_MERGE_HOPS}
            )
            SELECT id FROM chain ORDER BY hops DESC LIMIT 1
            """
        ),
        {"media_id": media_id},
    )
    return winner or media_id


async def has_unchecked_upload(session: AsyncSession, media_id: uuid.UUID) -> bool:
    """True when the media is an upload whose file has not passed its type check."""
    found = await session.scalar(
        text("SELECT 1 FROM media_uploads WHERE media_id = :media_id AND verified_at IS NULL"),
        {"media_id": media_id},
    )
    return found is not None


async def get_media(session: AsyncSession, media_id: uuid.UUID) -> MediaRow | None:
    row = (
        await session.execute(
            text(f"SELECT {_COLUMNS} FROM media m WHERE m.id = :media_id"), {"media_id": media_id}
        )
    ).one_or_none()
    return None if row is None else MediaRow(**fields_of(row))


async def list_library_media(
    session: AsyncSession,
    library_id: uuid.UUID,
    *,
    readable_by: uuid.UUID | None,
    limit: int,
    after: TimeKey | None,
) -> list[LinkedMediaRow]:
    """Media of a library by (link created_at, media id), with `linked_at`.

    With `readable_by`, only rows that user may read (the default-library filter).
    """
    params: BindParams = {"library_id": library_id, "row_limit": limit + 1}
    cond = ""
    if readable_by is not None:
        cond += f" AND {READABLE_BY_VIEWER}"
        params["viewer"] = readable_by
    if after is not None:
        cond += " AND (lm.created_at, lm.media_id) > (:after_at, :after_id)"
        params.update(after_at=after[0], after_id=after[1])
    result = await session.execute(
        text(
            f"SELECT {_COLUMNS}, lm.created_at AS linked_at FROM library_media lm "
            f"JOIN media m ON m.id = lm.media_id WHERE lm.library_id = :library_id{cond} "
            "ORDER BY lm.created_at, lm.media_id LIMIT :row_limit"
        ),
        params,
    )
    return [LinkedMediaRow(**fields_of(row)) for row in result]


async def list_fragments(
    session: AsyncSession, media_id: uuid.UUID, *, limit: int, after_idx: int | None
) -> list[FragmentRow]:
    """Fragments of a media in reading order (by idx, unique per media)."""
    params: BindParams = {"media_id": media_id, "row_limit": limit + 1}
    cond = ""
    if after_idx is not None:
        cond = " AND idx > :after"
        params["after"] = after_idx
    result = await session.execute(
        text(
            "SELECT id, idx, canonical_text, html_sanitized, created_at FROM fragments "
            f"WHERE media_id = :media_id{cond} ORDER BY idx LIMIT :row_limit"
        ),
        params,
    )
    return [FragmentRow(**fields_of(row)) for row in result]
