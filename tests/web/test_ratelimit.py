"""SPEC §2 rate limit: from_url + upload init share one per-user budget, held in Postgres."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart import Quart

from nexus.config import Settings
from tests.support.library_api import Reply, User, execute, new_user
from tests.support.webapp import Api, AppFactory
from web.app import create_app

LIMIT = 3


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return settings.model_copy(update={"rate_limit_ingest_per_minute": LIMIT})


@pytest.fixture
async def app(build_app: AppFactory, limited: Settings) -> Any:
    app: Quart = build_app(settings=limited)
    async with app.test_app():
        yield app


async def save(user: User, n: int = 0) -> Reply:
    return await user.post("/media/from_url", json={"url": f"https://example.com/a{n}"})


async def init(user: User) -> Reply:
    body = {"kind": "pdf", "filename": "a.pdf", "content_type": "application/pdf", "size_bytes": 5}
    return await user.post("/media/upload/init", json=body)


def assert_limited(r: Reply) -> int:
    assert r.outcome == (429, "E_RATE_LIMITED"), r.json
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert r.json["error"]["request_id"]
    return retry_after


async def test_from_url_and_upload_init_share_the_limit(api: Api) -> None:
    alice, bob = await new_user(api), await new_user(api)
    assert (await save(alice, 1)).status == 202
    assert (await init(alice)).status == 201
    assert (await save(alice, 2)).status == 202
    assert_limited(await init(alice))
    assert_limited(await save(alice, 3))
    # Per user: bob still has his whole budget.
    assert (await init(bob)).status == 201


async def test_limit_resets_in_the_next_window(api: Api, sessionmaker: Any) -> None:
    alice = await new_user(api)
    for n in range(LIMIT):
        assert (await save(alice, n)).status == 202
    assert_limited(await init(alice))
    # Move the current window into the past: the next request opens a fresh one.
    await execute(
        sessionmaker,
        "UPDATE rate_limit_windows SET window_start = window_start - interval '1 minute' "
        "WHERE user_id = :u",
        u=alice.id,
    )
    assert (await init(alice)).status == 201


async def test_concurrent_requests_let_exactly_the_limit_through(api: Api) -> None:
    alice = await new_user(api)
    replies = await asyncio.gather(*(init(alice) for _ in range(12)))
    statuses = sorted(r.status for r in replies)
    assert statuses == [201] * LIMIT + [429] * (12 - LIMIT)


async def test_the_limit_holds_across_two_api_processes(limited: Settings, publisher: Any) -> None:
    # Two apps, each with its own engine (sessionmaker=None): only the database is shared.
    first = create_app(limited, publisher=publisher)
    second = create_app(limited, publisher=publisher)
    async with first.test_app(), second.test_app():
        a1, a2 = Api(first.test_client()), Api(second.test_client())
        alice = await new_user(a1)
        on_second = User(a2, alice.id, alice.token, alice.default_library_id)
        assert (await save(alice, 1)).status == 202
        assert (await init(on_second)).status == 201
        assert (await save(on_second, 2)).status == 202
        assert_limited(await init(alice))
        assert_limited(await save(on_second, 3))


async def test_bad_bodies_are_refused_before_counting(api: Api, sessionmaker: Any) -> None:
    alice = await new_user(api)
    for _ in range(LIMIT + 2):
        r = await alice.post("/media/upload/init", json={"kind": "nope"})
        assert r.status == 400
    assert (await init(alice)).status == 201
