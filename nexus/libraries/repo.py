"""List queries of the library aggregate (SQL only; access checks are the caller's).

Every list is keyset-paginated: `after` is the sort key of the last row already served
(None for the first page) and `limit` rows plus one are returned, so the caller can tell
whether another page exists. Orders are total (a timestamp, then a unique id).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db.raw import Executor, Statement, fetch
from nexus.db.types import BindParams, TimeKey, fields_of
from nexus.users.service import checked_rows, checking_viewer


@dataclass(frozen=True)
class LibraryView:
    """A library as one member sees it (with their role)."""

    id: uuid.UUID
    name: str
    owner_user_id: uuid.UUID
    is_default: bool
    role: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MemberView:
    user_id: uuid.UUID
    role: str
    is_owner: bool
    created_at: datetime


@dataclass(frozen=True)
class InviteView:
    """A `library_invitations` row (every column)."""

    id: uuid.UUID
    library_id: uuid.UUID
    inviter_user_id: uuid.UUID
    invitee_user_id: uuid.UUID
    role: str
    status: str
    created_at: datetime
    responded_at: datetime | None


def _after(condition: str, after: TimeKey | None) -> tuple[str, BindParams]:
    if after is None:
        return "", {}
    return f" AND {condition} > (:after_at, :after_id)", {
        "after_at": after[0],
        "after_id": after[1],
    }


def _list_libraries(cond: str) -> Statement:
    return Statement(
        checking_viewer(
            "SELECT l.id, l.name, l.owner_user_id, l.is_default, m.role, l.created_at, "
            "l.updated_at FROM libraries l "
            "JOIN memberships m ON m.library_id = l.id AND m.user_id = :viewer "
            f"WHERE true{cond} ORDER BY l.created_at, l.id LIMIT :row_limit"
        )
    )


# The first page and the pages after a cursor (fixed SQL: prepared once per connection).
_LIBRARIES = _list_libraries("")
_LIBRARIES_AFTER = _list_libraries(" AND (l.created_at, l.id) > (:after_at, :after_id)")


async def list_libraries(
    executor: Executor,
    viewer: uuid.UUID,
    *,
    limit: int,
    after: TimeKey | None,
) -> list[LibraryView]:
    """Libraries the viewer is a member of, with their role; by (created_at, id). The same
    statement checks the viewer's bootstrap (`NotBootstrapped`)."""
    params: BindParams = {"viewer": viewer, "row_limit": limit + 1}
    if after is not None:
        params.update(after_at=after[0], after_id=after[1])
    rows = await fetch(executor, _LIBRARIES if after is None else _LIBRARIES_AFTER, params)
    return [
        LibraryView(
            r["id"],
            r["name"],
            r["owner_user_id"],
            r["is_default"],
            r["role"],
            r["created_at"],
            r["updated_at"],
        )
        for r in checked_rows(rows, "id")
    ]


async def list_members(
    session: AsyncSession, library_id: uuid.UUID, *, limit: int, after: TimeKey | None
) -> list[MemberView]:
    """Members of a library with `is_owner`; by (created_at, user_id)."""
    cond, params = _after("(m.created_at, m.user_id)", after)
    result = await session.execute(
        text(
            "SELECT m.user_id, m.role, (m.user_id = l.owner_user_id) AS is_owner, m.created_at "
            "FROM memberships m JOIN libraries l ON l.id = m.library_id "
            f"WHERE m.library_id = :library_id{cond} ORDER BY m.created_at, m.user_id LIMIT "
            ":row_limit"
        ),
        {"library_id": library_id, "row_limit": limit + 1, **params},
    )
    return [MemberView(**fields_of(row)) for row in result]


async def list_invites(
    session: AsyncSession,
    *,
    library_id: uuid.UUID | None = None,
    invitee_user_id: uuid.UUID | None = None,
    status: str | None = None,
    limit: int,
    after: TimeKey | None,
) -> list[InviteView]:
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
            "ORDER BY created_at, id LIMIT :row_limit"
        ),
        {"owner": library_id or invitee_user_id, "row_limit": limit + 1, **params},
    )
    return [InviteView(**fields_of(row)) for row in result]
