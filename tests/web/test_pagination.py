"""Every list route pages with keyset cursors: no gaps, no duplicates, bad input is 400."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.library_api import User, execute, insert_media, new_user, walk
from tests.support.webapp import Api

Sm = async_sessionmaker[AsyncSession]


async def test_libraries_pages(alice: User) -> None:
    names = [f"lib {i}" for i in range(9)]
    for name in names:
        await alice.create_library(name)
    for limit in (1, 2, 4, 10, 200):
        walked = await walk(alice, "/libraries", limit)
        assert [lib["name"] for lib in walked] == ["My Library", *names]
        assert len({lib["id"] for lib in walked}) == 10


async def test_ties_on_created_at_are_broken_by_id(alice: User, sessionmaker: Sm) -> None:
    for i in range(6):
        await alice.create_library(f"t{i}")
    await execute(
        sessionmaker,
        "UPDATE libraries SET created_at = '2026-01-01T00:00:00Z' WHERE NOT is_default",
    )
    walked = await walk(alice, "/libraries", 2)
    shared = [lib["id"] for lib in walked if not lib["is_default"]]
    assert shared == sorted(shared)
    assert len(set(shared)) == 6


async def test_pages_are_stable_under_inserts(alice: User) -> None:
    for i in range(4):
        await alice.create_library(f"a{i}")
    r = await alice.get("/libraries?limit=2")
    first = [lib["id"] for lib in r.json["data"]]
    await alice.create_library("late")
    rest = await walk_from(alice, r.json["page"]["next_cursor"])
    assert len(set(first) | set(rest)) == len(first) + len(rest) == 6


async def walk_from(user: User, cursor: str) -> list[str]:
    ids: list[str] = []
    while cursor:
        r = await user.get(f"/libraries?limit=2&cursor={cursor}")
        ids += [lib["id"] for lib in r.json["data"]]
        cursor = r.json["page"]["next_cursor"]
    return ids


async def test_library_media_pages(alice: User, sessionmaker: Sm) -> None:
    lib = await alice.create_library()
    ids = []
    for _ in range(7):
        m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
        await alice.post(f"/libraries/{lib}/media", json={"media_id": str(m)})
        ids.append(str(m))
    for path in (f"/libraries/{lib}/media", f"/libraries/{alice.default_library_id}/media"):
        walked = await walk(alice, path, 3)
        assert [m["id"] for m in walked] == ids


async def test_default_library_filter_does_not_leave_gaps(alice: User, sessionmaker: Sm) -> None:
    """Unreadable rows interleaved with readable ones: pages stay full, nothing is lost."""
    d = alice.default_library_id
    readable = []
    for i in range(10):
        if i % 2:
            m = await insert_media(sessionmaker)
            await execute(
                sessionmaker,
                "INSERT INTO library_media (library_id, media_id) VALUES (:d, :m)",
                d=d,
                m=m,
            )
        else:
            readable.append(str(await insert_media(sessionmaker, intrinsic_for=d)))
    r = await alice.get(f"/libraries/{d}/media?limit=2")
    assert len(r.json["data"]) == 2
    assert [m["id"] for m in await walk(alice, f"/libraries/{d}/media", 2)] == readable


async def test_members_pages(api: Api, alice: User) -> None:
    lib = await alice.create_library()
    others = [await new_user(api) for _ in range(5)]
    for user in others:
        await user.join(alice, lib)
    walked = await walk(alice, f"/libraries/{lib}/members", 2)
    assert [m["user_id"] for m in walked] == [str(alice.id)] + [str(u.id) for u in others]


async def test_library_invites_pages(api: Api, alice: User) -> None:
    lib = await alice.create_library()
    others = [await new_user(api) for _ in range(5)]
    ids = [str(await alice.invite(lib, user)) for user in others]
    walked = await walk(alice, f"/libraries/{lib}/invites", 2)
    assert [i["id"] for i in walked] == ids


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=abc", "limit=-5", "limit="])
@pytest.mark.parametrize(
    "path", ["/libraries", "/libraries/invites", "/libraries/{d}/media", "/libraries/{d}/members"]
)
async def test_bad_limits(alice: User, path: str, query: str) -> None:
    r = await alice.get(path.format(d=alice.default_library_id) + "?" + query)
    assert r.outcome == (400, "E_INVALID_REQUEST")


@pytest.mark.parametrize("cursor", ["garbage", "eyJ2IjoxfQ", "%00", "a" * 2000])
@pytest.mark.parametrize(
    "path",
    [
        "/libraries",
        "/libraries/invites",
        "/libraries/{d}/media",
        "/libraries/{d}/members",
        "/libraries/{d}/invites",
    ],
)
async def test_bad_cursors(alice: User, path: str, cursor: str) -> None:
    r = await alice.get(path.format(d=alice.default_library_id) + f"?cursor={cursor}")
    assert r.outcome == (400, "E_INVALID_CURSOR")


async def test_cursor_of_another_list_is_refused(alice: User) -> None:
    for i in range(2):
        await alice.create_library(f"x{i}")
    cursor = (await alice.get("/libraries?limit=1")).json["page"]["next_cursor"]
    r = await alice.get(f"/libraries/{alice.default_library_id}/members?cursor={cursor}")
    assert r.outcome == (400, "E_INVALID_CURSOR")
    other = uuid.uuid4()
    r = await alice.get(f"/libraries/{other}/members?cursor={cursor}")
    assert r.outcome == (400, "E_INVALID_CURSOR")  # 400 before 404
