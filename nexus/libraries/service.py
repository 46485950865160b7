"""Library use cases: create, read, rename, delete, members, ownership, media links.

Every function runs in the caller's transaction and raises `NexusError`s. Check order
follows the masking rule (SPEC §2): not visible → 404, visible but not allowed → 403,
illegal state → 409. Governance mutations re-assert that the owner holds `admin`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import Forbidden, NexusError, NotFound
from nexus.libraries.states import LibraryRole, clean_name
from nexus.media import service as media_service
from nexus.sharing import closure


@dataclass(frozen=True)
class LibraryView:
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


def _view(row: Any) -> LibraryView:
    return LibraryView(
        row.id,
        row.name,
        row.owner_user_id,
        row.is_default,
        row.role,
        row.created_at,
        row.updated_at,
    )


def library_not_found() -> NotFound:
    return NotFound("library not found", code="E_LIBRARY_NOT_FOUND")


def _default_forbidden() -> Forbidden:
    return Forbidden(
        "the default library cannot be changed this way", code="E_DEFAULT_LIBRARY_FORBIDDEN"
    )


async def access(
    session: AsyncSession, viewer: uuid.UUID, library_id: uuid.UUID, *, lock: str | None = None
) -> LibraryView:
    """The library as the viewer sees it; E_LIBRARY_NOT_FOUND unless they are a member.

    `lock` ("UPDATE" or "SHARE") locks the library row first (SPEC §6 lock order);
    "UPDATE" takes `FOR NO KEY UPDATE` (see `nexus.sharing.closure`).
    """
    if lock is not None and not await closure.lock_library(
        session, library_id, exclusive=lock == "UPDATE"
    ):
        raise library_not_found()
    row = (
        await session.execute(
            text(
                "SELECT l.*, m.role FROM libraries l "
                "JOIN memberships m ON m.library_id = l.id AND m.user_id = :v WHERE l.id = :l"
            ),
            {"v": viewer, "l": library_id},
        )
    ).one_or_none()
    if row is None:
        raise library_not_found()
    return _view(row)


def _require_admin(lib: LibraryView) -> None:
    if lib.role != LibraryRole.ADMIN:
        raise Forbidden("only a library admin may do this")


def _name_or_raise(raw: str) -> str:
    name = clean_name(raw)
    if name is None:
        raise NexusError("E_NAME_INVALID", "name must be 1 to 100 characters after trimming")
    return name


async def default_library_id(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(
        text("SELECT id FROM libraries WHERE owner_user_id = :u AND is_default"), {"u": user_id}
    )


async def _repair_owner_admin(session: AsyncSession, library_id: uuid.UUID) -> None:
    """The owner always holds an admin membership (re-asserted on every mutation)."""
    await session.execute(
        text(
            """
            INSERT INTO memberships (library_id, user_id, role)
            SELECT id, owner_user_id, 'admin' FROM libraries WHERE id = :l
            ON CONFLICT (library_id, user_id) DO UPDATE SET role = 'admin'
            WHERE memberships.role <> 'admin'
            """
        ),
        {"l": library_id},
    )


async def governed(
    session: AsyncSession, viewer: uuid.UUID, library_id: uuid.UUID, *, lock: str = "UPDATE"
) -> LibraryView:
    """The library locked for a governance change (404 unless a member); 403
    E_DEFAULT_LIBRARY_FORBIDDEN for a default library, which is never governed."""
    lib = await access(session, viewer, library_id, lock=lock)
    if lib.is_default:
        raise _default_forbidden()
    return lib


async def _keep_an_admin(session: AsyncSession, library_id: uuid.UUID, target: Any) -> None:
    """403 E_LAST_ADMIN_FORBIDDEN when `target` (a membership row) is the last admin."""
    if target.role == LibraryRole.ADMIN and await _admin_count(session, library_id) <= 1:
        raise Forbidden("a library keeps at least one admin", code="E_LAST_ADMIN_FORBIDDEN")


# ------------------------------------------------------------------ libraries


async def create_library(session: AsyncSession, viewer: uuid.UUID, name: str) -> LibraryView:
    clean = _name_or_raise(name)
    row = (
        await session.execute(
            text(
                "INSERT INTO libraries (owner_user_id, name, is_default) VALUES (:v, :n, false) "
                "RETURNING *, 'admin' AS role"
            ),
            {"v": viewer, "n": clean},
        )
    ).one()
    await session.execute(
        text("INSERT INTO memberships (library_id, user_id, role) VALUES (:l, :v, 'admin')"),
        {"l": row.id, "v": viewer},
    )
    return _view(row)


async def rename_library(
    session: AsyncSession, viewer: uuid.UUID, library_id: uuid.UUID, name: str
) -> LibraryView:
    """Order: 404 not a member → 403 default → 403 not admin → 400 name."""
    lib = await governed(session, viewer, library_id)
    _require_admin(lib)
    clean = _name_or_raise(name)
    await session.execute(
        text("UPDATE libraries SET name = :n, updated_at = now() WHERE id = :l"),
        {"n": clean, "l": library_id},
    )
    await _repair_owner_admin(session, library_id)
    return await access(session, viewer, library_id)


async def delete_library(session: AsyncSession, viewer: uuid.UUID, library_id: uuid.UUID) -> None:
    """Order: 404 → 403 default → 403 E_OWNER_REQUIRED. GC runs before the cascade."""
    lib = await governed(session, viewer, library_id)
    if lib.owner_user_id != viewer:
        raise Forbidden("only the owner may delete a library", code="E_OWNER_REQUIRED")
    await closure.lock_memberships(session, library_id, exclusive=True)
    await closure.before_library_delete(session, library_id)
    await session.execute(text("DELETE FROM libraries WHERE id = :l"), {"l": library_id})


# -------------------------------------------------------------------- members


async def list_members(
    session: AsyncSession, viewer: uuid.UUID, library_id: uuid.UUID
) -> list[MemberView]:
    lib = await access(session, viewer, library_id)
    rows = await session.execute(
        text(
            "SELECT user_id, role, created_at FROM memberships WHERE library_id = :l "
            "ORDER BY created_at, user_id"
        ),
        {"l": library_id},
    )
    return [
        MemberView(r.user_id, r.role, r.user_id == lib.owner_user_id, r.created_at) for r in rows
    ]


async def _member(session: AsyncSession, library_id: uuid.UUID, user_id: uuid.UUID) -> Any:
    row = (
        await session.execute(
            text(
                "SELECT user_id, role, created_at FROM memberships "
                "WHERE library_id = :l AND user_id = :u"
            ),
            {"l": library_id, "u": user_id},
        )
    ).one_or_none()
    if row is None:
        raise NotFound("no such member in this library")
    return row


async def _admin_count(session: AsyncSession, library_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            text("SELECT count(*) FROM memberships WHERE library_id = :l AND role = 'admin'"),
            {"l": library_id},
        )
        or 0
    )


async def set_member_role(
    session: AsyncSession,
    viewer: uuid.UUID,
    library_id: uuid.UUID,
    user_id: uuid.UUID,
    role: LibraryRole,
) -> MemberView:
    """Order: 404 → 403 default → 403 not admin → 404 no such member → 403 owner (must stay
    admin: E_OWNER_EXIT_FORBIDDEN) → 403 last admin."""
    lib = await governed(session, viewer, library_id)
    _require_admin(lib)
    await closure.lock_memberships(session, library_id, exclusive=True)
    target = await _member(session, library_id, user_id)
    if role != LibraryRole.ADMIN:
        if user_id == lib.owner_user_id:
            raise Forbidden(
                "the owner is always an admin; transfer ownership first",
                code="E_OWNER_EXIT_FORBIDDEN",
            )
        await _keep_an_admin(session, library_id, target)
    await session.execute(
        text("UPDATE memberships SET role = :r WHERE library_id = :l AND user_id = :u"),
        {"r": role.value, "l": library_id, "u": user_id},
    )
    await _repair_owner_admin(session, library_id)
    return MemberView(user_id, role.value, user_id == lib.owner_user_id, target.created_at)


async def remove_member(
    session: AsyncSession, viewer: uuid.UUID, library_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Remove a member, or leave (viewer removes themself).

    Order: 404 → 403 default → 403 not admin (unless leaving) → 404 no such member →
    403 E_OWNER_EXIT_FORBIDDEN (the owner) → 403 last admin. Strict revocation: library row,
    then membership rows, then edges + GC + the backfill job row, in this transaction.
    """
    lib = await governed(session, viewer, library_id)
    if user_id != viewer:
        _require_admin(lib)
    await closure.lock_memberships(session, library_id, exclusive=True)
    target = await _member(session, library_id, user_id)
    if user_id == lib.owner_user_id:
        raise Forbidden(
            "the owner cannot leave; transfer ownership first", code="E_OWNER_EXIT_FORBIDDEN"
        )
    await _keep_an_admin(session, library_id, target)
    await session.execute(
        text("DELETE FROM memberships WHERE library_id = :l AND user_id = :u"),
        {"l": library_id, "u": user_id},
    )
    await closure.revoke_member(session, library_id, user_id)
    await _repair_owner_admin(session, library_id)


async def transfer_ownership(
    session: AsyncSession, viewer: uuid.UUID, library_id: uuid.UUID, new_owner: uuid.UUID
) -> LibraryView:
    """Order: 404 → 403 default → 403 E_OWNER_REQUIRED → 409 target not another member.
    The new owner becomes admin; the previous owner stays an admin member."""
    lib = await governed(session, viewer, library_id)
    if lib.owner_user_id != viewer:
        raise Forbidden("only the owner may transfer ownership", code="E_OWNER_REQUIRED")
    await closure.lock_memberships(session, library_id, exclusive=True)
    is_member = await session.scalar(
        text("SELECT 1 FROM memberships WHERE library_id = :l AND user_id = :u"),
        {"l": library_id, "u": new_owner},
    )
    if new_owner == viewer or is_member is None:
        raise NexusError(
            "E_OWNERSHIP_TRANSFER_INVALID", "the new owner must be another member of the library"
        )
    await session.execute(
        text("UPDATE libraries SET owner_user_id = :u, updated_at = now() WHERE id = :l"),
        {"u": new_owner, "l": library_id},
    )
    await _repair_owner_admin(session, library_id)
    return await access(session, viewer, library_id)


# ---------------------------------------------------------------------- media


def media_not_found() -> NotFound:
    return NotFound("media not found", code="E_MEDIA_NOT_FOUND")


async def add_media(
    session: AsyncSession, viewer: uuid.UUID, library_id: uuid.UUID, media_id: uuid.UUID
) -> bool:
    """Link readable media into a library; True when created (201), False if it existed.

    Order: 404 library → 403 not admin → 404 media not readable by the viewer → (shared
    library) 403 E_FORBIDDEN for an upload not yet past its type check.
    The library row is locked (`FOR SHARE`) before the membership is checked, so an admin
    removed concurrently cannot add with a stale authorisation.
    """
    lib = await access(session, viewer, library_id, lock="SHARE")
    _require_admin(lib)
    if not await closure.can_read_media(session, viewer, media_id):
        raise media_not_found()
    if lib.is_default:
        return await closure.add_to_default(session, library_id, media_id)
    await media_service.check_shareable(session, media_id)
    return await closure.add_to_shared(session, library_id, media_id)


async def remove_media(
    session: AsyncSession, viewer: uuid.UUID, library_id: uuid.UUID, media_id: uuid.UUID
) -> None:
    """Order: 404 library → 403 not admin → 404 media not in this library.

    Locks the library row exclusively first: removal of m from S then serialises with
    adding media to S (otherwise a concurrent re-add of m could write edges after our
    edge deletion, for media no longer in S) and with member removal.
    """
    lib = await access(session, viewer, library_id, lock="UPDATE")
    _require_admin(lib)
    if lib.is_default:
        # The row stays while an edge still justifies it (SPEC §6); that is not an error.
        present = await session.scalar(
            text("SELECT 1 FROM library_media WHERE library_id = :l AND media_id = :m"),
            {"l": library_id, "m": media_id},
        )
        if present is None:
            raise media_not_found()
        await closure.remove_from_default(session, library_id, media_id)
        return
    if not await closure.remove_from_shared(session, library_id, media_id):
        raise media_not_found()
