"""Invitations: pending → accepted | declined (invitee), pending → revoked (library admin).

Repeating the terminal action an invite already took is idempotent (`idempotent: True`);
any other action on a terminal invite is 409 E_INVITE_NOT_PENDING. Visibility: the invitee
and the library's admins see an invite; everyone else gets 404 E_INVITE_NOT_FOUND.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import Conflict, Forbidden, NexusError, NotFound
from nexus.jobs import machine, outbox
from nexus.libraries.service import (
    MemberView,
    _require_admin,
    default_library_id,
    governed,
)
from nexus.libraries.states import InviteStatus, LibraryRole
from nexus.messaging.topics import Topics
from nexus.sharing import backfill, closure


@dataclass(frozen=True)
class InviteView:
    id: uuid.UUID
    library_id: uuid.UUID
    inviter_user_id: uuid.UUID
    invitee_user_id: uuid.UUID
    role: str
    status: str
    created_at: datetime
    responded_at: datetime | None


@dataclass(frozen=True)
class AcceptResult:
    invite: InviteView
    membership: MemberView | None
    idempotent: bool
    backfill_job_status: str | None


@dataclass(frozen=True)
class RespondResult:
    invite: InviteView
    idempotent: bool


def _invite(row: Any) -> InviteView:
    return InviteView(
        row.id,
        row.library_id,
        row.inviter_user_id,
        row.invitee_user_id,
        row.role,
        row.status,
        row.created_at,
        row.responded_at,
    )


def invite_not_found() -> NotFound:
    return NotFound("invitation not found", code="E_INVITE_NOT_FOUND")


async def create_invite(
    session: AsyncSession,
    viewer: uuid.UUID,
    library_id: uuid.UUID,
    invitee: uuid.UUID,
    role: LibraryRole,
) -> InviteView:
    """Order: 404 library → 403 default → 403 not admin → 404 E_USER_NOT_FOUND →
    409 E_INVITE_MEMBER_EXISTS → 409 E_INVITE_ALREADY_EXISTS."""
    lib = await governed(session, viewer, library_id, lock="SHARE")
    _require_admin(lib)
    if await session.scalar(text("SELECT 1 FROM users WHERE id = :u"), {"u": invitee}) is None:
        raise NotFound("no such user", code="E_USER_NOT_FOUND")
    member = await session.scalar(
        text("SELECT 1 FROM memberships WHERE library_id = :l AND user_id = :u"),
        {"l": library_id, "u": invitee},
    )
    if member is not None:
        raise Conflict("E_INVITE_MEMBER_EXISTS", "the user is already a member")
    row = (
        await session.execute(
            text(
                """
                INSERT INTO library_invitations (library_id, inviter_user_id, invitee_user_id, role)
                VALUES (:l, :v, :u, :r)
                ON CONFLICT (library_id, invitee_user_id) WHERE status = 'pending' DO NOTHING
                RETURNING *
                """
            ),
            {"l": library_id, "v": viewer, "u": invitee, "r": role.value},
        )
    ).one_or_none()
    if row is None:
        raise Conflict("E_INVITE_ALREADY_EXISTS", "a pending invitation already exists")
    return _invite(row)


async def _locked_invite(session: AsyncSession, invite_id: uuid.UUID) -> Any:
    return (
        await session.execute(
            text("SELECT * FROM library_invitations WHERE id = :i FOR UPDATE"), {"i": invite_id}
        )
    ).one_or_none()


async def _is_admin(session: AsyncSession, library_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    role = await session.scalar(
        text("SELECT role FROM memberships WHERE library_id = :l AND user_id = :u"),
        {"l": library_id, "u": user_id},
    )
    return role == LibraryRole.ADMIN


async def _as_invitee(session: AsyncSession, viewer: uuid.UUID, invite_id: uuid.UUID) -> Any:
    """The locked invite if the viewer is its invitee; 403 for the library's admins."""
    row = await _locked_invite(session, invite_id)
    if row is None:
        raise invite_not_found()
    if row.invitee_user_id != viewer:
        if await _is_admin(session, row.library_id, viewer):
            raise Forbidden("only the invitee may respond to an invitation")
        raise invite_not_found()
    return row


async def _set_status(session: AsyncSession, invite_id: uuid.UUID, status: InviteStatus) -> Any:
    return (
        await session.execute(
            text(
                "UPDATE library_invitations SET status = :s, responded_at = now() "
                "WHERE id = :i AND status = 'pending' RETURNING *"
            ),
            {"s": status.value, "i": invite_id},
        )
    ).one()


def _terminal(row: Any, wanted: InviteStatus) -> bool:
    """True when the invite already took `wanted` (idempotent repeat); 409 otherwise."""
    if row.status == wanted:
        return True
    if row.status != InviteStatus.PENDING:
        raise Conflict("E_INVITE_NOT_PENDING", f"the invitation is already {row.status}")
    return False


async def _respond(session: AsyncSession, row: Any, status: InviteStatus) -> RespondResult:
    """Move a pending invite (`row`, locked) to `status`; an idempotent repeat when it is
    already there; 409 E_INVITE_NOT_PENDING from any other status."""
    if _terminal(row, status):
        return RespondResult(_invite(row), True)
    return RespondResult(_invite(await _set_status(session, row.id, status)), False)


async def accept_invite(
    session: AsyncSession,
    viewer: uuid.UUID,
    invite_id: uuid.UUID,
    topics: Topics,
    *,
    request_id: str | None,
    correlation_id: str | None,
) -> AcceptResult:
    """In one transaction: lock the invite, add the membership (an existing role is kept),
    mark it accepted, upsert the backfill job (pending with attempts 0; a running job stays
    running) and write its outbox message. Returns the job's real status."""
    # Lock order as everywhere (SPEC §6): library row first, then the invite. Taking the
    # invite first could deadlock with a library deletion cascading to its invites.
    library_id = await session.scalar(
        text("SELECT library_id FROM library_invitations WHERE id = :i"), {"i": invite_id}
    )
    if library_id is None or not await closure.lock_library(session, library_id, exclusive=False):
        raise invite_not_found()
    row = await _as_invitee(session, viewer, invite_id)
    d = await default_library_id(session, viewer)
    if _terminal(row, InviteStatus.ACCEPTED):
        return AcceptResult(
            _invite(row),
            await _membership(session, row.library_id, viewer),
            True,
            await _job_status(session, d, row.library_id, viewer),
        )
    await session.execute(
        text(
            "INSERT INTO memberships (library_id, user_id, role) VALUES (:l, :u, :r) "
            "ON CONFLICT DO NOTHING"
        ),
        {"l": row.library_id, "u": viewer, "r": row.role},
    )
    updated = await _set_status(session, invite_id, InviteStatus.ACCEPTED)
    if d is None:
        raise NexusError("E_INTERNAL", "the invitee has no default library")
    key = backfill.BackfillKey(d, row.library_id, viewer)
    reset = await machine.reset_to_pending(
        session,
        backfill.JOB,
        key.as_dict(),
        actor=f"user:{viewer}",
        request_id=request_id,
        correlation_id=correlation_id,
        insert_values={},
    )
    if reset is not None:
        msg = backfill.request_message(key, request_id, correlation_id)
        await outbox.enqueue(session, topics.backfill, msg.key, msg)
    return AcceptResult(
        _invite(updated),
        await _membership(session, row.library_id, viewer),
        False,
        await _job_status(session, d, row.library_id, viewer),
    )


async def decline_invite(
    session: AsyncSession, viewer: uuid.UUID, invite_id: uuid.UUID
) -> RespondResult:
    row = await _as_invitee(session, viewer, invite_id)
    return await _respond(session, row, InviteStatus.DECLINED)


async def revoke_invite(
    session: AsyncSession, viewer: uuid.UUID, invite_id: uuid.UUID
) -> RespondResult:
    """Library admins revoke; the invitee gets 403; anyone else 404.

    The library row is held (shared) first, as in accept, so a concurrent demotion of the
    revoking admin either happens before (and the revoke is refused) or waits."""
    library_id = await session.scalar(
        text("SELECT library_id FROM library_invitations WHERE id = :i"), {"i": invite_id}
    )
    if library_id is None or not await closure.lock_library(session, library_id, exclusive=False):
        raise invite_not_found()
    row = await _locked_invite(session, invite_id)
    if row is None:
        raise invite_not_found()
    if not await _is_admin(session, row.library_id, viewer):
        if row.invitee_user_id == viewer:
            raise Forbidden("only a library admin may revoke an invitation")
        raise invite_not_found()
    return await _respond(session, row, InviteStatus.REVOKED)


async def get_visible_invite(
    session: AsyncSession, viewer: uuid.UUID, invite_id: uuid.UUID
) -> InviteView:
    row = (
        await session.execute(
            text("SELECT * FROM library_invitations WHERE id = :i"), {"i": invite_id}
        )
    ).one_or_none()
    if row is None or (
        row.invitee_user_id != viewer and not await _is_admin(session, row.library_id, viewer)
    ):
        raise invite_not_found()
    return _invite(row)


async def _membership(
    session: AsyncSession, library_id: uuid.UUID, user_id: uuid.UUID
) -> MemberView | None:
    row = (
        await session.execute(
            text(
                "SELECT m.user_id, m.role, m.created_at, l.owner_user_id FROM memberships m "
                "JOIN libraries l ON l.id = m.library_id "
                "WHERE m.library_id = :l AND m.user_id = :u"
            ),
            {"l": library_id, "u": user_id},
        )
    ).one_or_none()
    if row is None:
        return None
    return MemberView(row.user_id, row.role, row.user_id == row.owner_user_id, row.created_at)


async def _job_status(
    session: AsyncSession, d: uuid.UUID | None, s: uuid.UUID, u: uuid.UUID
) -> str | None:
    if d is None:
        return None
    return await session.scalar(
        text(
            "SELECT status FROM default_library_backfill_jobs "
            "WHERE default_library_id = :d AND source_library_id = :s AND user_id = :u"
        ),
        {"d": d, "s": s, "u": u},
    )
