"""Media read queries (SQL only). Access checks are applied by `nexus.media.service`.

Every media row is selected with the two facts its capabilities need: `has_file` (a
`media_file` row exists and, for an upload, its bytes arrived and passed the type check at
ingest) and `has_text` (a
fragment with non-blank text exists), as EXISTS sub-queries of the same statement, so a
page of media is one query.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nexus.sharing import closure
from nexus.users.service import checked_rows, checking_viewer

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

# can_read_media (SPEC §5) as a predicate on `m.id` for viewer `:v`; the same definition
# as `nexus.sharing.closure.readable_media_ids` (tests hold the two equal), inlined so a
# filtered page stays one query.
READABLE_BY_VIEWER = closure.READABLE_BY_VIEWER


Executor = AsyncSession | AsyncConnection

# The merge chain of `:m` as WITH items: `winner(id)` is the id it lives under now.
_WINNER = f"""
    RECURSIVE chain(id, hops) AS (
        SELECT CAST(:m AS uuid), 0
        UNION ALL
        SELECT mm.into_media_id, c.hops + 1
        FROM chain c JOIN media_merges mm ON mm.from_media_id = c.id
        WHERE c.hops < {MAX_MERGE_HOPS}
    ), winner AS (SELECT id FROM chain ORDER BY hops DESC LIMIT 1)
"""


async def resolve_merges(session: Executor, media_id: uuid.UUID) -> uuid.UUID:
    """The id `media_id` now lives under: itself, or the last winner of its merge chain."""
    winner = await session.scalar(text(f"WITH {_WINNER} SELECT id FROM winner"), {"m": media_id})
    return winner or media_id


_READABLE_MEDIA = text(
    checking_viewer(
        f"WITH {_WINNER} SELECT {_COLUMNS} FROM winner w JOIN media m ON m.id = w.id "
        f"WHERE {READABLE_BY_VIEWER}"
    )
)


async def readable_media(session: Executor, viewer: uuid.UUID, media_id: uuid.UUID) -> Any | None:
    """The media row `media_id` is served as (merges followed), or None when it is missing
    or the viewer may not read it: one statement, which also checks the viewer's bootstrap
    (`NotBootstrapped`)."""
    rows = (await session.execute(_READABLE_MEDIA, {"m": media_id, "v": viewer})).all()
    found = checked_rows(rows, "id")
    return found[0] if found else None


async def has_unchecked_upload(session: AsyncSession, media_id: uuid.UUID) -> bool:
    """True when the media is an upload whose file has not passed its type check."""
    found = await session.scalar(
        text("SELECT 1 FROM media_uploads WHERE media_id = :m AND verified_at IS NULL"),
        {"m": media_id},
    )
    return found is not None


async def get_media(session: Executor, media_id: uuid.UUID) -> Any | None:
    return (
        await session.execute(
            text(f"SELECT {_COLUMNS} FROM media m WHERE m.id = :m"), {"m": media_id}
        )
    ).one_or_none()


async def list_library_media(
    session: Executor,
    library_id: uuid.UUID,
    *,
    readable_by: uuid.UUID | None,
    limit: int,
    after: Sequence[Any] | None,
) -> Sequence[Any]:
    """Media of a library by (link created_at, media id), with `linked_at`.

    With `readable_by`, only rows that user may read (the default-library filter).
    """
    params: dict[str, Any] = {"l": library_id, "n": limit + 1}
    cond = ""
    if readable_by is not None:
        cond += f" AND {READABLE_BY_VIEWER}"
        params["v"] = readable_by
    if after is not None:
        cond += " AND (lm.created_at, lm.media_id) > (:after_at, :after_id)"
        params.update(after_at=after[0], after_id=after[1])
    result = await session.execute(
        text(
            f"SELECT {_COLUMNS}, lm.created_at AS linked_at FROM library_media lm "
            f"JOIN media m ON m.id = lm.media_id WHERE lm.library_id = :l{cond} "
            "ORDER BY lm.created_at, lm.media_id LIMIT :n"
        ),
        params,
    )
    return result.all()


async def member_library_media(
    session: Executor,
    viewer: uuid.UUID,
    library_id: uuid.UUID,
    *,
    limit: int,
    after: Sequence[Any] | None,
) -> Sequence[Any] | None:
    """`list_library_media` for a viewer, with the membership and bootstrap checks in the
    same statement: None when the viewer is not a member of the library, `NotBootstrapped`
    when the viewer is not bootstrapped; in a default library only rows the viewer may
    read (SPEC §5). Each row carries `linked_at`."""
    params: dict[str, Any] = {"l": library_id, "v": viewer, "n": limit + 1}
    cond = ""
    if after is not None:
        cond = " AND (lm.created_at, lm.media_id) > (:after_at, :after_id)"
        params.update(after_at=after[0], after_id=after[1])
    result = await session.execute(
        text(
            checking_viewer(
                "WITH lib AS (SELECT l.is_default FROM libraries l JOIN memberships mb "
                "ON mb.library_id = l.id AND mb.user_id = :v WHERE l.id = :l) "
                "SELECT lib.is_default AS lib_is_default, p.* FROM lib LEFT JOIN LATERAL ("
                f"SELECT {_COLUMNS}, lm.created_at AS linked_at FROM library_media lm "
                f"JOIN media m ON m.id = lm.media_id WHERE lm.library_id = :l{cond} "
                f"AND (NOT lib.is_default OR {READABLE_BY_VIEWER}) "
                "ORDER BY lm.created_at, lm.media_id LIMIT :n) p ON true"
            )
        ),
        params,
    )
    rows = result.all()
    if not checked_rows(rows, "lib_is_default"):
        return None
    return [r for r in rows if r.id is not None]


async def list_fragments(
    session: Executor, media_id: uuid.UUID, *, limit: int, after_idx: int | None
) -> Sequence[Any]:
    """Fragments of a media in reading order (by idx, unique per media)."""
    params: dict[str, Any] = {"m": media_id, "n": limit + 1}
    cond = ""
    if after_idx is not None:
        cond = " AND idx > :after"
        params["after"] = after_idx
    result = await session.execute(
        text(
            "SELECT id, idx, canonical_text, html_sanitized, created_at FROM fragments "
            f"WHERE media_id = :m{cond} ORDER BY idx LIMIT :n"
        ),
        params,
    )
    return result.all()
