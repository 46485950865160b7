"""Media read queries (SQL only). Access checks are applied by `nexus.media.service`.

Every media row is selected with the two facts its capabilities need: `has_file` (a
`media_file` row exists and, for an upload, its bytes arrived and passed the type check at
ingest) and `has_text` (a
fragment with non-blank text exists), as EXISTS sub-queries of the same statement, so a
page of media is one query.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nexus.db.raw import Executor, Row, Statement, fetch, utc_text
from nexus.db.types import BindParams, TimeKey
from nexus.sharing import closure
from nexus.users.service import checked_rows, checking_viewer

# Rows leave this module as the driver gave them (asyncpg records, or SQLAlchemy row
# mappings inside a unit of work) and are read by column name: a page of 50 media is not
# copied into 50 typed objects before being shaped into its answer (`nexus.media.service`).
MediaRow = Row
"""A media row: `_COLUMNS` (statuses and kinds as their string values, timestamps as the
API's text, `nexus.db.raw.utc_text`)."""
LinkedMediaRow = Row
"""A media row of a library listing: `_COLUMNS` and `linked_at` (the page order, as
`utc_text`)."""
FragmentRow = Row
"""A fragment of `readable_media_fragments`: `fragment_id`, `fragment_idx`,
`fragment_text`, `fragment_html`, `fragment_created_at` (as `utc_text`)."""


# How many merge hops `resolve_merges` follows (a winner may itself have been merged).
MAX_MERGE_HOPS = 8

# The two enum columns as text (the same strings): asyncpg looks a custom type up on
# each connection's first statement that returns it (three more statements). The
# timestamps as the API's text (`utc_text`): these rows are answered as they are.
_COLUMNS = f"""
    m.id, m.kind, m.title, m.canonical_source_url,
    CAST(m.processing_status AS text) AS processing_status,
    CAST(m.failure_stage AS text) AS failure_stage, m.last_error_code,
    m.external_playback_url, {utc_text("m.created_at")} AS created_at,
    {utc_text("m.updated_at")} AS updated_at,
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


# The merge chain of `:media_id` as WITH items: `winner(id)` is the id it lives under now.
_WINNER = f"""
    RECURSIVE chain(id, hops) AS (
        SELECT CAST(:media_id AS uuid), 0
        UNION ALL
        SELECT mm.into_media_id, c.hops + 1
        FROM chain c JOIN media_merges mm ON mm.from_media_id = c.id
        WHERE c.hops < {MAX_MERGE_HOPS}
    ), winner AS (SELECT id FROM chain ORDER BY hops DESC LIMIT 1)
"""


async def resolve_merges(session: AsyncSession | AsyncConnection, media_id: uuid.UUID) -> uuid.UUID:
    """The id `media_id` now lives under: itself, or the last winner of its merge chain."""
    winner = await session.scalar(
        text(f"WITH {_WINNER} SELECT id FROM winner"), {"media_id": media_id}
    )
    return winner or media_id


_READABLE_MEDIA = Statement(
    checking_viewer(
        f"WITH {_WINNER} SELECT {_COLUMNS} FROM winner w JOIN media m ON m.id = w.id "
        f"WHERE {READABLE_BY_VIEWER}"
    )
)


async def readable_media(
    executor: Executor, viewer: uuid.UUID, media_id: uuid.UUID
) -> MediaRow | None:
    """The media row `media_id` is served as (merges followed), or None when it is missing
    or the viewer may not read it: one statement, which also checks the viewer's bootstrap
    (`NotBootstrapped`)."""
    rows = await fetch(executor, _READABLE_MEDIA, {"media_id": media_id, "viewer": viewer})
    found = checked_rows(rows, "id")
    return found[0] if found else None


# The media row's columns as NULLs (one per column of `_COLUMNS`), for its fragments' rows.
_NO_MEDIA = ", ".join(["NULL"] * 12)


def _readable_media_fragments(cond: str) -> Statement:
    # The media row (its EXISTS columns computed once), then its fragments, as rows of
    # their own: the media's columns are not repeated (and decoded again) on each one.
    return Statement(
        checking_viewer(
            f"WITH {_WINNER}, mr AS MATERIALIZED (SELECT {_COLUMNS} FROM winner w "
            f"JOIN media m ON m.id = w.id WHERE {READABLE_BY_VIEWER}) "
            "SELECT mr.*, NULL AS fragment_id, NULL AS fragment_idx, NULL AS fragment_text, "
            "NULL AS fragment_html, NULL AS fragment_created_at FROM mr UNION ALL ("
            f"SELECT {_NO_MEDIA}, f.id, f.idx, f.canonical_text, f.html_sanitized, "
            f"{utc_text('f.created_at')} FROM mr JOIN LATERAL (SELECT id, idx, canonical_text, "
            f"html_sanitized, created_at FROM fragments WHERE media_id = mr.id{cond} "
            "ORDER BY idx LIMIT :row_limit) f ON true)"
        )
    )


# The first page and the pages after a cursor (fixed SQL: prepared once per connection).
_MEDIA_FRAGMENTS = _readable_media_fragments("")
_MEDIA_FRAGMENTS_AFTER = _readable_media_fragments(" AND idx > :after")


async def readable_media_fragments(
    executor: Executor,
    viewer: uuid.UUID,
    media_id: uuid.UUID,
    *,
    limit: int,
    after_idx: int | None,
) -> tuple[MediaRow, list[FragmentRow]] | None:
    """`readable_media` and up to `limit + 1` of the winner's fragments after `after_idx`
    in reading order (by idx, unique per media), in the same statement; None when the media
    is missing or not readable by the viewer."""
    params: BindParams = {"media_id": media_id, "viewer": viewer, "row_limit": limit + 1}
    if after_idx is not None:
        params["after"] = after_idx
    rows = await fetch(
        executor, _MEDIA_FRAGMENTS if after_idx is None else _MEDIA_FRAGMENTS_AFTER, params
    )
    media = checked_rows(rows, "id")
    if not media:
        return None
    return media[0], [r for r in rows if r["fragment_id"] is not None]


async def has_unchecked_upload(session: AsyncSession, media_id: uuid.UUID) -> bool:
    """True when the media is an upload whose file has not passed its type check."""
    found = await session.scalar(
        text("SELECT 1 FROM media_uploads WHERE media_id = :media_id AND verified_at IS NULL"),
        {"media_id": media_id},
    )
    return found is not None


def _member_library_media(cond: str) -> Statement:
    return Statement(
        checking_viewer(
            "WITH lib AS (SELECT l.is_default FROM libraries l JOIN memberships mb "
            "ON mb.library_id = l.id AND mb.user_id = :viewer WHERE l.id = :library_id) "
            "SELECT lib.is_default AS lib_is_default, p.* FROM lib LEFT JOIN LATERAL ("
            f"SELECT {_COLUMNS}, {utc_text('lm.created_at')} AS linked_at FROM library_media lm "
            f"JOIN media m ON m.id = lm.media_id WHERE lm.library_id = :library_id{cond} "
            f"AND (NOT lib.is_default OR {READABLE_BY_VIEWER}) "
            "ORDER BY lm.created_at, lm.media_id LIMIT :row_limit) p ON true"
        )
    )


# The first page and the pages after a cursor (fixed SQL: prepared once per connection).
_MEMBER_LIBRARY_MEDIA = _member_library_media("")
_MEMBER_LIBRARY_MEDIA_AFTER = _member_library_media(
    " AND (lm.created_at, lm.media_id) > (:after_at, :after_id)"
)


async def member_library_media(
    executor: Executor,
    viewer: uuid.UUID,
    library_id: uuid.UUID,
    *,
    limit: int,
    after: TimeKey | None,
) -> list[LinkedMediaRow] | None:
    """Media of a library by (link created_at, media id) for a viewer, with the membership
    and bootstrap checks in the same statement: None when the viewer is not a member of
    the library, `NotBootstrapped` when the viewer is not bootstrapped; in a default
    library only rows the viewer may read (SPEC §5). Each row carries `linked_at`."""
    params: BindParams = {"library_id": library_id, "viewer": viewer, "row_limit": limit + 1}
    if after is not None:
        params.update(after_at=after[0], after_id=after[1])
    rows = await fetch(
        executor, _MEMBER_LIBRARY_MEDIA if after is None else _MEMBER_LIBRARY_MEDIA_AFTER, params
    )
    found = checked_rows(rows, "lib_is_default")
    if not found:
        return None
    return [r for r in found if r["id"] is not None]
