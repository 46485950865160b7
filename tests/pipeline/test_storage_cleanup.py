"""The agents' leader cleans storage (issue #11.6): an upload never completed within its
URL lifetime + grace is removed with its media; files of merged or deleted media are
deleted from storage after commit (idempotently: a file already gone is fine)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.ingest.service import merge_into
from nexus.uploads import service as uploads
from nexus.uploads.storage import LocalStorage, media_key
from tests.support import factories as f
from tests.support.processes import Child, poll

pytestmark = pytest.mark.pipeline
Sm = async_sessionmaker[AsyncSession]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def agents_settings(pipeline_settings: Settings, storage: LocalStorage) -> Settings:
    return pipeline_settings.model_copy(
        update={
            "storage_dir": storage.root,
            "upload_url_ttl_seconds": 60,
            "upload_cleanup_grace_seconds": 60,
            "upload_cleanup_interval_seconds": 0.3,
        }
    )


async def _uploads(sm: Sm, *sizes: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A new user's PDF uploads of these sizes, initiated and not yet sent: (user, media)."""
    async with transaction(sm) as s:
        viewer, default_id = await f.account(s)
        tickets = [
            await uploads.init_upload(
                s,
                viewer,
                default_id,
                kind="pdf",
                filename="x.pdf",
                content_type="application/pdf",
                size_bytes=size,
                signing_key=b"k" * 32,
                ttl_seconds=60,
                quota_bytes=10**9,
            )
            for size in sizes
        ]
    return viewer, [t.media_id for t in tickets]


async def _exists(sm: Sm, media_id: uuid.UUID) -> bool:
    async with sm() as s:
        found = await s.scalar(text("SELECT 1 FROM media WHERE id = :m"), {"m": media_id})
    return found is not None


async def test_abandoned_uploads_are_removed_with_their_media(
    sessionmaker: Sm, storage: LocalStorage, agents: Child
) -> None:
    viewer, (abandoned, recent, streaming, done) = await _uploads(sessionmaker, 700, 300, 100, 200)
    # A partial file of the abandoned one (a PUT that died without cleaning up).
    await storage.put_bytes(media_key(abandoned), b"%PDF-partial")
    async with transaction(sessionmaker) as s:
        await s.execute(
            text(
                "UPDATE media_uploads SET created_at = now() - interval '3 minutes' "
                "WHERE media_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": [abandoned, streaming, done]},
        )
        await s.execute(
            text("UPDATE media_uploads SET claimed_at = now() WHERE media_id = :m"),
            {"m": streaming},
        )
        await s.execute(
            text("UPDATE media_uploads SET uploaded_at = now() WHERE media_id = :m"),
            {"m": done},
        )

    async def abandoned_gone() -> bool:
        return not await _exists(sessionmaker, abandoned) and not await storage.exists(
            media_key(abandoned)
        )

    await poll(abandoned_gone, deadline_s=30, what="abandoned upload removed")
    for kept in (recent, streaming, done):
        assert await _exists(sessionmaker, kept)
    async with sessionmaker() as s:
        used = await s.scalar(
            text("SELECT bytes FROM storage_usage WHERE user_id = :u"), {"u": viewer}
        )
        intrinsic = await s.scalar(
            text("SELECT count(*) FROM default_library_intrinsics WHERE media_id = :m"),
            {"m": abandoned},
        )
    assert used == 600 and intrinsic == 0


async def test_files_of_merged_and_deleted_media_are_deleted_from_storage(
    sessionmaker: Sm, storage: LocalStorage, agents: Child
) -> None:
    _, (loser, winner, deleted, already_gone) = await _uploads(sessionmaker, 100, 100, 100, 100)
    for media_id in (loser, winner, deleted):
        await storage.put_bytes(media_key(media_id), b"%PDF-1.4 bytes")
    async with transaction(sessionmaker) as s:
        await merge_into(s, loser, winner)
        await s.execute(
            text("DELETE FROM media WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": [deleted, already_gone]},
        )

    async def queue_drained() -> bool:
        async with sessionmaker() as s:
            left = await s.scalar(text("SELECT count(*) FROM storage_deletions"))
        return left == 0

    await poll(queue_drained, deadline_s=30, what="storage deletions done")
    assert not await storage.exists(media_key(loser))
    assert not await storage.exists(media_key(deleted))
    assert await storage.exists(media_key(winner))
