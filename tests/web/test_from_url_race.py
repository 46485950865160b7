"""POST /media/from_url when the article it conflicts with is deleted (merged) between the
request's insert and its look-up: retried in the request, else 503 with Retry-After.

The concurrent deletion is a real committed transaction on its own connection, run at the
one point where it makes the race happen (just before the request's look-up)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.ingest import service
from tests.support.library_api import new_user
from tests.web.conftest import Api

URL = "https://example.com/raced"
LookUp = Callable[[AsyncSession, str], Awaitable[tuple[uuid.UUID, str] | None]]


def _deleting_before_look_up(
    monkeypatch: pytest.MonkeyPatch,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    recreate: bool,
) -> list[uuid.UUID]:
    """Before each look-up, delete the article (committed, another connection); with
    `recreate`, put a new one under the same URL after it, so the next insert conflicts
    again. Returns the ids deleted."""
    real: LookUp = service._existing_article
    deleted: list[uuid.UUID] = []

    async def racing(session: AsyncSession, canonical: str) -> tuple[uuid.UUID, str] | None:
        async with transaction(sessionmaker) as other:
            gone = await other.scalar(
                text("DELETE FROM media WHERE canonical_url = :canonical RETURNING id"),
                {"canonical": canonical},
            )
        deleted.append(gone)
        found = await real(session, canonical)
        if recreate:
            async with transaction(sessionmaker) as other:
                await other.execute(
                    text(
                        "INSERT INTO media (kind, requested_url, canonical_url) "
                        "VALUES ('web_article', :canonical, :canonical)"
                    ),
                    {"canonical": canonical},
                )
        return found

    monkeypatch.setattr(service, "_existing_article", racing)
    return deleted


async def test_an_article_merged_away_mid_request_is_created_anew(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await new_user(api)
    saved = await first.post("/media/from_url", json={"url": URL})
    assert saved.status == 202, saved.json
    deleted = _deleting_before_look_up(monkeypatch, sessionmaker, recreate=False)

    second = await new_user(api)
    raced = await second.post("/media/from_url", json={"url": URL})

    assert raced.status == 202, raced.json  # was a 500 (RuntimeError)
    assert raced.json["data"]["duplicate"] is False
    assert deleted == [uuid.UUID(saved.json["data"]["media_id"])]
    assert raced.json["data"]["media_id"] != saved.json["data"]["media_id"]
    async with sessionmaker() as s:
        jobs = await s.scalar(
            text("SELECT count(*) FROM ingest_jobs WHERE media_id = :media_id"),
            {"media_id": uuid.UUID(raced.json["data"]["media_id"])},
        )
    assert jobs == 1


async def test_a_race_that_keeps_happening_is_503_with_retry_after(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await new_user(api)
    assert (await first.post("/media/from_url", json={"url": URL})).status == 202
    deleted = _deleting_before_look_up(monkeypatch, sessionmaker, recreate=True)

    second = await new_user(api)
    raced = await second.post("/media/from_url", json={"url": URL})

    assert raced.outcome == (503, "E_DEPENDENCY_UNAVAILABLE"), raced.json
    assert raced.headers["Retry-After"] == "1"
    assert len(deleted) == 3  # tried again in the request before giving up
    async with sessionmaker() as s:
        mine = await s.scalar(
            text("SELECT count(*) FROM media WHERE canonical_url = :canonical"),
            {"canonical": URL},
        )
    assert mine == 1  # the last re-created article only: the request wrote nothing
