"""Idempotency-Key on creating POSTs (SPEC §2), stored in Postgres with the creation."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from quart import Quart
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.errors import NexusError
from nexus.idempotency import service
from tests.support.library_api import User, execute, scalar
from tests.support.locks import wait_until_blocked
from tests.support.webapp import Api

Sm = async_sessionmaker[AsyncSession]


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def count_libraries(sm: Sm, owner: uuid.UUID) -> int:
    return int(
        await scalar(
            sm,
            "SELECT count(*) FROM libraries WHERE owner_user_id = :o AND NOT is_default",
            o=owner,
        )
    )


async def test_repeat_returns_the_stored_response(alice: User, sessionmaker: Sm) -> None:
    first = await alice.post("/libraries", json={"name": "Once"}, headers=key("k-1"))
    assert first.status == 201
    assert "Idempotent-Replayed" not in first.headers
    await alice.patch(f"/libraries/{first.data['id']}", json={"name": "Renamed since"})
    again = await alice.post("/libraries", json={"name": "Once"}, headers=key("k-1"))
    assert again.status == 201
    assert again.json == first.json  # unchanged, even though the library was renamed
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await count_libraries(sessionmaker, alice.id) == 1
    row = await scalar(
        sessionmaker,
        "SELECT route || ' ' || status_code FROM idempotency_keys WHERE key = 'k-1'",
    )
    assert row == "POST /libraries 201"


async def test_body_key_order_does_not_matter(alice: User, sessionmaker: Sm) -> None:
    r1 = await alice.post(
        "/libraries",
        data=b'{"name": "Same"}',
        headers={**key("k"), "Content-Type": "application/json"},
    )
    r2 = await alice.post(
        "/libraries",
        data=b'{ "name":"Same" }',
        headers={**key("k"), "Content-Type": "application/json"},
    )
    assert (r1.status, r2.status, r1.json) == (201, 201, r2.json)


async def test_different_body_is_409(alice: User, sessionmaker: Sm) -> None:
    assert (await alice.post("/libraries", json={"name": "A"}, headers=key("k"))).status == 201
    r = await alice.post("/libraries", json={"name": "B"}, headers=key("k"))
    assert r.outcome == (409, "E_IDEMPOTENCY_KEY_REUSED")
    assert await count_libraries(sessionmaker, alice.id) == 1


async def test_keys_are_per_user_and_per_route(alice: User, bob: User, sessionmaker: Sm) -> None:
    a = await alice.post("/libraries", json={"name": "A"}, headers=key("shared"))
    b = await bob.post("/libraries", json={"name": "A"}, headers=key("shared"))
    assert (a.status, b.status) == (201, 201)
    assert a.data["id"] != b.data["id"]
    r = await alice.post(
        f"/libraries/{a.data['id']}/invites",
        json={"invitee_user_id": str(bob.id)},
        headers=key("shared"),
    )
    assert r.status == 201


async def test_without_a_key_every_post_creates(alice: User, sessionmaker: Sm) -> None:
    for _ in range(2):
        assert (await alice.post("/libraries", json={"name": "A"})).status == 201
    assert await count_libraries(sessionmaker, alice.id) == 2
    assert await scalar(sessionmaker, "SELECT count(*) FROM idempotency_keys") == 0


@pytest.mark.parametrize("value", ["", "x" * 256])
async def test_key_length(alice: User, value: str) -> None:
    r = await alice.post("/libraries", json={"name": "A"}, headers=key(value))
    assert r.outcome == (400, "E_INVALID_REQUEST")


async def test_255_characters_is_fine(alice: User) -> None:
    r = await alice.post("/libraries", json={"name": "A"}, headers=key("x" * 255))
    assert r.status == 201


async def test_failures_are_not_stored(alice: User, sessionmaker: Sm) -> None:
    r = await alice.post("/libraries", json={"name": " "}, headers=key("retry"))
    assert r.code == "E_NAME_INVALID"
    r = await alice.post("/libraries", json={"name": "Fixed"}, headers=key("retry"))
    assert r.status == 201
    r = await alice.post("/libraries", json={"name": "Fixed"}, headers=key("retry"))
    assert r.headers["Idempotent-Replayed"] == "true"


async def test_expired_keys_are_reclaimed(alice: User, sessionmaker: Sm) -> None:
    first = await alice.post("/libraries", json={"name": "Old"}, headers=key("k"))
    await execute(
        sessionmaker, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
    )
    r = await alice.post("/libraries", json={"name": "New"}, headers=key("k"))
    assert r.status == 201
    assert r.data["id"] != first.data["id"]
    assert await count_libraries(sessionmaker, alice.id) == 2


async def test_prune(alice: User, sessionmaker: Sm) -> None:
    for k in ("old", "new"):
        await alice.post("/libraries", json={"name": k}, headers=key(k))
    await execute(
        sessionmaker,
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'",
    )
    async with sessionmaker() as s, s.begin():
        assert await service.prune_idempotency_keys(s) == 1
    remaining = await scalar(sessionmaker, "SELECT string_agg(key, ',') FROM idempotency_keys")
    assert remaining == "new"


async def test_invites_replay_and_conflict(alice: User, bob: User, sessionmaker: Sm) -> None:
    lib = await alice.create_library()
    other = await alice.create_library("other")
    body = {"invitee_user_id": str(bob.id)}
    first = await alice.post(f"/libraries/{lib}/invites", json=body, headers=key("inv"))
    again = await alice.post(f"/libraries/{lib}/invites", json=body, headers=key("inv"))
    assert (first.status, again.status, again.json) == (201, 201, first.json)
    # the same key and body for another library is another request
    r = await alice.post(f"/libraries/{other}/invites", json=body, headers=key("inv"))
    assert r.outcome == (409, "E_IDEMPOTENCY_KEY_REUSED")
    route = await scalar(sessionmaker, "SELECT route FROM idempotency_keys WHERE key = 'inv'")
    assert route == "POST /libraries/{library_id}/invites"
    # without the key the duplicate is refused by the domain rule
    r = await alice.post(f"/libraries/{lib}/invites", json=body)
    assert r.code == "E_INVITE_ALREADY_EXISTS"


async def test_concurrent_requests_create_one_library(
    app: Quart, alice: User, sessionmaker: Sm
) -> None:
    """Two requests with one key, in flight together on two connections."""
    apis = [Api(app.test_client()) for _ in range(2)]
    users = [User(a, alice.id, alice.token, alice.default_library_id) for a in apis]
    for attempt in range(5):
        k = key(f"race-{attempt}")
        r1, r2 = await asyncio.gather(
            *(u.post("/libraries", json={"name": f"R{attempt}"}, headers=k) for u in users)
        )
        assert (r1.status, r2.status) == (201, 201)
        assert r1.json == r2.json
    assert await count_libraries(sessionmaker, alice.id) == 5


async def test_second_claim_waits_for_the_first_and_replays(alice: User, sessionmaker: Sm) -> None:
    """Service level, two real sessions: B blocks on A's uncommitted claim, then sees A's
    stored response once A commits."""
    async with sessionmaker() as a, sessionmaker() as b:
        await a.begin()
        assert await service.claim(a, alice.id, "POST /x", "k", "h1") is None
        waiter = asyncio.create_task(service.claim(b, alice.id, "POST /x", "k", "h1"))
        await wait_until_blocked(sessionmaker, waiter)  # B waits on A's uncommitted row
        await service.complete(a, alice.id, "POST /x", "k", 201, {"data": {"id": 1}})
        await a.commit()
        stored = await asyncio.wait_for(waiter, 5)
        assert stored is not None
        assert (stored.status_code, stored.response) == (201, {"data": {"id": 1}})
        assert service.replay_or_conflict(stored, "h1") is stored
        with pytest.raises(NexusError) as info:
            service.replay_or_conflict(stored, "h2")
        assert info.value.code == "E_IDEMPOTENCY_KEY_REUSED"
        await b.rollback()


async def test_second_claim_owns_the_key_when_the_first_rolls_back(
    alice: User, sessionmaker: Sm
) -> None:
    async with sessionmaker() as a, sessionmaker() as b:
        await a.begin()
        assert await service.claim(a, alice.id, "POST /x", "k", "h1") is None
        waiter = asyncio.create_task(service.claim(b, alice.id, "POST /x", "k", "h2"))
        await wait_until_blocked(sessionmaker, waiter)
        await a.rollback()
        assert await asyncio.wait_for(waiter, 5) is None  # B owns it now
        await service.complete(b, alice.id, "POST /x", "k", 201, {"ok": True})
        await b.commit()
    async with sessionmaker() as s:
        row = (
            await s.execute(text("SELECT request_hash, status_code FROM idempotency_keys"))
        ).one()
    assert tuple(row) == ("h2", 201)


async def test_an_explicit_default_is_the_same_request(alice: User, bob: User) -> None:
    """The hash covers the validated body: `role: member` sent or left out is one request."""
    lib = (await alice.post("/libraries", json={"name": "Defaults"})).json["data"]["id"]
    k = key("defaults")
    first = await alice.post(
        f"/libraries/{lib}/invites", json={"invitee_user_id": str(bob.id)}, headers=k
    )
    again = await alice.post(
        f"/libraries/{lib}/invites",
        json={"invitee_user_id": str(bob.id), "role": "member"},
        headers=k,
    )
    assert first.status == again.status == 201
    assert first.json == again.json
