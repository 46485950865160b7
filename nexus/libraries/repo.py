"""List queries of the library aggregate (SQL only; access checks are the caller's).

Every list is keyset-paginated: `after` is the sort key of the last row already served
(None for the first page) and `limit` rows plus one are returned, so the caller can tell
whether another page exists. Orders are total (a timestamp, then a unique id).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nexus.users.service import checked_rows, checking_viewer

TimeKey = tuple[datetime, uuid.UUID]


def _after(condition: str, after: Sequence[Any] | None) -> tuple[str, dict[str, Any]]:
    if after is None:
        return "", {}
    return f" AND {condition} > (:after_at, :after_id)", {
        "after_at": after[0],
        "after_id": after[1],
    }


async def list_libraries(
    session: AsyncSession | AsyncConnection,
    viewer: uuid.UUID,
    *,
    limit: int,
    after: Sequence[Any] | None,
) -> Sequence[Any]:
    """Libraries the viewer is a member of, with their role; by (created_at, id). The same
    statement checks the viewer's bootstrap (`NotBootstrapped`)."""
    cond, params = _after("(l.created_at, l.id)", after)
    result = await session.execute(
        text(
            checking_viewer(
                "SELECT l.id, l.name, l.owner_user_id, l.is_default, m.role, l.created_at, "
                "l.updated_at FROM libraries l "
                "JOIN memberships m ON m.library_id = l.id AND m.user_id = :v "
                f"WHERE true{cond} ORDER BY l.created_at, l.id LIMIT :n"
            )
        ),
        {"v": viewer, "n": limit + 1, **params},
    )
    return checked_rows(result.all(), "id")


async def list_members(
    session: AsyncSession, library_id: uuid.UUID, *, limit: int, after: Sequence[Any] | None
) -> Sequence[Any]:
    """Members of a library with `is_owner`; by (created_at, user_id)."""
    cond, params = _after("(m.created_at, m.user_id)", after)
    result = await session.execute(
        text(
            "SELECT m.user_id, m.role, (m.user_id = l.owner_user_id) AS is_owner, m.created_at "
            "FROM memberships m JOIN libraries l ON l.id = m.library_id "
            f"WHERE m.library_id = :l{cond} ORDER BY m.created_at, m.user_id LIMIT :n"
        ),
        {"l": library_id, "n": limit + 1, **params},
    )
    return result.all()


async def list_invites(
    session: AsyncSession,
    *,
    library_id: uuid.UUID | None = None,
    invitee_user_id: uuid.UUID | None = None,
    status: str | None = None,
    limit: int,
    after: Sequence[Any] | None,
) -> Sequence[Any]:
    """Invitations of a library or of an invitee (optionally one status); by (created_at, id)."""
    if (library_id is None) == (invitee_user_id is None):
        raise ValueError("give exactly one of library_id and invitee_user_id")
    where = "library_id = :owner" if library_id is not None else "invitee_user_id = :owner"
    cond, params = _after("(created_at, id)", after)
    if status is not None:
        cond += " AND status = :status"
        params["status"] = status
    result = await session.execute(
        text(
            "SELECT id, library_id, inviter_user_id, invitee_user_id, role, status, "
            f"created_at, responded_at FROM library_invitations WHERE {where}{cond} "
            "ORDER BY created_at, id LIMIT :n"
        ),
        {"owner": library_id or invitee_user_id, "n": limit + 1, **params},
    )
    return result.all()
