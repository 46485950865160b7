"""Default-library closure, intrinsics, garbage collection and read access (SPEC §5, §6).

`d(u)` is u's default library. `library_media(d, m)` must always be justified by an
intrinsic `(d, m)` or an edge `(d, m, S)` whose user is still a member of S; GC deletes it
otherwise. Every function runs inside the caller's transaction; inserts are
`ON CONFLICT DO NOTHING`, so replays are harmless.

Lock order (strict revocation, SPEC §6), shared by every writer so none can deadlock or let
an edge outlive its membership:
  1. library row S (`FOR NO KEY UPDATE` to remove members or media, govern or delete;
     `FOR SHARE` to add media, invite or accept),
  2. membership rows of S (`FOR UPDATE` to delete; `FOR SHARE` while materialising),
  3. edges, default rows, job rows.

The exclusive library lock is `FOR NO KEY UPDATE`, not `FOR UPDATE`: it still excludes
every `FOR SHARE` holder and every other exclusive holder, but lets through the
`FOR KEY SHARE` locks that foreign-key checks take. A backfill chunk holds membership
(S, u) and then inserts edges referencing S; with `FOR UPDATE` on S, a member removal
waiting for that membership row would deadlock with the chunk's foreign-key check.

Default rows and GC: whoever writes a justification (intrinsic or edge) also upserts the
default row `library_media(d, m)` with `ON CONFLICT DO UPDATE`, which locks the row until
commit; GC first locks the rows it may delete, then deletes in a second statement whose
fresh snapshot sees every justification committed meanwhile. So GC never deletes a row
that a concurrent writer has just justified (a single DELETE would re-check only the row
itself after waiting, and miss the new edge in the other table).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# ---------------------------------------------------------------------------- locking


async def lock_library(session: AsyncSession, library_id: uuid.UUID, *, exclusive: bool) -> bool:
    """Lock library row S (`FOR NO KEY UPDATE` or `FOR SHARE`); False when it does not exist."""
    mode = "NO KEY UPDATE" if exclusive else "SHARE"
    found = await session.scalar(
        text(f"SELECT 1 FROM libraries WHERE id = :library_id FOR {mode}"),
        {"library_id": library_id},
    )
    return found is not None


async def lock_memberships(
    session: AsyncSession, library_id: uuid.UUID, *, exclusive: bool
) -> list[uuid.UUID]:
    """Lock every membership row of S in a stable order; returns the member ids."""
    mode = "UPDATE" if exclusive else "SHARE"
    rows = await session.execute(
        text(
            "SELECT user_id FROM memberships WHERE library_id = :library_id ORDER BY user_id FOR "
            f"{mode}"
        ),
        {"library_id": library_id},
    )
    return [r[0] for r in rows]


# ------------------------------------------------------------------------------- GC

_GC_LOCK = text(
    """
    SELECT 1 FROM library_media lm
    JOIN unnest(CAST(:default_library_ids AS uuid[]), CAST(:media_ids AS uuid[])) AS pair(d, m)
      ON lm.library_id = pair.d AND lm.media_id = pair.m
    ORDER BY lm.library_id, lm.media_id
    FOR UPDATE OF lm
    """
)

_GC = text(
    """
    DELETE FROM library_media lm
    USING unnest(CAST(:default_library_ids AS uuid[]), CAST(:media_ids AS uuid[])) AS pair(d, m)
    WHERE lm.library_id = pair.d AND lm.media_id = pair.m
      AND NOT EXISTS (SELECT 1 FROM default_library_intrinsics i
                      WHERE i.default_library_id = pair.d AND i.media_id = pair.m)
      AND NOT EXISTS (SELECT 1 FROM default_library_closure_edges e
                      WHERE e.default_library_id = pair.d AND e.media_id = pair.m)
    """
)


async def gc(session: AsyncSession, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> int:
    """GC(d, m) for each pair: delete the default row when nothing justifies it.

    Two statements on purpose: the first waits for (and then holds) the row locks of
    concurrent writers of justifications; the second decides with a snapshot that sees
    what they committed.
    """
    unique = sorted(set(pairs))
    if not unique:
        return 0
    params = {"default_library_ids": [p[0] for p in unique], "media_ids": [p[1] for p in unique]}
    await session.execute(_GC_LOCK, params)
    result = await session.execute(_GC, params)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --------------------------------------------------------------------- intrinsics


def default_link_ctes(*, library: str, media: str, when: str = "true") -> str:
    """`dl_intrinsic` and `dl_row`, items of a WITH list: the intrinsic of `media` in default
    library `library` (SQL expressions), then its library row upserted (and so locked until
    commit, like `_upsert_default_row`); only when the SQL condition `when` holds. `dl_row`
    returns `created` (true when the library row is new)."""
    return f"""
        dl_intrinsic AS (
            INSERT INTO default_library_intrinsics (default_library_id, media_id)
            SELECT {library}, {media} WHERE {when}
            ON CONFLICT DO NOTHING
        ), dl_row AS (
            INSERT INTO library_media (library_id, media_id)
            SELECT {library}, {media} WHERE {when}
            ON CONFLICT (library_id, media_id)
            DO UPDATE SET created_at = library_media.created_at
            RETURNING xmax = 0 AS created
        )
    """


_ADD_TO_DEFAULT = text(
    "WITH "
    + default_link_ctes(
        library="CAST(:default_library_id AS uuid)", media="CAST(:media_id AS uuid)"
    )
    + " SELECT created FROM dl_row"
)


async def add_to_default(session: AsyncSession, default_id: uuid.UUID, media_id: uuid.UUID) -> bool:
    """library_media(d, m) + intrinsic, in one statement. True when the library row was
    created."""
    created = await session.scalar(
        _ADD_TO_DEFAULT, {"default_library_id": default_id, "media_id": media_id}
    )
    return bool(created)


async def remove_from_default(
    session: AsyncSession, default_id: uuid.UUID, media_id: uuid.UUID
) -> bool:
    """Delete the intrinsic and GC(d, m). True when an intrinsic existed.

    The library row stays while an edge still justifies it.
    """
    result = await session.execute(
        text(
            "DELETE FROM default_library_intrinsics WHERE default_library_id = "
            ":default_library_id AND media_id = :media_id"
        ),
        {"default_library_id": default_id, "media_id": media_id},
    )
    await gc(session, [(default_id, media_id)])
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _upsert_default_row(
    session: AsyncSession, default_id: uuid.UUID, media_id: uuid.UUID
) -> bool:
    """library_media(d, m), locked until commit so a concurrent GC waits for us (module
    docstring). True when the row was created."""
    created = await session.scalar(
        text(
            "INSERT INTO library_media (library_id, media_id) VALUES (:library_id, :media_id) "
            "ON CONFLICT (library_id, media_id) "
            "DO UPDATE SET created_at = library_media.created_at "
            "RETURNING xmax = 0"
        ),
        {"library_id": default_id, "media_id": media_id},
    )
    return bool(created)


async def _insert_library_media(
    session: AsyncSession, library_id: uuid.UUID, media_id: uuid.UUID
) -> bool:
    created = await session.scalar(
        text(
            "INSERT INTO library_media (library_id, media_id) VALUES (:library_id, :media_id) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"library_id": library_id, "media_id": media_id},
    )
    return created is not None


# ------------------------------------------------------------ shared libraries


async def add_to_shared(session: AsyncSession, library_id: uuid.UUID, media_id: uuid.UUID) -> bool:
    """library_media(S, m) and, for every member u, edge (d(u), m, S) + library_media(d(u), m).

    Holds S's row (`FOR SHARE`) and its membership rows (`FOR SHARE`) so a concurrent
    member removal either finishes first (its member gets no edge) or waits for us (and
    then deletes the edge we wrote). True when library_media(S, m) was created.
    """
    await lock_library(session, library_id, exclusive=False)
    await lock_memberships(session, library_id, exclusive=False)
    created = await _insert_library_media(session, library_id, media_id)
    await session.execute(
        text(
            """
            WITH defaults AS (
                SELECT d.id AS default_id
                FROM memberships mb
                JOIN libraries d ON d.owner_user_id = mb.user_id AND d.is_default
                WHERE mb.library_id = :library_id
            ),
            edges AS (
                INSERT INTO default_library_closure_edges
                    (default_library_id, media_id, source_library_id)
                SELECT default_id, :media_id, :library_id FROM defaults
                ON CONFLICT DO NOTHING
            )
            -- Locks each default row (in a stable order) so a concurrent GC waits for us.
            INSERT INTO library_media (library_id, media_id)
            SELECT default_id, :media_id FROM defaults ORDER BY default_id
            ON CONFLICT (library_id, media_id)
            DO UPDATE SET created_at = library_media.created_at
            """
        ),
        {"library_id": library_id, "media_id": media_id},
    )
    return created


async def remove_from_shared(
    session: AsyncSession, library_id: uuid.UUID, media_id: uuid.UUID
) -> bool:
    """Delete library_media(S, m) and all edges (*, m, S); GC each affected default row."""
    removed = await session.execute(
        text("DELETE FROM library_media WHERE library_id = :library_id AND media_id = :media_id"),
        {"library_id": library_id, "media_id": media_id},
    )
    rows = await session.execute(
        text(
            "DELETE FROM default_library_closure_edges "
            "WHERE source_library_id = :library_id AND media_id = :media_id RETURNING "
            "default_library_id"
        ),
        {"library_id": library_id, "media_id": media_id},
    )
    await gc(session, [(r[0], media_id) for r in rows])
    return bool(removed.rowcount)  # type: ignore[attr-defined]


async def revoke_member(session: AsyncSession, library_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Cleanup when u leaves S (caller holds the locks and deletes the membership):
    delete u's edges from S, GC each, delete the backfill job row."""
    rows = await session.execute(
        text(
            """
            DELETE FROM default_library_closure_edges e
            USING libraries d
            WHERE d.owner_user_id = :user_id AND d.is_default
              AND e.default_library_id = d.id AND e.source_library_id = :library_id
            RETURNING e.default_library_id, e.media_id
            """
        ),
        {"user_id": user_id, "library_id": library_id},
    )
    await gc(session, [(r[0], r[1]) for r in rows])
    await session.execute(
        text(
            "DELETE FROM default_library_backfill_jobs "
            "WHERE source_library_id = :library_id AND user_id = :user_id"
        ),
        {"library_id": library_id, "user_id": user_id},
    )


async def before_library_delete(session: AsyncSession, library_id: uuid.UUID) -> None:
    """Delete every edge from S and GC each affected (d, m) before the cascade runs."""
    rows = await session.execute(
        text(
            "DELETE FROM default_library_closure_edges WHERE source_library_id = :library_id "
            "RETURNING default_library_id, media_id"
        ),
        {"library_id": library_id},
    )
    await gc(session, [(r[0], r[1]) for r in rows])


# ----------------------------------------------------------------------- reading

# The read rule of SPEC §5 as one SQL predicate over a media id column `m.id` and a
# viewer bound as `:viewer`; list queries inline it, `readable_media_ids` uses it on an id list.
READABLE_BY_VIEWER = """
    (EXISTS (SELECT 1 FROM library_media lm_r
             JOIN libraries l_r ON l_r.id = lm_r.library_id AND NOT l_r.is_default
             JOIN memberships mb_r ON mb_r.library_id = l_r.id AND mb_r.user_id = :viewer
             WHERE lm_r.media_id = m.id)
     OR EXISTS (SELECT 1 FROM default_library_intrinsics i_r
                JOIN libraries d_r ON d_r.id = i_r.default_library_id
                                  AND d_r.owner_user_id = :viewer AND d_r.is_default
                WHERE i_r.media_id = m.id)
     OR EXISTS (SELECT 1 FROM default_library_closure_edges e_r
                JOIN libraries d_r ON d_r.id = e_r.default_library_id
                                  AND d_r.owner_user_id = :viewer AND d_r.is_default
                JOIN memberships mb_r ON mb_r.library_id = e_r.source_library_id
                                     AND mb_r.user_id = :viewer
                WHERE e_r.media_id = m.id))
"""

_READABLE = "SELECT m.id FROM unnest(CAST(:ids AS uuid[])) AS m(id) WHERE " + READABLE_BY_VIEWER


async def readable_media_ids(
    session: AsyncSession, viewer: uuid.UUID, media_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """The subset of `media_ids` the viewer may read, in one query (SPEC §5)."""
    if not media_ids:
        return set()
    rows = await session.execute(text(_READABLE), {"ids": list(media_ids), "viewer": viewer})
    return {r[0] for r in rows}


async def can_read_media(session: AsyncSession, viewer: uuid.UUID, media_id: uuid.UUID) -> bool:
    """True iff m is in a non-default library the viewer belongs to, or the viewer's
    default library has an intrinsic for m, or an edge (d, m, S) with the viewer still a
    member of S. A bare `library_media` row in a default library grants nothing; missing
    media is never readable."""
    return media_id in await readable_media_ids(session, viewer, [media_id])
