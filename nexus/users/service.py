"""User bootstrap: every authenticated user has a row and exactly one default library.

`ensure_user` is race-safe and idempotent: concurrent first requests of one user all end
with one `users` row, one default library named `My Library` (held by the partial unique
index `uix_libraries_one_default_per_user`) and one `admin` membership of its owner. The
common case (user already bootstrapped) is a single SELECT.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db.raw import Executor, Row, Statement, fetch
from nexus.libraries.models import Library, Membership
from nexus.users.models import User

DEFAULT_LIBRARY_NAME = "My Library"


@dataclass(frozen=True)
class CurrentUser:
    user_id: uuid.UUID
    default_library_id: uuid.UUID


class NotBootstrapped(Exception):
    """A read found its viewer (`:v`) not bootstrapped: `ensure_user`, then read again."""


# The bootstrap check of a user as a SQL expression; reads of a known user embed it
# (`BOOTSTRAPPED_VIEWER`, on `:v`) so the check costs no statement of its own.
_DEFAULT_LIBRARY_OF = """
    SELECT l.id FROM libraries l
    JOIN memberships m ON m.library_id = l.id AND m.user_id = l.owner_user_id
        AND m.role = 'admin'
    WHERE l.owner_user_id = {user} AND l.is_default
"""
_DEFAULT_LIBRARY = Statement(_DEFAULT_LIBRARY_OF.format(user=":user_id"))
BOOTSTRAPPED_VIEWER = f"EXISTS ({_DEFAULT_LIBRARY_OF.format(user=':viewer')})"


def checking_viewer(query: str) -> str:
    """`query` (a SELECT on viewer `:viewer`, WITH allowed) with a first column `booted`: always
    at least one row, whose other columns are NULL when `query` found nothing."""
    return (
        f"SELECT b.booted, q.* FROM (SELECT {BOOTSTRAPPED_VIEWER} AS booted) b "
        f"LEFT JOIN LATERAL ({query}) q ON true"
    )


def checked_rows(rows: Sequence[Row], key: str) -> Sequence[Row]:
    """The rows of a `checking_viewer` query whose `key` column is set (read their columns
    by name; `booted` is among them); raises `NotBootstrapped` when the viewer is not
    bootstrapped."""
    if not rows or not rows[0]["booted"]:
        raise NotBootstrapped()
    return [r for r in rows if r[key] is not None]


async def default_library_of(executor: Executor, user_id: uuid.UUID) -> uuid.UUID | None:
    """The user's default library when it exists with the owner's admin membership (the
    check every request makes; fixed SQL, it runs per request)."""
    rows = await fetch(executor, _DEFAULT_LIBRARY, {"user_id": user_id})
    if not rows:
        return None
    library_id: uuid.UUID = rows[0]["id"]
    return library_id


async def ensure_user(session: AsyncSession, user_id: uuid.UUID) -> CurrentUser:
    """Create whatever of (user, default library, admin membership) is missing.

    Runs in the caller's transaction. Every insert is `ON CONFLICT DO NOTHING`, so a
    concurrent transaction doing the same waits on the conflicting row and then yields.
    """
    library_id = await default_library_of(session, user_id)
    if library_id is not None:
        return CurrentUser(user_id=user_id, default_library_id=library_id)

    await session.execute(pg_insert(User).values(id=user_id).on_conflict_do_nothing())
    library_id = await session.scalar(
        pg_insert(Library)
        .values(owner_user_id=user_id, name=DEFAULT_LIBRARY_NAME, is_default=True)
        .on_conflict_do_nothing(index_elements=["owner_user_id"], index_where=text("is_default"))
        .returning(Library.id)
    )
    if library_id is None:
        library_id = await session.scalar(
            select(Library.id).where(Library.owner_user_id == user_id, Library.is_default)
        )
    assert library_id is not None, "default library vanished inside the transaction"
    await session.execute(
        pg_insert(Membership)
        .values(library_id=library_id, user_id=user_id, role="admin")
        .on_conflict_do_nothing(index_elements=["library_id", "user_id"])
    )
    return CurrentUser(user_id=user_id, default_library_id=library_id)
