"""Library governance and media links through the real service (SPEC §5), on Postgres.

Check order everywhere: not visible → 404, visible but not allowed → 403, illegal → 409.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import NexusError
from nexus.libraries import service
from nexus.libraries.states import LibraryRole
from tests.support import factories as f


async def _code(awaitable: Awaitable[Any]) -> str:
    with pytest.raises(NexusError) as info:
        await awaitable
    return info.value.code


async def _role(session: AsyncSession, lib: uuid.UUID, user: uuid.UUID) -> str | None:
    return await session.scalar(
        text("SELECT role FROM memberships WHERE library_id = :l AND user_id = :u"),
        {"l": lib, "u": user},
    )


def _refused_with(
    operation: Callable[..., Awaitable[Any]], session: AsyncSession
) -> Callable[..., Awaitable[str]]:
    """`code(viewer, library, ...)`: the error code `operation` refuses those arguments with."""

    async def code(*args: Any) -> str:
        return await _code(operation(session, *args))

    return code


async def _team(session: AsyncSession) -> dict[str, Any]:
    """owner (admin), admin2 (admin), member, stranger; S owned by owner."""
    owner, owner_d = await f.account(session)
    admin2, _ = await f.account(session)
    member, _ = await f.account(session)
    stranger, _ = await f.account(session)
    lib = await service.create_library(session, owner, "  Team  ")
    await f.member(session, lib.id, admin2, "admin")
    await f.member(session, lib.id, member, "member")
    return {
        "owner": owner,
        "owner_d": owner_d,
        "admin2": admin2,
        "member": member,
        "stranger": stranger,
        "s": lib.id,
    }


async def _corrupt_owner_role(session: AsyncSession, lib: uuid.UUID, owner: uuid.UUID) -> None:
    await session.execute(
        text("UPDATE memberships SET role = 'member' WHERE library_id = :l AND user_id = :u"),
        {"l": lib, "u": owner},
    )


# ------------------------------------------------------------------ create / read


async def test_create_library_trims_and_makes_the_creator_admin(session: AsyncSession) -> None:
    owner, _ = await f.account(session)
    lib = await service.create_library(session, owner, "  Reading group ")
    assert (lib.name, lib.owner_user_id, lib.is_default, lib.role) == (
        "Reading group",
        owner,
        False,
        "admin",
    )
    assert await _role(session, lib.id, owner) == "admin"
    seen = await service.access(session, owner, lib.id)
    assert seen == lib


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
async def test_create_library_rejects_invalid_names(session: AsyncSession, name: str) -> None:
    owner, _ = await f.account(session)
    assert await _code(service.create_library(session, owner, name)) == "E_NAME_INVALID"


async def test_name_of_exactly_100_characters_is_accepted(session: AsyncSession) -> None:
    owner, _ = await f.account(session)
    lib = await service.create_library(session, owner, " " + "x" * 100 + " ")
    assert lib.name == "x" * 100


async def test_access_masks_libraries_of_others(session: AsyncSession) -> None:
    t = await _team(session)
    for lock in (None, "SHARE", "UPDATE"):
        assert (
            await _code(service.access(session, t["stranger"], t["s"], lock=lock))
            == "E_LIBRARY_NOT_FOUND"
        )
        assert (
            await _code(service.access(session, t["owner"], uuid.uuid4(), lock=lock))
            == "E_LIBRARY_NOT_FOUND"
        )
    assert (await service.access(session, t["member"], t["s"])).role == "member"


# ------------------------------------------------------------------------- rename


async def test_rename_success_and_check_order(session: AsyncSession) -> None:
    t = await _team(session)
    renamed = await service.rename_library(session, t["admin2"], t["s"], "  New name ")
    assert renamed.name == "New name" and renamed.role == "admin"
    # 404 before anything else, even with an invalid name.
    assert await _code(service.rename_library(session, t["stranger"], t["s"], "")) == (
        "E_LIBRARY_NOT_FOUND"
    )
    # default library: 403 before the name is looked at.
    assert await _code(service.rename_library(session, t["owner"], t["owner_d"], "")) == (
        "E_DEFAULT_LIBRARY_FORBIDDEN"
    )
    # not an admin: 403 before the name.
    assert await _code(service.rename_library(session, t["member"], t["s"], "")) == "E_FORBIDDEN"
    assert await _code(service.rename_library(session, t["owner"], t["s"], " ")) == (
        "E_NAME_INVALID"
    )


async def test_every_governance_mutation_repairs_the_owner_admin_role(
    session: AsyncSession,
) -> None:
    t = await _team(session)
    s, owner = t["s"], t["owner"]
    extra, _ = await f.account(session)
    await f.member(session, s, extra)
    mutations = [
        lambda: service.rename_library(session, t["admin2"], s, "Renamed"),
        lambda: service.set_member_role(session, t["admin2"], s, t["member"], LibraryRole.ADMIN),
        lambda: service.remove_member(session, t["admin2"], s, extra),
    ]
    for mutate in mutations:
        await _corrupt_owner_role(session, s, owner)
        assert await _role(session, s, owner) == "member"
        await mutate()
        assert await _role(session, s, owner) == "admin"
    # Even a missing owner membership is re-created.
    await session.execute(
        text("DELETE FROM memberships WHERE library_id = :l AND user_id = :u"), {"l": s, "u": owner}
    )
    await service.rename_library(session, t["admin2"], s, "Again")
    assert await _role(session, s, owner) == "admin"


async def test_transfer_repairs_the_new_owner_admin_role(session: AsyncSession) -> None:
    t = await _team(session)
    view = await service.transfer_ownership(session, t["owner"], t["s"], t["member"])
    assert view.owner_user_id == t["member"] and view.role == "admin"
    assert await _role(session, t["s"], t["member"]) == "admin"
    assert await _role(session, t["s"], t["owner"]) == "admin"


# ------------------------------------------------------------------------- delete


async def test_delete_library_check_order_and_success(session: AsyncSession) -> None:
    t = await _team(session)
    assert await _code(service.delete_library(session, t["stranger"], t["s"])) == (
        "E_LIBRARY_NOT_FOUND"
    )
    assert await _code(service.delete_library(session, t["owner"], t["owner_d"])) == (
        "E_DEFAULT_LIBRARY_FORBIDDEN"
    )
    assert await _code(service.delete_library(session, t["admin2"], t["s"])) == "E_OWNER_REQUIRED"
    assert await _code(service.delete_library(session, t["member"], t["s"])) == "E_OWNER_REQUIRED"
    await service.delete_library(session, t["owner"], t["s"])
    assert (
        await session.scalar(
            text("SELECT count(*) FROM memberships WHERE library_id = :l"), {"l": t["s"]}
        )
        == 0
    )
    assert await _code(service.access(session, t["owner"], t["s"])) == "E_LIBRARY_NOT_FOUND"


# ------------------------------------------------------------------------ members


async def test_list_members_marks_the_owner(session: AsyncSession) -> None:
    t = await _team(session)
    members = await service.list_members(session, t["member"], t["s"])
    assert {(m.user_id, m.role, m.is_owner) for m in members} == {
        (t["owner"], "admin", True),
        (t["admin2"], "admin", False),
        (t["member"], "member", False),
    }
    assert await _code(service.list_members(session, t["stranger"], t["s"])) == (
        "E_LIBRARY_NOT_FOUND"
    )


async def test_set_member_role_success_and_errors(session: AsyncSession) -> None:
    t = await _team(session)
    s = t["s"]
    promoted = await service.set_member_role(session, t["owner"], s, t["member"], LibraryRole.ADMIN)
    assert (promoted.user_id, promoted.role, promoted.is_owner) == (t["member"], "admin", False)
    demoted = await service.set_member_role(
        session, t["admin2"], s, t["member"], LibraryRole.MEMBER
    )
    assert demoted.role == "member" and await _role(session, s, t["member"]) == "member"
    code = _refused_with(service.set_member_role, session)
    assert await code(t["stranger"], s, t["member"], LibraryRole.ADMIN) == "E_LIBRARY_NOT_FOUND"
    assert await code(t["owner"], t["owner_d"], t["owner"], LibraryRole.MEMBER) == (
        "E_DEFAULT_LIBRARY_FORBIDDEN"
    )
    assert await code(t["member"], s, t["member"], LibraryRole.ADMIN) == "E_FORBIDDEN"
    assert await code(t["owner"], s, t["stranger"], LibraryRole.ADMIN) == "E_NOT_FOUND"
    assert await code(t["admin2"], s, t["owner"], LibraryRole.MEMBER) == "E_OWNER_EXIT_FORBIDDEN"
    assert await code(t["owner"], s, t["owner"], LibraryRole.MEMBER) == "E_OWNER_EXIT_FORBIDDEN"
    # Promoting the owner to admin is a harmless no-op.
    same = await service.set_member_role(session, t["admin2"], s, t["owner"], LibraryRole.ADMIN)
    assert same.is_owner and same.role == "admin"


async def test_last_admin_cannot_be_demoted_or_removed(session: AsyncSession) -> None:
    # Only reachable when the owner's admin role is corrupt: admin2 is then the last admin.
    t = await _team(session)
    s = t["s"]
    await _corrupt_owner_role(session, s, t["owner"])
    assert await _code(
        service.set_member_role(session, t["admin2"], s, t["admin2"], LibraryRole.MEMBER)
    ) == ("E_LAST_ADMIN_FORBIDDEN")
    assert await _code(service.remove_member(session, t["admin2"], s, t["admin2"])) == (
        "E_LAST_ADMIN_FORBIDDEN"
    )
    assert await _role(session, s, t["admin2"]) == "admin"


async def test_remove_member_check_order(session: AsyncSession) -> None:
    t = await _team(session)
    s = t["s"]
    code = _refused_with(service.remove_member, session)
    assert await code(t["stranger"], s, t["member"]) == "E_LIBRARY_NOT_FOUND"
    assert await code(t["stranger"], s, t["stranger"]) == "E_LIBRARY_NOT_FOUND"
    assert await code(t["owner"], t["owner_d"], t["owner"]) == "E_DEFAULT_LIBRARY_FORBIDDEN"
    assert await code(t["member"], s, t["admin2"]) == "E_FORBIDDEN"
    assert await code(t["member"], s, t["stranger"]) == "E_FORBIDDEN"
    assert await code(t["owner"], s, t["stranger"]) == "E_NOT_FOUND"
    assert await code(t["owner"], s, t["owner"]) == "E_OWNER_EXIT_FORBIDDEN"
    assert await code(t["admin2"], s, t["owner"]) == "E_OWNER_EXIT_FORBIDDEN"


async def test_members_may_leave_and_admins_may_remove(session: AsyncSession) -> None:
    t = await _team(session)
    s = t["s"]
    await service.remove_member(session, t["member"], s, t["member"])  # leave
    assert await _role(session, s, t["member"]) is None
    assert await _code(service.access(session, t["member"], s)) == "E_LIBRARY_NOT_FOUND"
    third, _ = await f.account(session)
    await f.member(session, s, third)
    await service.remove_member(session, t["admin2"], s, third)  # admin removes
    assert await _role(session, s, third) is None
    await service.remove_member(session, t["admin2"], s, t["admin2"])  # a non-owner admin leaves
    assert [m.user_id for m in await service.list_members(session, t["owner"], s)] == [t["owner"]]


# ----------------------------------------------------------------------- transfer


async def test_transfer_ownership(session: AsyncSession) -> None:
    t = await _team(session)
    s = t["s"]
    code = _refused_with(service.transfer_ownership, session)
    assert await code(t["stranger"], s, t["member"]) == "E_LIBRARY_NOT_FOUND"
    assert await code(t["stranger"], s, t["stranger"]) == "E_LIBRARY_NOT_FOUND"
    assert await code(t["owner"], t["owner_d"], t["member"]) == "E_DEFAULT_LIBRARY_FORBIDDEN"
    assert await code(t["admin2"], s, t["member"]) == "E_OWNER_REQUIRED"
    assert await code(t["admin2"], s, t["stranger"]) == "E_OWNER_REQUIRED"  # 403 before 409
    assert await code(t["owner"], s, t["owner"]) == "E_OWNERSHIP_TRANSFER_INVALID"
    assert await code(t["owner"], s, t["stranger"]) == "E_OWNERSHIP_TRANSFER_INVALID"
    assert await code(t["owner"], s, uuid.uuid4()) == "E_OWNERSHIP_TRANSFER_INVALID"

    view = await service.transfer_ownership(session, t["owner"], s, t["admin2"])
    assert view.owner_user_id == t["admin2"] and view.role == "admin"  # old owner's view
    # The old owner is an ordinary admin now: may leave; the new owner may not.
    assert await code(t["owner"], s, t["member"]) == "E_OWNER_REQUIRED"
    assert await _code(service.remove_member(session, t["owner"], s, t["admin2"])) == (
        "E_OWNER_EXIT_FORBIDDEN"
    )
    await service.remove_member(session, t["owner"], s, t["owner"])
    assert await _role(session, s, t["owner"]) is None
    assert await _code(service.delete_library(session, t["member"], s)) == "E_OWNER_REQUIRED"
    await service.delete_library(session, t["admin2"], s)


# -------------------------------------------------------------------------- media


async def test_add_media_check_order_and_idempotency(session: AsyncSession) -> None:
    t = await _team(session)
    s = t["s"]
    (m,) = await f.owned_media(session, t["owner_d"])
    assert await _code(service.add_media(session, t["stranger"], s, m)) == "E_LIBRARY_NOT_FOUND"
    assert await _code(service.add_media(session, t["member"], s, m)) == "E_FORBIDDEN"
    # The admin cannot read this media: masked as not found.
    assert await _code(service.add_media(session, t["admin2"], s, m)) == "E_MEDIA_NOT_FOUND"
    assert await _code(service.add_media(session, t["owner"], s, uuid.uuid4())) == (
        "E_MEDIA_NOT_FOUND"
    )
    (unread,) = await f.media(session)  # exists, but nobody can read it
    assert await _code(service.add_media(session, t["owner"], s, unread)) == "E_MEDIA_NOT_FOUND"
    assert await service.add_media(session, t["owner"], s, m) is True
    assert await service.add_media(session, t["owner"], s, m) is False
    # admin2 reads it through S; its default row exists already through the edge, so
    # adding it to d2 creates no row (False) but records the intrinsic: the row then
    # survives the removal from S.
    d2 = await service.default_library_id(session, t["admin2"])
    assert d2 is not None
    assert m in await f.library_media_ids(session, d2)
    assert await service.add_media(session, t["admin2"], d2, m) is False
    await service.remove_media(session, t["owner"], s, m)
    assert m in await f.library_media_ids(session, d2)
    assert await service.add_media(session, t["admin2"], d2, m) is False
    assert await f.closure_violations(session) == []


async def test_remove_media_check_order(session: AsyncSession) -> None:
    t = await _team(session)
    s = t["s"]
    (m,) = await f.owned_media(session, t["owner_d"])
    assert await service.add_media(session, t["owner"], t["owner_d"], m) is False
    await service.add_media(session, t["owner"], s, m)
    assert await _code(service.remove_media(session, t["stranger"], s, m)) == "E_LIBRARY_NOT_FOUND"
    assert await _code(service.remove_media(session, t["member"], s, m)) == "E_FORBIDDEN"
    other = uuid.uuid4()
    assert await _code(service.remove_media(session, t["owner"], s, other)) == "E_MEDIA_NOT_FOUND"
    assert await _code(service.remove_media(session, t["owner"], t["owner_d"], other)) == (
        "E_MEDIA_NOT_FOUND"
    )
    await service.remove_media(session, t["owner"], s, m)
    assert await _code(service.remove_media(session, t["owner"], s, m)) == "E_MEDIA_NOT_FOUND"
    await service.remove_media(session, t["owner"], t["owner_d"], m)
    assert await _code(service.remove_media(session, t["owner"], t["owner_d"], m)) == (
        "E_MEDIA_NOT_FOUND"
    )
    assert await f.closure_violations(session) == []
