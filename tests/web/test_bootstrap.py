"""User bootstrap: one user row, one default library, one admin membership, under races."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.libraries.models import Library, Membership
from nexus.users.models import User
from nexus.users.service import DEFAULT_LIBRARY_NAME, ensure_user
from tests.support.webapp import Api, make_token


async def _counts(sm: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> tuple[int, ...]:
    async with sm() as s:
        users = await s.scalar(select(func.count()).select_from(User).where(User.id == user_id))
        libs = await s.scalar(
            select(func.count()).select_from(Library).where(Library.owner_user_id == user_id)
        )
        members = await s.scalar(
            select(func.count()).select_from(Membership).where(Membership.user_id == user_id)
        )
    return int(users or 0), int(libs or 0), int(members or 0)


async def test_me_shape_and_default_library(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sub = uuid.uuid4()
    r = await api.get("/me", token=make_token(sub))
    assert r.status_code == 200
    payload = await r.get_json()
    assert set(payload) == {"data"}
    assert set(payload["data"]) == {"user_id", "default_library_id"}
    assert payload["data"]["user_id"] == str(sub)
    library_id = uuid.UUID(payload["data"]["default_library_id"])
    async with sessionmaker() as s:
        lib = await s.get(Library, library_id)
        assert lib is not None
        assert (lib.owner_user_id, lib.name, lib.is_default) == (sub, DEFAULT_LIBRARY_NAME, True)
        role = await s.scalar(
            select(Membership.role).where(
                Membership.library_id == library_id, Membership.user_id == sub
            )
        )
    assert role == "admin"


async def test_bootstrap_is_idempotent(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sub = uuid.uuid4()
    first = await (await api.get("/me", token=make_token(sub))).get_json()
    second = await (await api.get("/me", token=make_token(sub))).get_json()
    assert first == second
    assert await _counts(sessionmaker, sub) == (1, 1, 1)


async def test_concurrent_first_requests_create_exactly_one_of_each(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sub = uuid.uuid4()
    token = make_token(sub)
    responses = await asyncio.gather(*(api.get("/me", token=token) for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    bodies = [await r.get_json() for r in responses]
    assert len({b["data"]["default_library_id"] for b in bodies}) == 1
    assert await _counts(sessionmaker, sub) == (1, 1, 1)


async def test_concurrent_service_calls_in_separate_transactions(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sub = uuid.uuid4()

    async def one() -> uuid.UUID:
        async with sessionmaker() as s, s.begin():
            return (await ensure_user(s, sub)).default_library_id

    ids = await asyncio.gather(*(one() for _ in range(10)))
    assert len(set(ids)) == 1
    assert await _counts(sessionmaker, sub) == (1, 1, 1)


async def test_missing_membership_is_repaired(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sub = uuid.uuid4()
    first = await (await api.get("/me", token=make_token(sub))).get_json()
    async with sessionmaker() as s, s.begin():
        await s.execute(delete(Membership).where(Membership.user_id == sub))
    again = await (await api.get("/me", token=make_token(sub))).get_json()
    assert again == first
    assert await _counts(sessionmaker, sub) == (1, 1, 1)


async def test_other_libraries_do_not_confuse_bootstrap(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sub = uuid.uuid4()
    first = await (await api.get("/me", token=make_token(sub))).get_json()
    async with sessionmaker() as s, s.begin():
        s.add(Library(owner_user_id=sub, name="Shared", is_default=False))
    again = await (await api.get("/me", token=make_token(sub))).get_json()
    assert again == first
