"""Small factories: every test builds its own rows."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def user(session: AsyncSession) -> uuid.UUID:
    uid = uuid.uuid4()
    await session.execute(text("INSERT INTO users (id) VALUES (:u)"), {"u": uid})
    return uid


async def library(
    session: AsyncSession, owner: uuid.UUID, *, default: bool = False, name: str | None = None
) -> uuid.UUID:
    lib = await session.scalar(
        text(
            "INSERT INTO libraries (owner_user_id, name, is_default) VALUES (:o, :n, :d) "
            "RETURNING id"
        ),
        {"o": owner, "n": name or ("My Library" if default else "Shared"), "d": default},
    )
    await member(session, lib, owner, "admin")
    return lib


async def member(
    session: AsyncSession, library_id: uuid.UUID, user_id: uuid.UUID, role: str = "member"
) -> None:
    await session.execute(
        text(
            "INSERT INTO memberships (library_id, user_id, role) VALUES (:l, :u, :r) "
            "ON CONFLICT DO NOTHING"
        ),
        {"l": library_id, "u": user_id, "r": role},
    )


async def media(session: AsyncSession, *, kind: str = "web_article", n: int = 1) -> list[uuid.UUID]:
    rows = await session.execute(
        text(
            "INSERT INTO media (kind, title) SELECT :k, 'title ' || g "
            "FROM generate_series(1, :n) g RETURNING id"
        ),
        {"k": kind, "n": n},
    )
    return [r[0] for r in rows]


async def add_media(
    session: AsyncSession, library_id: uuid.UUID, media_ids: list[uuid.UUID]
) -> None:
    await session.execute(
        text(
            "INSERT INTO library_media (library_id, media_id) "
            "SELECT :l, unnest(CAST(:m AS uuid[])) ON CONFLICT DO NOTHING"
        ),
        {"l": library_id, "m": media_ids},
    )


async def backfill_job(
    session: AsyncSession, d: uuid.UUID, s: uuid.UUID, u: uuid.UUID, **values: Any
) -> dict[str, uuid.UUID]:
    cols = {"default_library_id": d, "source_library_id": s, "user_id": u, **values}
    names = ", ".join(cols)
    params = ", ".join(f":{c}" for c in cols)
    await session.execute(
        text(f"INSERT INTO default_library_backfill_jobs ({names}) VALUES ({params})"), cols
    )
    return {"default_library_id": d, "source_library_id": s, "user_id": u}


async def sharing_scenario(session: AsyncSession, n_media: int = 3) -> dict[str, Any]:
    """A viewer with a default library, member of another user's shared library of media."""
    viewer, owner = await user(session), await user(session)
    d = await library(session, viewer, default=True)
    s = await library(session, owner)
    await member(session, s, viewer)
    ms = await media(session, n=n_media)
    await add_media(session, s, ms)
    return {"viewer": viewer, "owner": owner, "d": d, "s": s, "media": ms}


# ------------------------------------------------------------- services-level helpers


async def account(session: AsyncSession) -> tuple[uuid.UUID, uuid.UUID]:
    """A bootstrapped user (users row, default library, admin membership): (user, d)."""
    from nexus.users.service import ensure_user

    current = await ensure_user(session, uuid.uuid4())
    return current.user_id, current.default_library_id


async def closure_violations(session: AsyncSession) -> list[str]:
    """Every broken closure invariant in the database (SPEC §6), as readable strings.

    - a default-library row justified by neither an intrinsic nor an edge;
    - an edge (d, m, S) whose user (owner of d) is not a member of S;
    - an edge whose media is not in S, or whose source is a default library;
    - an edge or intrinsic whose default row library_media(d, m) is missing.
    """
    queries = {
        "unjustified default row": """
            SELECT lm.library_id, lm.media_id FROM library_media lm
            JOIN libraries d ON d.id = lm.library_id AND d.is_default
            WHERE NOT EXISTS (SELECT 1 FROM default_library_intrinsics i
                              WHERE i.default_library_id = lm.library_id
                                AND i.media_id = lm.media_id)
              AND NOT EXISTS (SELECT 1 FROM default_library_closure_edges e
                              WHERE e.default_library_id = lm.library_id
                                AND e.media_id = lm.media_id)""",
        "edge without membership": """
            SELECT e.default_library_id, e.media_id, e.source_library_id
            FROM default_library_closure_edges e
            JOIN libraries d ON d.id = e.default_library_id
            WHERE NOT EXISTS (SELECT 1 FROM memberships mb
                              WHERE mb.library_id = e.source_library_id
                                AND mb.user_id = d.owner_user_id)""",
        "edge without media in source": """
            SELECT e.default_library_id, e.media_id, e.source_library_id
            FROM default_library_closure_edges e
            WHERE NOT EXISTS (SELECT 1 FROM library_media lm
                              WHERE lm.library_id = e.source_library_id
                                AND lm.media_id = e.media_id)""",
        "edge from or into the wrong kind of library": """
            SELECT e.default_library_id, e.media_id, e.source_library_id
            FROM default_library_closure_edges e
            JOIN libraries d ON d.id = e.default_library_id
            JOIN libraries s ON s.id = e.source_library_id
            WHERE NOT d.is_default OR s.is_default""",
        "justification without default row": """
            SELECT j.d, j.m FROM (
                SELECT default_library_id AS d, media_id AS m FROM default_library_intrinsics
                UNION
                SELECT default_library_id, media_id FROM default_library_closure_edges) j
            WHERE NOT EXISTS (SELECT 1 FROM library_media lm
                              WHERE lm.library_id = j.d AND lm.media_id = j.m)""",
    }
    found: list[str] = []
    for name, sql in queries.items():
        for row in await session.execute(text(sql)):
            found.append(f"{name}: {tuple(row)}")
    return found


async def edges(session: AsyncSession) -> set[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    """Every closure edge as (default_library_id, media_id, source_library_id)."""
    rows = await session.execute(
        text(
            "SELECT default_library_id, media_id, source_library_id "
            "FROM default_library_closure_edges"
        )
    )
    return {(r[0], r[1], r[2]) for r in rows}


async def library_media_ids(session: AsyncSession, library_id: uuid.UUID) -> set[uuid.UUID]:
    rows = await session.execute(
        text("SELECT media_id FROM library_media WHERE library_id = :l"), {"l": library_id}
    )
    return {r[0] for r in rows}


async def owned_media(session: AsyncSession, default_id: uuid.UUID, n: int = 1) -> list[uuid.UUID]:
    """n media created by d's user (library_media(d, m) + intrinsic, as ingestion does)."""
    from nexus.sharing import closure

    ids = await media(session, n=n)
    for m in ids:
        await closure.add_to_default(session, default_id, m)
    return ids
