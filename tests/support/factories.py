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
