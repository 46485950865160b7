"""Invitation routes (SPEC §4, §5).

`pending → accepted | declined` by the invitee, `pending → revoked` by a library admin;
repeating the action an invite already took answers 200 with `idempotent: true`, any other
action on a finished invite is 409 E_INVITE_NOT_PENDING. An invite is visible to its
invitee and to the library's admins; anyone else gets 404 E_INVITE_NOT_FOUND.

`DELETE /libraries/invites/{id}` (revoke) answers 200 with `{invite, idempotent}` rather
than 204, so a repeated revoke is distinguishable from the first.
"""

from __future__ import annotations

import uuid

from quart import Blueprint, g
from quart_schema import validate_request, validate_response
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import Forbidden
from nexus.libraries import invites, repo
from nexus.libraries import service as libraries
from nexus.libraries.repo import InviteView
from nexus.libraries.schemas import (
    InviteAcceptOut,
    InviteCreateIn,
    InviteRespondOut,
    LibraryInvitationOut,
)
from nexus.libraries.states import InviteStatus, LibraryRole
from nexus.messaging.topics import Topics
from web.auth import current_user, user_required
from web.envelope import Data
from web.idempotency import Reply, idempotent_unit_of_work
from web.openapi import idempotent, links, raises
from web.pagination import BY_CREATED, After, ListQuery, Paged, list_page
from web.querystring import validate_querystring
from web.state import nexus_state
from web.uow import unit_of_work

bp = Blueprint("invites", __name__)


RESPOND_CODES = ("E_INVITE_NOT_FOUND", "E_FORBIDDEN", "E_INVITE_NOT_PENDING")
_NEW_INVITE = {"invite_id": "$response.body#/data/id"}
INVITE_LINKS = {op: _NEW_INVITE for op in ("accept_invite", "decline_invite", "revoke_invite")}


class InviteListQuery(ListQuery):
    status: InviteStatus | None = None


def _scope(base: str, status: InviteStatus | None) -> str:
    # A cursor is only valid for the same filter: another filter is another list.
    return f"{base}:{status.value if status else '*'}"


@bp.get("/libraries/invites")
@raises()
@user_required
@validate_querystring(InviteListQuery)
@validate_response(Paged[LibraryInvitationOut])
async def list_my_invites(query_args: InviteListQuery) -> Paged[LibraryInvitationOut]:
    """Invitations addressed to the caller, oldest first, optionally of one `status`.
    Order: 400 limit/cursor/status."""
    return await list_page(
        query_args,
        _scope("my-invites", query_args.status),
        BY_CREATED,
        lambda session, after: repo.list_invites(
            session,
            invitee_user_id=current_user().user_id,
            status=query_args.status.value if query_args.status else None,
            limit=query_args.limit,
            after=after,
        ),
        LibraryInvitationOut.model_validate,
    )


@bp.get("/libraries/<uuid:library_id>/invites")
@raises("E_LIBRARY_NOT_FOUND", "E_FORBIDDEN")
@user_required
@validate_querystring(InviteListQuery)
@validate_response(Paged[LibraryInvitationOut])
async def list_library_invites(
    library_id: uuid.UUID, query_args: InviteListQuery
) -> Paged[LibraryInvitationOut]:
    """A library's invitations (admins only), oldest first, optionally of one `status`.
    Order: 400 id/limit/cursor/status → 404 E_LIBRARY_NOT_FOUND → 403 E_FORBIDDEN."""

    async def fetch(session: AsyncSession, after: After) -> list[InviteView]:
        lib = await libraries.access(session, current_user().user_id, library_id)
        if lib.role != LibraryRole.ADMIN:
            raise Forbidden("only a library admin may list its invitations")
        return await repo.list_invites(
            session,
            library_id=library_id,
            status=query_args.status.value if query_args.status else None,
            limit=query_args.limit,
            after=after,
        )

    scope = _scope(f"library-invites:{library_id}", query_args.status)
    return await list_page(
        query_args, scope, BY_CREATED, fetch, LibraryInvitationOut.model_validate
    )


@bp.post("/libraries/<uuid:library_id>/invites")
@raises(
    "E_LIBRARY_NOT_FOUND",
    "E_DEFAULT_LIBRARY_FORBIDDEN",
    "E_FORBIDDEN",
    "E_USER_NOT_FOUND",
    "E_INVITE_MEMBER_EXISTS",
    "E_INVITE_ALREADY_EXISTS",
    "E_INVALID_REQUEST",
)
@idempotent
@links(201, **INVITE_LINKS)
@user_required
@validate_request(InviteCreateIn)
@validate_response(Data[LibraryInvitationOut], 201)
async def create_invite(library_id: uuid.UUID, data: InviteCreateIn) -> Reply:
    """Invite an existing user (201). Order: 400 id/body → 400 Idempotency-Key → replay or
    409 E_IDEMPOTENCY_KEY_REUSED → 404 E_LIBRARY_NOT_FOUND → 403
    E_DEFAULT_LIBRARY_FORBIDDEN → 403 E_FORBIDDEN (not admin) → 404 E_USER_NOT_FOUND → 409
    E_INVITE_MEMBER_EXISTS (already a member, the caller included) → 409
    E_INVITE_ALREADY_EXISTS (a pending invite exists)."""
    async with idempotent_unit_of_work(data) as work:
        if work.replay is not None:
            return work.replay
        invite = await invites.create_invite(
            work.session, current_user().user_id, library_id, data.invitee_user_id, data.role
        )
        return await work.respond(Data(data=LibraryInvitationOut.model_validate(invite)), 201)


@bp.post("/libraries/invites/<uuid:invite_id>/accept")
@raises(*RESPOND_CODES)
@validate_response(Data[InviteAcceptOut])
@user_required
async def accept_invite(invite_id: uuid.UUID) -> Data[InviteAcceptOut]:
    """Accept (invitee): membership, invite accepted, backfill job pending and its message,
    in one transaction; `backfill_job_status` is the job's real status. Order: 400 id →
    404 E_INVITE_NOT_FOUND (missing, or neither invitee nor library admin) → 403
    E_FORBIDDEN (a library admin who is not the invitee) → 200 idempotent (already
    accepted) → 409 E_INVITE_NOT_PENDING (declined or revoked)."""
    settings = nexus_state().settings
    async with unit_of_work() as uow:
        result = await invites.accept_invite(
            uow.session,
            current_user().user_id,
            invite_id,
            Topics.from_settings(settings),
            request_id=g.request_id,
            correlation_id=g.correlation_id,
        )
    return Data(data=InviteAcceptOut.model_validate(result))


@bp.post("/libraries/invites/<uuid:invite_id>/decline")
@raises(*RESPOND_CODES)
@validate_response(Data[InviteRespondOut])
@user_required
async def decline_invite(invite_id: uuid.UUID) -> Data[InviteRespondOut]:
    """Decline (invitee). Order: 400 id → 404 E_INVITE_NOT_FOUND → 403 E_FORBIDDEN (a
    library admin who is not the invitee) → 200 idempotent (already declined) → 409
    E_INVITE_NOT_PENDING."""
    async with unit_of_work() as uow:
        result = await invites.decline_invite(uow.session, current_user().user_id, invite_id)
    return Data(data=InviteRespondOut.model_validate(result))


@bp.delete("/libraries/invites/<uuid:invite_id>")
@raises(*RESPOND_CODES)
@validate_response(Data[InviteRespondOut])
@user_required
async def revoke_invite(invite_id: uuid.UUID) -> Data[InviteRespondOut]:
    """Revoke (library admin); 200 with the invite, not 204, so `idempotent` is visible.
    Order: 400 id → 404 E_INVITE_NOT_FOUND → 403 E_FORBIDDEN (the invitee) → 200
    idempotent (already revoked) → 409 E_INVITE_NOT_PENDING."""
    async with unit_of_work() as uow:
        result = await invites.revoke_invite(uow.session, current_user().user_id, invite_id)
    return Data(data=InviteRespondOut.model_validate(result))
