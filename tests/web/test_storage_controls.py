"""Storage cannot be filled or abused (issue #11.6): a per-user quota counted at upload
init, race-safe; an upload is neither downloadable nor shareable before its type check;
deleted files are queued for deletion from storage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.uploads import signing
from tests.support.library_api import User, scalar
from tests.support.webapp import AppFactory
from tests.web.test_uploads import epub_bytes, init, pdf_bytes, put, raw, uploaded

Sm = async_sessionmaker[AsyncSession]
QUOTA = 5000


@pytest.fixture
def quota_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={"storage_dir": tmp_path / "storage", "storage_quota_bytes_per_user": QUOTA}
    )


@pytest.fixture
async def app(build_app: AppFactory, quota_settings: Settings) -> AsyncIterator[Quart]:
    app: Quart = build_app(settings=quota_settings)
    async with app.test_app():
        yield app


async def _deletions_queued(sm: Sm, media_id: object) -> Any:
    """Rows queued to delete the media's original file from storage."""
    return await scalar(
        sm,
        "SELECT count(*) FROM storage_deletions WHERE storage_path = :p",
        p=f"media/{media_id}/original",
    )


async def _usage(sm: Sm, user: User) -> Any:
    return await scalar(sm, "SELECT bytes FROM storage_usage WHERE user_id = :u", u=user.id)


async def test_the_quota_counts_declared_sizes_at_init(alice: User, sessionmaker: Sm) -> None:
    assert (await init(alice, size=3000)).status == 201
    over = await init(alice, size=2001)
    assert over.outcome == (409, "E_QUOTA_EXCEEDED")
    assert over.json["error"]["details"] == {"quota_bytes": QUOTA, "used_bytes": 3000}
    assert (await init(alice, size=2000)).status == 201  # the quota is inclusive
    assert await _usage(sessionmaker, alice) == QUOTA
    alone = await init(alice, size=QUOTA + 1)
    assert alone.outcome == (409, "E_QUOTA_EXCEEDED")
    assert (
        await scalar(
            sessionmaker, "SELECT count(*) FROM media WHERE created_by_user_id = :u", u=alice.id
        )
        == 2
    )


async def test_quotas_are_per_user(alice: User, bob: User) -> None:
    assert (await init(alice, size=QUOTA)).status == 201
    assert (await init(bob, size=QUOTA)).status == 201


async def test_two_concurrent_inits_over_the_quota_exactly_one_wins(
    alice: User, sessionmaker: Sm
) -> None:
    for _ in range(3):  # a few rounds, each from an empty quota
        first, second = await asyncio.gather(init(alice, size=3000), init(alice, size=3000))
        assert sorted([first.status, second.status]) == [201, 409]
        assert await _usage(sessionmaker, alice) == 3000
        assert (
            await scalar(
                sessionmaker, "SELECT count(*) FROM media WHERE created_by_user_id = :u", u=alice.id
            )
            == 1
        )
        await _forget_uploads(sessionmaker, alice)
        assert await _usage(sessionmaker, alice) == 0


async def _forget_uploads(sm: Sm, user: User) -> None:
    """Delete the user's media (as a merge or the upload cleanup would)."""
    async with sm() as s, s.begin():
        await s.execute(text("DELETE FROM media WHERE created_by_user_id = :u"), {"u": user.id})


async def test_a_refused_or_deleted_file_gives_its_bytes_back(
    alice: User, sessionmaker: Sm
) -> None:
    refused = await uploaded(alice, epub_bytes() + b"x" * 1000, kind="pdf")
    assert await _usage(sessionmaker, alice) == len(epub_bytes()) + 1000
    assert (await alice.post(f"/media/{refused}/ingest")).outcome == (400, "E_INVALID_FILE_TYPE")
    assert await _usage(sessionmaker, alice) == 0
    assert await _deletions_queued(sessionmaker, refused) == 1
    kept = await uploaded(alice, pdf_bytes(size=QUOTA))
    await _forget_uploads(sessionmaker, alice)
    assert await _usage(sessionmaker, alice) == 0
    assert await _deletions_queued(sessionmaker, kept) == 1


async def test_an_unchecked_upload_is_neither_downloadable_nor_shareable(
    alice: User, bob: User, quota_settings: Settings
) -> None:
    media_id = await uploaded(alice, pdf_bytes("unchecked"))
    shared = await alice.create_library()
    await bob.join(alice, shared)

    nofile = await alice.get(f"/media/{media_id}/file")
    assert nofile.outcome == (400, "E_STORAGE_MISSING")
    # A download token signed some other way (e.g. issued before this rule) serves nothing.
    token = signing.sign(
        quota_settings.upload_signing_key_bytes, "download", media_id, ttl_seconds=60
    ).token
    direct = await raw(alice.api, "GET", f"/media/{media_id}/download?token={token}")
    assert direct.outcome == (404, "E_NOT_FOUND")
    share = await alice.post(f"/libraries/{shared}/media", json={"media_id": str(media_id)})
    assert share.outcome == (403, "E_FORBIDDEN")
    assert (await bob.get(f"/media/{media_id}")).status == 404
    # Into one's own default library is not sharing.
    mine = await alice.post(
        f"/libraries/{alice.default_library_id}/media", json={"media_id": str(media_id)}
    )
    assert mine.status in (200, 201)

    assert (await alice.post(f"/media/{media_id}/ingest")).status == 202
    assert (await alice.get(f"/media/{media_id}/file")).status == 200
    assert (await raw(alice.api, "GET", f"/media/{media_id}/download?token={token}")).status == 200
    share = await alice.post(f"/libraries/{shared}/media", json={"media_id": str(media_id)})
    assert share.status == 201
    assert (await bob.get(f"/media/{media_id}")).status == 200


async def test_a_second_upload_to_a_spent_url_does_not_charge_again(
    alice: User, sessionmaker: Sm
) -> None:
    r = await init(alice, size=2000)
    assert (await put(alice.api, r.data["upload_url"], pdf_bytes(size=2000))).status == 200
    assert (await put(alice.api, r.data["upload_url"], pdf_bytes(size=2000))).status == 403
    assert await _usage(sessionmaker, alice) == 2000
