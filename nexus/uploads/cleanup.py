"""Storage hygiene, run by the agents' leader (docs/uploads.md "Storage cleanup").

- `expire_uploads`: an upload not completed within its URL lifetime plus a grace is
  abandoned: its media is deleted (with its file row, links and upload row, by cascade).
  A claim in progress (a PUT still streaming) keeps it, until the claim is stale.
- `delete_stored_files`: files whose `media_file` row was deleted (queued in
  `storage_deletions` by a trigger, in the deleting transaction, so only committed
  deletions are seen) are removed from storage, then their queue rows. Removing a file
  that is already gone is fine, so a crash between the two steps only repeats the first.

Each function is one transaction of the caller's and locks what it takes with
`FOR UPDATE SKIP LOCKED`, so two runs never wait on or repeat each other.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.uploads.service import STALE_CLAIM
from nexus.uploads.storage import LocalStorage

log = logging.getLogger(__name__)

# Rows one call handles (one transaction each).
BATCH = 500

_EXPIRE = text(
    """
    WITH abandoned AS (
        SELECT u.media_id FROM media_uploads u
        WHERE u.uploaded_at IS NULL AND u.created_at < now() - CAST(:age AS interval)
          AND (u.claimed_at IS NULL OR u.claimed_at < now() - CAST(:stale AS interval))
        ORDER BY u.created_at
        LIMIT :n
        FOR UPDATE OF u SKIP LOCKED
    )
    DELETE FROM media m USING abandoned a WHERE m.id = a.media_id RETURNING m.id
    """
)


async def expire_uploads(
    session: AsyncSession, *, older_than: timedelta, limit: int = BATCH
) -> list[uuid.UUID]:
    """Delete up to `limit` media whose upload started more than `older_than` ago and never
    completed; returns their ids. Their files (if a partial one exists) are queued for
    deletion by the `media_file` trigger."""
    rows = await session.execute(_EXPIRE, {"age": older_than, "stale": STALE_CLAIM, "n": limit})
    return [r[0] for r in rows]


async def delete_stored_files(
    session: AsyncSession, storage: LocalStorage, *, limit: int = BATCH
) -> int:
    """Remove up to `limit` queued files from storage and their queue rows; returns how
    many. A file that cannot be removed (an I/O error) keeps its row for the next run; a
    path outside the storage root (never written by us) is dropped with an error log."""
    rows = (
        await session.execute(
            text(
                "SELECT id, storage_path FROM storage_deletions ORDER BY id LIMIT :n "
                "FOR UPDATE SKIP LOCKED"
            ),
            {"n": limit},
        )
    ).all()
    done: list[int] = []
    for row in rows:
        try:
            await storage.delete(row.storage_path)
        except ValueError:
            log.error("refusing to delete a path outside storage: %r", row.storage_path)
        except OSError as exc:
            log.warning("could not delete %s (%s); will retry", row.storage_path, exc)
            continue
        done.append(row.id)
    if done:
        await session.execute(
            text("DELETE FROM storage_deletions WHERE id = ANY(CAST(:ids AS bigint[]))"),
            {"ids": done},
        )
    return len(done)
