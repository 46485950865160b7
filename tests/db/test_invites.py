"""Invitation lifecycle through the real service (SPEC §5), on Postgres."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import NexusError
from nexus.libraries import invites, service
from nexus.libraries.states import LibraryRole
from nexus.messaging.topics import Topics
from nexus.sharing import closure
from tests.conftest import make_settings
from tests.support import backfill_jobs as jobs
from tests.support import factories as f


@pytest.fixture
def topics() -> Topics:
    return Topics.from_settings(make_settings())


async def _code(awaitable: Awaitable[Any]) -> str:
    with pytest.raises(NexusError) as info:
        await awaitable
    return info.value.code


async def _setup(session: AsyncSession, role: LibraryRole = LibraryRole.MEMBER) -> dict[str, Any]:
    owner, owner_d = await f.account(session)
    admin2, _ = await f.account(session)
    member, _ = await f.account(session)
    invitee, invitee_d = await f.account(session)
    stranger, _ = await f.account(session)
    s = (await service.create_library(session, owner, "Shared")).id
    await f.member(session, s, admin2, "admin")
    await f.member(session, s, member)
    invite = await invites.create_invite(session, owner, s, invitee, role)
    return {
        "owner": owner,
        "owner_d": owner_d,
        "admin2": admin2,
        "member": member,
        "invitee": invitee,
        "d": invitee_d,
        "stranger": stranger,
        "s": s,
        "invite": invite,
    }


async def _accept(session: AsyncSession, viewer: uuid.UUID, invite_id: uuid.UUID, topics: Topics):  # type: ignore[no-untyped-def]
    return await invites.accept_invite(
        session, viewer, invite_id, topics, request_id="req-1", correlation_id="corr-1"
    )


async def _outbox(session: AsyncSession, topic: str) -> list[dict[str, Any]]:
    rows = await session.execute(
        text("SELECT payload FROM outbox WHERE topic = :t ORDER BY id"), {"t": topic}
    )
    return [r[0] for r in rows]


async def _job(session: AsyncSession, d: uuid.UUID, s: uuid.UUID, u: uuid.UUID) -> Any:
    key = {"default_library_id": d, "source_library_id": s, "user_id": u}
    return await jobs.job(session, key)


# ------------------------------------------------------------------------ create


async def test_create_invite_success(session: AsyncSession) -> None:
    t = await _setup(session, LibraryRole.ADMIN)
    inv = t["invite"]
    assert (inv.library_id, inv.inviter_user_id, inv.invitee_user_id) == (
        t["s"],
        t["owner"],
        t["invitee"],
    )
    assert (inv.role, inv.status, inv.responded_at) == ("admin", "pending", None)
    # Visible to the invitee and to admins; masked for everyone else.
    assert await invites.get_visible_invite(session, t["invitee"], inv.id) == inv
    assert await invites.get_visible_invite(session, t["admin2"], inv.id) == inv
    for viewer in (t["member"], t["stranger"]):
        assert await _code(invites.get_visible_invite(session, viewer, inv.id)) == (
            "E_INVITE_NOT_FOUND"
        )
    assert await _code(invites.get_visible_invite(session, t["owner"], uuid.uuid4())) == (
        "E_INVITE_NOT_FOUND"
    )


async def test_create_invite_check_order(session: AsyncSession) -> None:
    t = await _setup(session)
    s, nobody = t["s"], uuid.uuid4()

    async def code(viewer: uuid.UUID, lib: uuid.UUID, invitee: uuid.UUID) -> str:
        return await _code(invites.create_invite(session, viewer, lib, invitee, LibraryRole.MEMBER))

    assert await code(t["stranger"], s, nobody) == "E_LIBRARY_NOT_FOUND"
    assert await code(t["owner"], uuid.uuid4(), t["stranger"]) == "E_LIBRARY_NOT_FOUND"
    assert await code(t["owner"], t["owner_d"], nobody) == "E_DEFAULT_LIBRARY_FORBIDDEN"
    assert await code(t["member"], s, nobody) == "E_FORBIDDEN"
    assert await code(t["owner"], s, nobody) == "E_USER_NOT_FOUND"
    assert await code(t["owner"], s, t["member"]) == "E_INVITE_MEMBER_EXISTS"
    assert await code(t["owner"], s, t["owner"]) == "E_INVITE_MEMBER_EXISTS"
    assert await code(t["admin2"], s, t["invitee"]) == "E_INVITE_ALREADY_EXISTS"
    # A user who exists in `users` but was never bootstrapped can still be invited.
    bare = await f.user(session)
    assert (
        await invites.create_invite(session, t["admin2"], s, bare, LibraryRole.MEMBER)
    ).status == ("pending")


async def test_a_new_invite_may_follow_a_declined_one(session: AsyncSession) -> None:
    t = await _setup(session)
    await invites.decline_invite(session, t["invitee"], t["invite"].id)
    again = await invites.create_invite(
        session, t["owner"], t["s"], t["invitee"], LibraryRole.MEMBER
    )
    assert again.id != t["invite"].id and again.status == "pending"


# ------------------------------------------------------------------------ accept


async def test_accept_adds_membership_upserts_job_and_writes_one_outbox_row(
    session: AsyncSession, topics: Topics
) -> None:
    t = await _setup(session, LibraryRole.ADMIN)
    ms = await f.owned_media(session, t["owner_d"], n=2)
    for m in ms:
        await service.add_media(session, t["owner"], t["s"], m)
    # Not readable before accepting.
    assert await closure.readable_media_ids(session, t["invitee"], ms) == set()

    res = await _accept(session, t["invitee"], t["invite"].id, topics)
    assert res.idempotent is False
    assert res.invite.status == "accepted" and res.invite.responded_at is not None
    assert res.membership is not None
    assert (res.membership.user_id, res.membership.role, res.membership.is_owner) == (
        t["invitee"],
        "admin",
        False,
    )
    assert res.backfill_job_status == "pending"
    job = await _job(session, t["d"], t["s"], t["invitee"])
    assert (job.status, job.attempts, job.request_id, job.correlation_id) == (
        "pending",
        0,
        "req-1",
        "corr-1",
    )
    (payload,) = await _outbox(session, topics.backfill)
    assert {k: payload[k] for k in ("default_library_id", "source_library_id", "user_id")} == {
        "default_library_id": str(t["d"]),
        "source_library_id": str(t["s"]),
        "user_id": str(t["invitee"]),
    }
    assert await session.scalar(text("SELECT count(*) FROM outbox")) == 1
    # Access is immediate; the default library is only filled by the backfill.
    assert await closure.readable_media_ids(session, t["invitee"], ms) == set(ms)
    assert await f.library_media_ids(session, t["d"]) == set()
    assert (await service.access(session, t["invitee"], t["s"])).role == "admin"


async def test_accept_twice_is_idempotent_with_the_same_membership(
    session: AsyncSession, topics: Topics
) -> None:
    t = await _setup(session)
    first = await _accept(session, t["invitee"], t["invite"].id, topics)
    second = await _accept(session, t["invitee"], t["invite"].id, topics)
    assert second.idempotent is True
    assert second.invite == first.invite
    assert second.membership == first.membership
    assert second.backfill_job_status == "pending"
    assert len(await _outbox(session, topics.backfill)) == 1
    n_jobs = await session.scalar(text("SELECT count(*) FROM default_library_backfill_jobs"))
    assert n_jobs == 1


async def test_accept_keeps_an_existing_role(session: AsyncSession, topics: Topics) -> None:
    t = await _setup(session, LibraryRole.MEMBER)
    await f.member(session, t["s"], t["invitee"], "admin")
    res = await _accept(session, t["invitee"], t["invite"].id, topics)
    assert res.membership is not None and res.membership.role == "admin"


async def test_accept_leaves_a_running_job_running(session: AsyncSession, topics: Topics) -> None:
    t = await _setup(session)
    lease_end = await session.scalar(text("SELECT now() + interval '1 minute'"))
    running = jobs.values_for("running", attempts=2, lease_owner="w1", lease_expires_at=lease_end)
    await f.backfill_job(session, t["d"], t["s"], t["invitee"], **running)
    res = await _accept(session, t["invitee"], t["invite"].id, topics)
    assert res.idempotent is False and res.backfill_job_status == "running"
    job = await _job(session, t["d"], t["s"], t["invitee"])
    assert (job.status, job.attempts, job.lease_owner) == ("running", 2, "w1")
    assert await _outbox(session, topics.backfill) == []


@pytest.mark.parametrize("status", ["completed", "failed", "pending"])
async def test_accept_resets_a_finished_or_pending_job(
    session: AsyncSession, topics: Topics, status: str
) -> None:
    t = await _setup(session)
    finished = None if status == "pending" else await session.scalar(text("SELECT now()"))
    values = {"attempts": 3, "last_error_code": "E_INTERNAL", "finished_at": finished}
    await f.backfill_job(session, t["d"], t["s"], t["invitee"], status=status, **values)
    res = await _accept(session, t["invitee"], t["invite"].id, topics)
    assert res.backfill_job_status == "pending"
    job = await _job(session, t["d"], t["s"], t["invitee"])
    assert (job.status, job.attempts, job.last_error_code, job.finished_at) == (
        "pending",
        0,
        None,
        None,
    )
    assert len(await _outbox(session, topics.backfill)) == 1


async def test_accept_and_decline_check_order(session: AsyncSession, topics: Topics) -> None:
    t = await _setup(session)
    inv = t["invite"].id
    for respond in (
        lambda v, i: _accept(session, v, i, topics),
        lambda v, i: invites.decline_invite(session, v, i),
    ):
        assert await _code(respond(t["stranger"], inv)) == "E_INVITE_NOT_FOUND"
        assert await _code(respond(t["member"], inv)) == "E_INVITE_NOT_FOUND"
        assert await _code(respond(t["invitee"], uuid.uuid4())) == "E_INVITE_NOT_FOUND"
        assert await _code(respond(t["owner"], inv)) == "E_FORBIDDEN"
        assert await _code(respond(t["admin2"], inv)) == "E_FORBIDDEN"
    assert (await invites.get_visible_invite(session, t["invitee"], inv)).status == "pending"


async def test_terminal_states(session: AsyncSession, topics: Topics) -> None:
    t = await _setup(session)
    inv = t["invite"].id
    await _accept(session, t["invitee"], inv, topics)
    assert await _code(invites.decline_invite(session, t["invitee"], inv)) == "E_INVITE_NOT_PENDING"
    assert await _code(invites.revoke_invite(session, t["owner"], inv)) == "E_INVITE_NOT_PENDING"
    # A stranger still gets 404 on a terminal invite (visibility before state).
    assert await _code(invites.revoke_invite(session, t["stranger"], inv)) == "E_INVITE_NOT_FOUND"


async def test_decline_lifecycle(session: AsyncSession, topics: Topics) -> None:
    t = await _setup(session)
    inv = t["invite"].id
    first = await invites.decline_invite(session, t["invitee"], inv)
    assert first.idempotent is False and first.invite.status == "declined"
    second = await invites.decline_invite(session, t["invitee"], inv)
    assert second.idempotent is True and second.invite == first.invite
    assert await _code(_accept(session, t["invitee"], inv, topics)) == "E_INVITE_NOT_PENDING"
    assert await _code(invites.revoke_invite(session, t["owner"], inv)) == "E_INVITE_NOT_PENDING"
    assert (
        await session.scalar(
            text("SELECT count(*) FROM memberships WHERE library_id = :l AND user_id = :u"),
            {"l": t["s"], "u": t["invitee"]},
        )
        == 0
    )
    assert await session.scalar(text("SELECT count(*) FROM default_library_backfill_jobs")) == 0


async def test_revoke_lifecycle(session: AsyncSession, topics: Topics) -> None:
    t = await _setup(session)
    inv = t["invite"].id
    assert await _code(invites.revoke_invite(session, t["stranger"], inv)) == "E_INVITE_NOT_FOUND"
    assert await _code(invites.revoke_invite(session, t["member"], inv)) == "E_INVITE_NOT_FOUND"
    assert await _code(invites.revoke_invite(session, t["owner"], uuid.uuid4())) == (
        "E_INVITE_NOT_FOUND"
    )
    assert await _code(invites.revoke_invite(session, t["invitee"], inv)) == "E_FORBIDDEN"
    first = await invites.revoke_invite(session, t["admin2"], inv)  # any admin may revoke
    assert first.idempotent is False and first.invite.status == "revoked"
    second = await invites.revoke_invite(session, t["owner"], inv)
    assert second.idempotent is True and second.invite == first.invite
    assert await _code(_accept(session, t["invitee"], inv, topics)) == "E_INVITE_NOT_PENDING"
    assert await _code(invites.decline_invite(session, t["invitee"], inv)) == "E_INVITE_NOT_PENDING"
    assert await _code(invites.revoke_invite(session, t["invitee"], inv)) == "E_FORBIDDEN"


async def test_accept_of_a_deleted_library_is_not_found(
    session: AsyncSession, topics: Topics
) -> None:
    t = await _setup(session)
    await service.delete_library(session, t["owner"], t["s"])
    assert await _code(_accept(session, t["invitee"], t["invite"].id, topics)) == (
        "E_INVITE_NOT_FOUND"
    )


async def test_leaving_after_accept_deletes_the_job_and_a_new_invite_works(
    session: AsyncSession, topics: Topics
) -> None:
    t = await _setup(session)
    await _accept(session, t["invitee"], t["invite"].id, topics)
    await service.remove_member(session, t["invitee"], t["s"], t["invitee"])
    assert await _job(session, t["d"], t["s"], t["invitee"]) is None
    again = await invites.create_invite(
        session, t["owner"], t["s"], t["invitee"], LibraryRole.MEMBER
    )
    res = await _accept(session, t["invitee"], again.id, topics)
    assert res.idempotent is False and res.backfill_job_status == "pending"
    assert len(await _outbox(session, topics.backfill)) == 2
