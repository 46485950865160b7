"""`nexus.uploads.cleanup.delete_stored_files`: deletes queued files after commit,
idempotently (a file already gone is fine; running twice does nothing more)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.uploads.cleanup import delete_stored_files
from nexus.uploads.storage import LocalStorage


async def test_queued_files_are_deleted_once(session: AsyncSession, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    await storage.put_bytes("media/a/original", b"a")
    await storage.put_bytes("media/keep/original", b"k")
    outside = tmp_path / "outside"
    outside.write_bytes(b"not ours")
    await session.execute(
        text(
            "INSERT INTO storage_deletions (storage_path) VALUES "
            "('media/a/original'), ('media/gone/original'), ('../outside')"
        )
    )
    assert await delete_stored_files(session, storage) == 3
    assert not await storage.exists("media/a/original")
    assert await storage.exists("media/keep/original")
    assert outside.exists()  # never outside the storage root
    assert await session.scalar(text("SELECT count(*) FROM storage_deletions")) == 0
    assert await delete_stored_files(session, storage) == 0
