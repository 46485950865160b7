"""Invitation routes: lifecycle, idempotent repeats, masking, accept side effects (SPEC §5)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.library_api import User, insert_media, scalar, walk
from tests.support.webapp import FakePublisher

INVITE_KEYS = {
    "id",
    "library_id",
    "inviter_user_id",
    "invitee_user_id",
    "role",
    "status",
    "created_at",
    "responded_at",
}
Sm = async_sessionmaker[AsyncSession]


@pytest.fixture
async def lib(alice: User) -> uuid.UUID:
    return await alice.create_library("Club")


async def test_create_invite_shape(alice: User, bob: User, lib: uuid.UUID) -> None:
    r = await alice.post(
        f"/libraries/{lib}/invites", json={"invitee_user_id": str(bob.id), "role": "admin"}
    )
    assert r.status == 201
    assert set(r.data) == INVITE_KEYS
    assert r.data["library_id"] == str(lib)
    assert (r.data["inviter_user_id"], r.data["invitee_user_id"]) == (str(alice.id), str(bob.id))
    assert (r.data["role"], r.data["status"], r.data["responded_at"]) == ("admin", "pending", None)


async def test_create_invite_role_defaults_to_member(
    alice: User, bob: User, lib: uuid.UUID
) -> None:
    r = await alice.post(f"/libraries/{lib}/invites", json={"invitee_user_id": str(bob.id)})
    assert (r.status, r.data["role"]) == (201, "member")


async def test_create_invite_errors(alice: User, bob: User, carol: User, lib: uuid.UUID) -> None:
    path = f"/libraries/{lib}/invites"
    body, to_bob = {"invitee_user_id": str(carol.id)}, {"invitee_user_id": str(bob.id)}
    assert (await carol.post(path, json=to_bob)).outcome == (404, "E_LIBRARY_NOT_FOUND")
    await bob.join(alice, lib)
    assert (await bob.post(path, json=body)).outcome == (403, "E_FORBIDDEN")
    r = await alice.post(path, json={"invitee_user_id": str(uuid.uuid4())})
    assert r.outcome == (404, "E_USER_NOT_FOUND")
    for member in (bob, alice):
        r = await alice.post(path, json={"invitee_user_id": str(member.id)})
        assert r.outcome == (409, "E_INVITE_MEMBER_EXISTS")
    assert (await alice.post(path, json=body)).status == 201
    assert (await alice.post(path, json=body)).outcome == (409, "E_INVITE_ALREADY_EXISTS")
    r = await alice.post(f"/libraries/{alice.default_library_id}/invites", json=to_bob)
    assert r.outcome == (403, "E_DEFAULT_LIBRARY_FORBIDDEN")
    for bad in (
        {},
        {"invitee_user_id": "nope"},
        {"invitee_user_id": str(carol.id), "role": "owner"},
        {"invitee_user_id": str(carol.id), "extra": 1},
    ):
        assert (await alice.post(path, json=bad)).outcome == (400, "E_INVALID_REQUEST")


async def test_list_library_invites_admins_only(
    alice: User, bob: User, carol: User, lib: uuid.UUID
) -> None:
    await bob.join(alice, lib)
    invite = await alice.invite(lib, carol)
    r = await alice.get(f"/libraries/{lib}/invites")
    assert r.status == 200
    assert [(i["invitee_user_id"], i["status"]) for i in r.json["data"]] == [
        (str(bob.id), "accepted"),
        (str(carol.id), "pending"),
    ]
    r = await alice.get(f"/libraries/{lib}/invites?status=pending")
    assert [i["id"] for i in r.json["data"]] == [str(invite)]
    path = f"/libraries/{lib}/invites"
    assert (await bob.get(path)).outcome == (403, "E_FORBIDDEN")
    assert (await carol.get(path)).outcome == (404, "E_LIBRARY_NOT_FOUND")
    assert (await alice.get(f"{path}?status=bogus")).outcome == (400, "E_INVALID_REQUEST")


async def test_list_my_invites(alice: User, bob: User, carol: User) -> None:
    libs = [await alice.create_library(f"L{i}") for i in range(5)]
    ids = [await alice.invite(lib, bob) for lib in libs]
    await carol.join(alice, libs[0])  # not bob's
    r = await bob.post(f"/libraries/invites/{ids[1]}/decline")
    assert r.status == 200
    everything = await walk(bob, "/libraries/invites", limit=2)
    assert [i["id"] for i in everything] == [str(i) for i in ids]
    pending = await walk(bob, "/libraries/invites?status=pending", limit=2)
    assert [i["id"] for i in pending] == [str(i) for i in ids if i != ids[1]]
    declined = (await bob.get("/libraries/invites?status=declined")).json["data"]
    assert [(i["id"], i["status"]) for i in declined] == [(str(ids[1]), "declined")]
    assert declined[0]["responded_at"] is not None
    assert (await alice.get("/libraries/invites")).json["data"] == []
    assert (await bob.get("/libraries/invites?status=nope")).outcome == (400, "E_INVALID_REQUEST")


async def test_cursor_of_one_filter_is_refused_by_another(alice: User, bob: User) -> None:
    for i in range(3):
        await alice.invite(await alice.create_library(f"L{i}"), bob)
    r = await bob.get("/libraries/invites?limit=1&status=pending")
    cursor = r.json["page"]["next_cursor"]
    r = await bob.get(f"/libraries/invites?limit=1&cursor={cursor}")
    assert r.outcome == (400, "E_INVALID_CURSOR")


async def test_accept(
    alice: User, bob: User, lib: uuid.UUID, sessionmaker: Sm, publisher: FakePublisher
) -> None:
    invite = await alice.invite(lib, bob, role="admin")
    publisher.sent.clear()
    r = await bob.post(f"/libraries/invites/{invite}/accept", headers={"X-Request-ID": "acc-1"})
    assert r.status == 200
    assert set(r.data) == {"invite", "membership", "idempotent", "backfill_job_status"}
    assert set(r.data["invite"]) == INVITE_KEYS
    assert (r.data["invite"]["status"], r.data["idempotent"]) == ("accepted", False)
    assert r.data["invite"]["responded_at"] is not None
    assert r.data["membership"]["user_id"] == str(bob.id)
    assert (r.data["membership"]["role"], r.data["membership"]["is_owner"]) == ("admin", False)
    assert r.data["backfill_job_status"] == "pending"

    job = await scalar(
        sessionmaker,
        "SELECT status || ':' || attempts FROM default_library_backfill_jobs "
        "WHERE default_library_id = :d AND source_library_id = :s AND user_id = :u",
        d=bob.default_library_id,
        s=lib,
        u=bob.id,
    )
    assert job == "pending:0"
    outbox = await scalar(
        sessionmaker,
        "SELECT count(*) FROM outbox WHERE topic LIKE '%backfill' "
        "AND payload->>'source_library_id' = :s",
        s=str(lib),
    )
    assert outbox == 1
    [(topic, _key, value, headers)] = publisher.sent
    assert topic.endswith("backfill")
    message = json.loads(value)
    assert message["source_library_id"] == str(lib)
    assert message["default_library_id"] == str(bob.default_library_id)
    assert message["user_id"] == str(bob.id)
    assert headers["request_id"] == "acc-1"

    # repeat: idempotent, nothing new written
    r = await bob.post(f"/libraries/invites/{invite}/accept")
    assert (r.status, r.data["idempotent"], r.data["backfill_job_status"]) == (200, True, "pending")
    assert len(publisher.sent) == 1
    path = f"/libraries/invites/{invite}"
    assert (await bob.post(f"{path}/decline")).outcome == (409, "E_INVITE_NOT_PENDING")
    assert (await alice.delete(path)).outcome == (409, "E_INVITE_NOT_PENDING")
    assert (await bob.get(f"/libraries/{lib}")).data["role"] == "admin"


async def test_accept_gives_immediate_access(
    alice: User, bob: User, lib: uuid.UUID, sessionmaker: Sm
) -> None:
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    await alice.post(f"/libraries/{lib}/media", json={"media_id": str(m)})
    assert (await bob.get(f"/media/{m}")).code == "E_MEDIA_NOT_FOUND"
    await bob.join(alice, lib)
    assert (await bob.get(f"/media/{m}")).status == 200
    r = await bob.get(f"/libraries/{lib}/media")
    assert [x["id"] for x in r.json["data"]] == [str(m)]


async def test_accept_keeps_a_running_job_running(
    alice: User, bob: User, lib: uuid.UUID, sessionmaker: Sm
) -> None:
    from tests.support.library_api import execute

    await execute(
        sessionmaker,
        "INSERT INTO default_library_backfill_jobs (default_library_id, source_library_id, "
        "user_id, status, attempts, lease_token, lease_owner, lease_expires_at) "
        "VALUES (:d, :s, :u, 'running', 1, gen_random_uuid(), 'w', now() + interval '1 hour')",
        d=bob.default_library_id,
        s=lib,
        u=bob.id,
    )
    invite = await alice.invite(lib, bob)
    r = await bob.post(f"/libraries/invites/{invite}/accept")
    assert (r.status, r.data["backfill_job_status"]) == (200, "running")


async def test_accept_errors_and_masking(
    alice: User, bob: User, carol: User, lib: uuid.UUID
) -> None:
    invite = await alice.invite(lib, bob)
    path, unknown = f"/libraries/invites/{invite}", f"/libraries/invites/{uuid.uuid4()}"
    for action in ("accept", "decline"):
        assert (await carol.post(f"{path}/{action}")).outcome == (404, "E_INVITE_NOT_FOUND")
        assert (await alice.post(f"{path}/{action}")).outcome == (403, "E_FORBIDDEN")
        assert (await bob.post(f"{unknown}/{action}")).outcome == (404, "E_INVITE_NOT_FOUND")
    assert (await carol.delete(path)).outcome == (404, "E_INVITE_NOT_FOUND")
    assert (await bob.delete(path)).outcome == (403, "E_FORBIDDEN")
    assert (await alice.delete(unknown)).outcome == (404, "E_INVITE_NOT_FOUND")


async def test_decline(alice: User, bob: User, lib: uuid.UUID) -> None:
    invite = await alice.invite(lib, bob)
    r = await bob.post(f"/libraries/invites/{invite}/decline")
    assert r.status == 200
    assert set(r.data) == {"invite", "idempotent"}
    assert (r.data["invite"]["status"], r.data["idempotent"]) == ("declined", False)
    r = await bob.post(f"/libraries/invites/{invite}/decline")
    assert (r.status, r.data["idempotent"]) == (200, True)
    r = await bob.post(f"/libraries/invites/{invite}/accept")
    assert r.outcome == (409, "E_INVITE_NOT_PENDING")
    assert (await bob.get(f"/libraries/{lib}")).code == "E_LIBRARY_NOT_FOUND"
    # a declined invite does not block a new one
    assert (
        await alice.post(f"/libraries/{lib}/invites", json={"invitee_user_id": str(bob.id)})
    ).status == 201


async def test_revoke(alice: User, bob: User, carol: User, lib: uuid.UUID) -> None:
    await carol.join(alice, lib, role="admin")
    invite = await alice.invite(lib, bob)
    r = await carol.delete(f"/libraries/invites/{invite}")  # any admin may revoke
    assert r.status == 200
    assert set(r.data) == {"invite", "idempotent"}
    assert (r.data["invite"]["status"], r.data["idempotent"]) == ("revoked", False)
    r = await alice.delete(f"/libraries/invites/{invite}")
    assert (r.status, r.data["idempotent"]) == (200, True)
    for action in ("accept", "decline"):
        r = await bob.post(f"/libraries/invites/{invite}/{action}")
        assert r.outcome == (409, "E_INVITE_NOT_PENDING")
