"""Library routes (SPEC §4, §5): libraries, their media, members and ownership.

Every route needs the internal header and a user JWT (`@user_required`, like `GET /me`).
Check order is stated per route and follows the masking rule: not a member → 404
E_LIBRARY_NOT_FOUND, a member without the right → 403, an illegal state → 409. The rules
themselves live in `nexus.libraries.service`; these views parse, call it once inside the
request's unit of work, and shape the answer.
"""

from __future__ import annotations

import uuid
from typing import Any

from quart import Blueprint, Response
from quart_schema import (
    document_response,
    validate_request,
    validate_response,
)
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db.raw import parse_utc_text
from nexus.libraries import repo
from nexus.libraries import service as libraries
from nexus.libraries.repo import MemberView
from nexus.libraries.schemas import (
    LibraryCreateIn,
    LibraryMediaIn,
    LibraryMemberOut,
    LibraryOut,
    LibraryRenameIn,
    MemberRoleIn,
    TransferOwnershipIn,
)
from nexus.media import service as media
from nexus.media.schemas import MediaOut
from web.auth import current_user, user_required, viewer_required
from web.envelope import Data, json_response, no_content
from web.idempotency import Reply, idempotent_unit_of_work
from web.openapi import idempotent, links, raises, responds
from web.pagination import TIME_KEY, After, Keyset, ListQuery, Paged, after_key, list_page, page_of
from web.querystring import validate_querystring
from web.uow import read_as_viewer, unit_of_work

bp = Blueprint("libraries", __name__)


# Where a new library leads (OpenAPI links, followed by clients and stateful testing).
_NEW_LIBRARY = {"library_id": "$response.body#/data/id"}
LIBRARY_LINKS = {
    op: _NEW_LIBRARY
    for op in (
        "get_library",
        "rename_library",
        "delete_library",
        "list_library_media",
        "add_library_media",
        "list_members",
        "transfer_ownership",
        "create_invite",
        "list_library_invites",
    )
}
_ADDED = {"library_id": "$request.path.library_id", "media_id": "$response.body#/data/id"}
_FIRST_MEMBER = {
    "library_id": "$request.path.library_id",
    "user_id": "$response.body#/data/0/user_id",
}
MEMBER_CODES = (
    "E_LIBRARY_NOT_FOUND",
    "E_DEFAULT_LIBRARY_FORBIDDEN",
    "E_FORBIDDEN",
    "E_NOT_FOUND",
    "E_OWNER_EXIT_FORBIDDEN",
    "E_LAST_ADMIN_FORBIDDEN",
)


# ---------------------------------------------------------------------- libraries


@bp.get("/libraries")
@raises()
@viewer_required
@validate_querystring(ListQuery)
@document_response(Paged[LibraryOut])
async def list_libraries(query_args: ListQuery) -> Response:
    """Libraries the caller is a member of (the default library included), with the
    caller's role; oldest first. Order: 400 limit/cursor."""
    after = after_key(query_args.cursor, "libraries", TIME_KEY)
    rows = await read_as_viewer(
        lambda conn, viewer: repo.list_libraries(conn, viewer, limit=query_args.limit, after=after)
    )
    items, page = page_of(rows, query_args.limit, "libraries", lambda r: (r.created_at, r.id))
    return json_response({"data": [_library_dict(r) for r in items], "page": page})


def _library_dict(view: repo.LibraryView) -> dict[str, Any]:
    """Our own row as `LibraryOut` (its field order), not re-validated."""
    return {
        "id": view.id,
        "name": view.name,
        "owner_user_id": view.owner_user_id,
        "is_default": view.is_default,
        "role": view.role,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
    }


@bp.post("/libraries")
@raises("E_NAME_INVALID")
@idempotent
@links(201, **LIBRARY_LINKS)
@user_required
@validate_request(LibraryCreateIn)
@validate_response(Data[LibraryOut], 201)
async def create_library(data: LibraryCreateIn) -> Reply:
    """Create a shared (non-default) library owned by the caller, who becomes its admin.

    Order: 401 → 400 body (413 E_PAYLOAD_TOO_LARGE over 1 MiB) → 400 Idempotency-Key →
    replay (same key and body) or 409 E_IDEMPOTENCY_KEY_REUSED (same key, other body) → 400
    E_NAME_INVALID."""
    async with idempotent_unit_of_work(data) as work:
        if work.replay is not None:
            return work.replay
        lib = await libraries.create_library(work.session, current_user().user_id, data.name)
        return await work.respond(Data(data=LibraryOut.model_validate(lib)), 201)


@bp.get("/libraries/<uuid:library_id>")
@raises("E_LIBRARY_NOT_FOUND")
@validate_response(Data[LibraryOut])
@user_required
async def get_library(library_id: uuid.UUID) -> Data[LibraryOut]:
    """Order: 400 id → 404 E_LIBRARY_NOT_FOUND (not a member)."""
    async with unit_of_work() as uow:
        lib = await libraries.access(uow.session, current_user().user_id, library_id)
    return Data(data=LibraryOut.model_validate(lib))


@bp.patch("/libraries/<uuid:library_id>")
@raises("E_LIBRARY_NOT_FOUND", "E_DEFAULT_LIBRARY_FORBIDDEN", "E_FORBIDDEN", "E_NAME_INVALID")
@user_required
@validate_request(LibraryRenameIn)
@validate_response(Data[LibraryOut])
async def rename_library(library_id: uuid.UUID, data: LibraryRenameIn) -> Data[LibraryOut]:
    """Rename. Order: 400 id/body → 404 E_LIBRARY_NOT_FOUND → 403
    E_DEFAULT_LIBRARY_FORBIDDEN → 403 E_FORBIDDEN (not admin) → 400 E_NAME_INVALID."""
    async with unit_of_work() as uow:
        lib = await libraries.rename_library(
            uow.session, current_user().user_id, library_id, data.name
        )
    return Data(data=LibraryOut.model_validate(lib))


@bp.delete("/libraries/<uuid:library_id>")
@raises("E_LIBRARY_NOT_FOUND", "E_DEFAULT_LIBRARY_FORBIDDEN", "E_OWNER_REQUIRED")
@responds(204, "Deleted.")
@user_required
async def delete_library(library_id: uuid.UUID) -> Response:
    """Delete (204). Order: 400 id → 404 E_LIBRARY_NOT_FOUND → 403
    E_DEFAULT_LIBRARY_FORBIDDEN → 403 E_OWNER_REQUIRED. Closure edges from the library
    are removed and every affected default library garbage-collected first (SPEC §6)."""
    async with unit_of_work() as uow:
        await libraries.delete_library(uow.session, current_user().user_id, library_id)
    return no_content()


# -------------------------------------------------------------------------- media


@bp.get("/libraries/<uuid:library_id>/media")
@raises("E_LIBRARY_NOT_FOUND")
@viewer_required
@validate_querystring(ListQuery)
@document_response(Paged[MediaOut])
async def list_library_media(library_id: uuid.UUID, query_args: ListQuery) -> Response:
    """Media of a library, in the order they were added. In a default library only media
    the caller may read are listed (SPEC §5). Order: 400 id/limit/cursor → 404
    E_LIBRARY_NOT_FOUND."""
    scope = f"library-media:{library_id}"
    after = after_key(query_args.cursor, scope, TIME_KEY)
    rows = await read_as_viewer(
        lambda conn, viewer: media.list_library_media(
            conn, viewer, library_id, limit=query_args.limit, after=after
        )
    )
    items, page = page_of(
        rows, query_args.limit, scope, lambda r: (parse_utc_text(r["linked_at"]), r["id"])
    )
    return json_response({"data": [media.media_dict(r) for r in items], "page": page})


@bp.post("/libraries/<uuid:library_id>/media")
@raises("E_LIBRARY_NOT_FOUND", "E_FORBIDDEN", "E_MEDIA_NOT_FOUND")
@links(201, remove_library_media=_ADDED)
@links(200, remove_library_media=_ADDED)
@user_required
@validate_request(LibraryMediaIn)
@validate_response(Data[MediaOut], 201)
@validate_response(Data[MediaOut], 200)
async def add_library_media(library_id: uuid.UUID, data: LibraryMediaIn) -> tuple[Any, int]:
    """Add media the caller can read: 201 when the link was created, 200 when it existed.
    A merged id adds (and answers) its winner. Order: 400 id/body → 404
    E_LIBRARY_NOT_FOUND → 403 E_FORBIDDEN (not admin) → 404 E_MEDIA_NOT_FOUND (not
    readable by the caller)."""
    viewer = current_user().user_id
    async with unit_of_work() as uow:
        media_id = await media.resolve_merged_id(uow.session, data.media_id)
        created = await libraries.add_media(uow.session, viewer, library_id, media_id)
        out = await media.get_media(uow.session, viewer, media_id)
    return Data(data=out), 201 if created else 200


@bp.delete("/libraries/<uuid:library_id>/media/<uuid:media_id>")
@raises("E_LIBRARY_NOT_FOUND", "E_FORBIDDEN", "E_MEDIA_NOT_FOUND")
@responds(204, "Removed.")
@user_required
async def remove_library_media(library_id: uuid.UUID, media_id: uuid.UUID) -> Response:
    """Remove media from a library (204). Order: 400 ids → 404 E_LIBRARY_NOT_FOUND → 403
    E_FORBIDDEN (not admin) → 404 E_MEDIA_NOT_FOUND (not in the library). In a default
    library this removes the caller's own addition; the row stays listed while a shared
    library still brings the media in (SPEC §6)."""
    async with unit_of_work() as uow:
        await libraries.remove_media(uow.session, current_user().user_id, library_id, media_id)
    return no_content()


# ------------------------------------------------------------------------ members


@bp.get("/libraries/<uuid:library_id>/members")
@raises("E_LIBRARY_NOT_FOUND")
@links(200, set_member_role=_FIRST_MEMBER, remove_member=_FIRST_MEMBER)
@user_required
@validate_querystring(ListQuery)
@validate_response(Paged[LibraryMemberOut])
async def list_members(library_id: uuid.UUID, query_args: ListQuery) -> Paged[LibraryMemberOut]:
    """Members, oldest first; any member may list. Order: 400 id/limit/cursor → 404
    E_LIBRARY_NOT_FOUND."""

    async def fetch(session: AsyncSession, after: After) -> list[MemberView]:
        await libraries.access(session, current_user().user_id, library_id)
        return await repo.list_members(session, library_id, limit=query_args.limit, after=after)

    return await list_page(
        query_args,
        f"members:{library_id}",
        Keyset(TIME_KEY, lambda r: (r.created_at, r.user_id)),
        fetch,
        LibraryMemberOut.model_validate,
    )


@bp.patch("/libraries/<uuid:library_id>/members/<uuid:user_id>")
@raises(*MEMBER_CODES)
@user_required
@validate_request(MemberRoleIn)
@validate_response(Data[LibraryMemberOut])
async def set_member_role(
    library_id: uuid.UUID, user_id: uuid.UUID, data: MemberRoleIn
) -> Data[LibraryMemberOut]:
    """Change a member's role (admins only). Order: 400 ids/body → 404
    E_LIBRARY_NOT_FOUND → 403 E_DEFAULT_LIBRARY_FORBIDDEN → 403 E_FORBIDDEN (not admin) →
    404 E_NOT_FOUND (no such member) → 403 E_OWNER_EXIT_FORBIDDEN (demoting the owner) →
    403 E_LAST_ADMIN_FORBIDDEN."""
    async with unit_of_work() as uow:
        member = await libraries.set_member_role(
            uow.session, current_user().user_id, library_id, user_id, data.role
        )
    return Data(data=LibraryMemberOut.model_validate(member))


@bp.delete("/libraries/<uuid:library_id>/members/<uuid:user_id>")
@raises(*MEMBER_CODES)
@responds(204, "Removed (or left).")
@user_required
async def remove_member(library_id: uuid.UUID, user_id: uuid.UUID) -> Response:
    """Remove a member (admins), or leave (the caller's own id; any member). 204.
    Order: 400 ids → 404 E_LIBRARY_NOT_FOUND → 403 E_DEFAULT_LIBRARY_FORBIDDEN → 403
    E_FORBIDDEN (not admin, not leaving) → 404 E_NOT_FOUND (no such member) → 403
    E_OWNER_EXIT_FORBIDDEN (the owner) → 403 E_LAST_ADMIN_FORBIDDEN. Access to the
    library's media ends in the same transaction (strict revocation, SPEC §6)."""
    async with unit_of_work() as uow:
        await libraries.remove_member(uow.session, current_user().user_id, library_id, user_id)
    return no_content()


@bp.post("/libraries/<uuid:library_id>/transfer-ownership")
@raises(
    "E_LIBRARY_NOT_FOUND",
    "E_DEFAULT_LIBRARY_FORBIDDEN",
    "E_OWNER_REQUIRED",
    "E_OWNERSHIP_TRANSFER_INVALID",
)
@user_required
@validate_request(TransferOwnershipIn)
@validate_response(Data[LibraryOut])
async def transfer_ownership(library_id: uuid.UUID, data: TransferOwnershipIn) -> Data[LibraryOut]:
    """Make another member the owner (and an admin); the caller stays an admin. Order: 400
    id/body → 404 E_LIBRARY_NOT_FOUND → 403 E_DEFAULT_LIBRARY_FORBIDDEN → 403
    E_OWNER_REQUIRED → 409 E_OWNERSHIP_TRANSFER_INVALID (target is the caller or not a
    member)."""
    async with unit_of_work() as uow:
        lib = await libraries.transfer_ownership(
            uow.session, current_user().user_id, library_id, data.user_id
        )
    return Data(data=LibraryOut.model_validate(lib))
