"""Uploading PDFs and EPUBs (SPEC §8, docs/uploads.md).

1. `init_upload`: the declared size charged to the caller's storage quota (409
   E_QUOTA_EXCEEDED past it), media `pending` + `media_file` (declared size and type) + the
   upload row (token nonce, original filename) + the caller's intrinsic, in the caller's
   transaction.
2. `claim_upload` / `complete_upload` / `release_upload`: the pre-signed PUT holds the
   token while it streams, spends it when the file is stored, gives it back on failure.
3. `ingest_upload`: the creator asks for extraction: magic bytes (passing marks the upload
   `verified_at`), size, sha256, per-user dedupe (the older media wins), or enqueue.
4. `readable_file` / `downloadable_file`: what a pre-signed download serves: only a file
   whose type check passed (or a fetched one).

Deleting a `media_file` row (a refused file, a merged or deleted media) queues the file's
deletion from storage and gives its bytes back to the quota (trigger of migration 0013);
`nexus.uploads.cleanup` deletes the files after commit and removes abandoned uploads.

Every function runs in the caller's transaction and never commits.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import Conflict, Forbidden, InvalidRequest, NexusError
from nexus.extraction import filetypes
from nexus.ingest import jobs
from nexus.ingest import service as ingest_service
from nexus.media import service as media_service
from nexus.media.states import ProcessingStatus
from nexus.messaging.topics import Topics
from nexus.sharing import closure
from nexus.uploads import signing
from nexus.uploads.storage import LocalStorage, media_key

MIB = 1024 * 1024
CONTENT_TYPES: dict[str, str] = {"pdf": "application/pdf", "epub": "application/epub+zip"}
SIZE_LIMITS: dict[str, int] = {"pdf": 100 * MIB, "epub": 50 * MIB}
MAX_UPLOAD_BYTES = max(SIZE_LIMITS.values())
EXTENSIONS: dict[str, str] = {"pdf": ".pdf", "epub": ".epub"}
# A claim older than this is from a process that died mid-upload: the token is free again.
STALE_CLAIM = timedelta(hours=1)
_HEAD_BYTES = filetypes.PDF_HEADER_WINDOW + 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class UploadTicket:
    media_id: uuid.UUID
    token: signing.SignedToken


@dataclass(frozen=True)
class UploadTarget:
    media_id: uuid.UUID
    kind: str
    storage_path: str
    size_bytes: int


@dataclass(frozen=True)
class IngestOutcome:
    media_id: uuid.UUID
    duplicate: bool
    processing_status: str
    status_code: int
    # A stored file to delete once the transaction has committed (a dedupe loser's).
    delete_key: str | None = None
    # Set when the file was refused: the media was marked failed; raise after commit.
    rejection: NexusError | None = None


@dataclass(frozen=True)
class StoredFile:
    media_id: uuid.UUID
    storage_path: str
    content_type: str
    filename: str


def clean_filename(raw: str) -> str:
    """The base name (browsers may send `C:\\fakepath\\x.pdf`), control characters removed."""
    name = _CONTROL.sub("", re.split(r"[\\/]", raw)[-1]).strip()
    if not name:
        raise InvalidRequest("filename must not be empty")
    return name[:255]


def title_from_filename(name: str) -> str:
    stem, dot, _ext = name.rpartition(".")
    return stem.strip() if dot and stem.strip() else name


def check_declaration(kind: str, content_type: str, size_bytes: int) -> None:
    """400 E_INVALID_REQUEST (kind, size ≤ 0) → 400 E_INVALID_CONTENT_TYPE → 413
    E_FILE_TOO_LARGE (100 MiB pdf, 50 MiB epub)."""
    if kind not in CONTENT_TYPES:
        raise InvalidRequest("kind must be pdf or epub")
    if size_bytes <= 0:
        raise InvalidRequest("size_bytes must be positive")
    media_type, _charset = filetypes.parse_content_type(content_type)
    if media_type != CONTENT_TYPES[kind]:
        raise NexusError(
            "E_INVALID_CONTENT_TYPE",
            f"content_type must be {CONTENT_TYPES[kind]} for a {kind}",
        )
    if size_bytes > SIZE_LIMITS[kind]:
        raise NexusError("E_FILE_TOO_LARGE", f"a {kind} may be at most {SIZE_LIMITS[kind]} bytes")


# One statement: the row lock of the upsert serialises a user's concurrent inits, and the
# guard sees the latest committed usage (ON CONFLICT works on the current row version).
_CHARGE = text(
    """
    INSERT INTO storage_usage AS u (user_id, bytes)
    SELECT :v, CAST(:n AS bigint) WHERE CAST(:n AS bigint) <= CAST(:quota AS bigint)
    ON CONFLICT (user_id) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes, updated_at = now()
        WHERE u.bytes + EXCLUDED.bytes <= CAST(:quota AS bigint)
    RETURNING bytes
    """
)


async def charge_storage(
    session: AsyncSession, viewer: uuid.UUID, size_bytes: int, *, quota_bytes: int
) -> int:
    """Add `size_bytes` to the viewer's storage usage (held until the caller commits);
    409 E_QUOTA_EXCEEDED when that would pass `quota_bytes`. Returns the new usage."""
    used = await session.scalar(_CHARGE, {"v": viewer, "n": size_bytes, "quota": quota_bytes})
    if used is None:
        current = await session.scalar(
            text("SELECT bytes FROM storage_usage WHERE user_id = :v"), {"v": viewer}
        )
        raise Conflict(
            "E_QUOTA_EXCEEDED",
            f"this upload ({size_bytes} bytes) would exceed your storage quota of "
            f"{quota_bytes} bytes ({current or 0} in use)",
            details={"quota_bytes": quota_bytes, "used_bytes": int(current or 0)},
        )
    return int(used)


async def init_upload(
    session: AsyncSession,
    viewer: uuid.UUID,
    default_library_id: uuid.UUID,
    *,
    kind: str,
    filename: str,
    content_type: str,
    size_bytes: int,
    signing_key: bytes,
    ttl_seconds: int,
    quota_bytes: int,
) -> UploadTicket:
    """Charge the declared size to the caller's quota, create the pending media, its file
    row and upload row, and the caller's intrinsic; return the upload token (valid
    `ttl_seconds`). Errors: see `check_declaration`, then 409 E_QUOTA_EXCEEDED."""
    check_declaration(kind, content_type, size_bytes)
    name = clean_filename(filename)
    await charge_storage(session, viewer, size_bytes, quota_bytes=quota_bytes)
    media_id = await session.scalar(
        text(
            "INSERT INTO media (kind, title, created_by_user_id) VALUES (:k, :t, :v) RETURNING id"
        ),
        {"k": kind, "t": title_from_filename(name), "v": viewer},
    )
    assert isinstance(media_id, uuid.UUID)
    token = signing.sign(signing_key, "upload", media_id, ttl_seconds=ttl_seconds)
    await session.execute(
        text(
            "INSERT INTO media_file (media_id, storage_path, content_type, size_bytes, "
            "charged_user_id) VALUES (:m, :p, :c, :n, :v)"
        ),
        {
            "m": media_id,
            "p": media_key(media_id),
            "c": CONTENT_TYPES[kind],
            "n": size_bytes,
            "v": viewer,
        },
    )
    await session.execute(
        text("INSERT INTO media_uploads (media_id, nonce, filename) VALUES (:m, :n, :f)"),
        {"m": media_id, "n": token.nonce, "f": name},
    )
    await closure.add_to_default(session, default_library_id, media_id)
    return UploadTicket(media_id, token)


async def claim_upload(session: AsyncSession, media_id: uuid.UUID, nonce: str) -> UploadTarget:
    """Hold the upload token of `media_id` (signed with `nonce`) for one upload.

    403 E_FORBIDDEN when the token is spent (a completed upload), held by an upload in
    progress, replaced, or its media is gone. Commit the claim before streaming."""
    row = (
        await session.execute(
            text(
                """
                UPDATE media_uploads u SET claimed_at = now()
                FROM media_file f, media m
                WHERE u.media_id = :m AND u.nonce = :n AND u.uploaded_at IS NULL
                  AND (u.claimed_at IS NULL OR u.claimed_at < now() - CAST(:stale AS interval))
                  AND f.media_id = u.media_id AND m.id = u.media_id
                RETURNING m.kind, f.storage_path, f.size_bytes
                """
            ),
            {"m": media_id, "n": nonce, "stale": STALE_CLAIM},
        )
    ).one_or_none()
    if row is None:
        raise signing.forbidden()
    return UploadTarget(media_id, str(row.kind), row.storage_path, int(row.size_bytes))


async def release_upload(session: AsyncSession, media_id: uuid.UUID, nonce: str) -> None:
    """Give a held token back after a failed upload (the same URL may be retried)."""
    await session.execute(
        text(
            "UPDATE media_uploads SET claimed_at = NULL "
            "WHERE media_id = :m AND nonce = :n AND uploaded_at IS NULL"
        ),
        {"m": media_id, "n": nonce},
    )


async def complete_upload(session: AsyncSession, media_id: uuid.UUID, nonce: str) -> bool:
    """Spend the token: the file is stored. False when the media vanished meanwhile."""
    done = await session.scalar(
        text(
            "UPDATE media_uploads SET uploaded_at = now() "
            "WHERE media_id = :m AND nonce = :n AND uploaded_at IS NULL RETURNING media_id"
        ),
        {"m": media_id, "n": nonce},
    )
    return done is not None


def _inspect(path: Path) -> tuple[int, str, bytes]:
    """(size, sha256 hex, first bytes) of a stored file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    with path.open("rb") as fh:
        while chunk := fh.read(MIB):
            if size < _HEAD_BYTES:
                head += chunk[: _HEAD_BYTES - size]
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest(), head


async def _locked_upload(session: AsyncSession, media_id: uuid.UUID) -> Any:
    return (
        await session.execute(
            text(
                """
                SELECT m.id, m.kind, m.created_by_user_id, m.processing_status,
                       f.storage_path, f.size_bytes, u.uploaded_at,
                       EXISTS (SELECT 1 FROM ingest_jobs j WHERE j.media_id = m.id) AS queued
                FROM media m
                LEFT JOIN media_file f ON f.media_id = m.id
                LEFT JOIN media_uploads u ON u.media_id = m.id
                WHERE m.id = :m
                FOR UPDATE OF m
                """
            ),
            {"m": media_id},
        )
    ).one_or_none()


def _current(media_id: uuid.UUID, status: str, *, duplicate: bool) -> IngestOutcome:
    active = status in (ProcessingStatus.PENDING, ProcessingStatus.EXTRACTING)
    return IngestOutcome(media_id, duplicate, status, 202 if active and not duplicate else 200)


async def _reject(session: AsyncSession, media: Any, code: str, message: str) -> IngestOutcome:
    """Mark the media failed at the upload stage and forget its file (deleted after commit)."""
    await session.execute(
        text(
            "UPDATE media SET processing_status = 'failed', failure_stage = 'upload', "
            "last_error_code = :c, last_error_message = :msg, failed_at = now(), "
            "updated_at = now() WHERE id = :m AND processing_status = 'pending'"
        ),
        {"m": media.id, "c": code, "msg": message[:1000]},
    )
    await session.execute(text("DELETE FROM media_file WHERE media_id = :m"), {"m": media.id})
    return IngestOutcome(
        media.id,
        False,
        ProcessingStatus.FAILED.value,
        400,
        delete_key=media.storage_path,
        rejection=NexusError(code, message),
    )


async def ingest_upload(
    session: AsyncSession,
    viewer: uuid.UUID,
    default_library_id: uuid.UUID,
    media_id: uuid.UUID,
    storage: LocalStorage,
    topics: Topics,
    *,
    request_id: str | None,
    correlation_id: str | None,
) -> IngestOutcome:
    """Queue extraction of an uploaded file.

    Order: merges followed → 404 E_MEDIA_NOT_FOUND unless readable → 403 E_FORBIDDEN
    unless the viewer created it → already queued/processed: its current status (200, or
    202 while pending/extracting; idempotent) → 400 E_STORAGE_MISSING unless uploaded →
    400 E_INVALID_REQUEST when the stored size differs from the declared one → wrong magic
    bytes: the media becomes `failed` (stage upload) and the outcome carries 400
    E_INVALID_FILE_TYPE → same sha256 as another media of this user: that one wins
    (attached to the caller's default library, this one merged into it and deleted; 200
    duplicate) → else file_sha256 set and the ingest job enqueued (202 pending).
    """
    resolved = await media_service.readable_media_id(session, viewer, media_id)
    media = await _locked_upload(session, resolved)
    if media is None:
        raise media_service.media_not_found()
    if media.created_by_user_id != viewer:
        raise Forbidden("only the media's creator may ingest it")
    status = str(media.processing_status)
    if resolved != media_id or media.queued or status != ProcessingStatus.PENDING:
        return _current(resolved, status, duplicate=resolved != media_id)
    if media.storage_path is None or media.uploaded_at is None:
        raise NexusError("E_STORAGE_MISSING", "the file has not been uploaded")
    path = storage.path(media.storage_path)
    try:
        size, sha256, head = await asyncio.to_thread(_inspect, path)
    except FileNotFoundError:
        raise NexusError("E_STORAGE_MISSING", "the uploaded file is missing") from None
    if size != media.size_bytes:
        raise InvalidRequest(f"the stored file has {size} bytes, {media.size_bytes} declared")
    if not filetypes.matches(media.kind, head):
        return await _reject(
            session, media, "E_INVALID_FILE_TYPE", f"the uploaded file is not a {media.kind}"
        )
    # The type check passed: from now on the file may be downloaded and the media shared.
    await session.execute(
        text("UPDATE media_uploads SET verified_at = now() WHERE media_id = :m"), {"m": media.id}
    )
    return await _dedupe_or_enqueue(
        session,
        viewer,
        default_library_id,
        media,
        sha256,
        topics,
        request_id=request_id,
        correlation_id=correlation_id,
    )


async def _dedupe_or_enqueue(
    session: AsyncSession,
    viewer: uuid.UUID,
    default_library_id: uuid.UUID,
    media: Any,
    sha256: str,
    topics: Topics,
    *,
    request_id: str | None,
    correlation_id: str | None,
) -> IngestOutcome:
    # Two uploads of the same bytes ingested at once: the lock makes the second see the
    # first's hash (uix_media_file_sha256 would otherwise fail one of them).
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"media_sha256:{viewer}:{media.kind}:{sha256}"},
    )
    winner = (
        await session.execute(
            text(
                "SELECT id, processing_status FROM media WHERE created_by_user_id = :v "
                "AND kind = :k AND file_sha256 = :h AND id <> :m FOR UPDATE"
            ),
            {"v": viewer, "k": media.kind, "h": sha256, "m": media.id},
        )
    ).one_or_none()
    if winner is not None:
        await ingest_service.merge_into(session, media.id, winner.id)
        await closure.add_to_default(session, default_library_id, winner.id)
        return IngestOutcome(
            winner.id, True, str(winner.processing_status), 200, delete_key=media.storage_path
        )
    await session.execute(
        text("UPDATE media SET file_sha256 = :h, updated_at = now() WHERE id = :m"),
        {"h": sha256, "m": media.id},
    )
    await jobs.enqueue(
        session,
        media.id,
        topics,
        actor=f"user:{viewer}",
        request_id=request_id,
        correlation_id=correlation_id,
    )
    return IngestOutcome(media.id, False, ProcessingStatus.PENDING.value, 202)


# An uploaded file is served only once its type check passed (`verified_at`, set at
# ingest); a fetched file (no upload row) was checked by the fetcher.
_FILE = """
    SELECT f.media_id, f.storage_path, f.content_type, m.kind, m.title, u.filename
    FROM media_file f
    JOIN media m ON m.id = f.media_id
    LEFT JOIN media_uploads u ON u.media_id = f.media_id
    WHERE f.media_id = :m AND (u.media_id IS NULL OR u.verified_at IS NOT NULL)
"""


def _stored_file(row: Any) -> StoredFile:
    ext = EXTENSIONS.get(str(row.kind), "")
    name = row.filename or f"{(row.title or 'document').strip()[:200] or 'document'}{ext}"
    return StoredFile(row.media_id, row.storage_path, row.content_type, name)


async def downloadable_file(session: AsyncSession, media_id: uuid.UUID) -> StoredFile | None:
    """The stored file of `media_id` (None when there is none, or it is an upload whose type
    check has not passed yet). No access check: the caller holds a signed download token."""
    row = (await session.execute(text(_FILE), {"m": media_id})).one_or_none()
    return _stored_file(row) if row is not None else None


async def readable_file(
    session: AsyncSession, viewer: uuid.UUID, media_id: uuid.UUID
) -> StoredFile:
    """Order: merges followed → 404 E_MEDIA_NOT_FOUND unless readable → 400
    E_STORAGE_MISSING unless the media has a stored file (an upload: uploaded and past its
    type check at ingest)."""
    resolved = await media_service.readable_media_id(session, viewer, media_id)
    found = await downloadable_file(session, resolved)
    if found is None:
        raise NexusError("E_STORAGE_MISSING", "this media has no stored file")
    return found
