"""`POST /media/{id}/retry` and its operator twin (SPEC §8): reset a failed media per its
failure stage and re-enqueue its ingest job.

One transaction (the caller's): the media row is locked `FOR UPDATE`, the reset is the
guarded transition `nexus.media.transitions.RETRY` (failed → pending), and the job reset (pending,
attempts 0) and its outbox message are written with it. A retry that finds the media not
failed (already retried, still running, ready) is 409 E_MEDIA_NOT_RETRYABLE, so two
concurrent retries enqueue exactly once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db.types import fields_of
from nexus.errors import Conflict, Forbidden, NexusError
from nexus.ingest import jobs
from nexus.media import service as media_service
from nexus.media import transitions as media_transitions
from nexus.media.states import FailureStage, ProcessingStatus
from nexus.messaging.topics import Topics
from nexus.uploads.storage import LocalStorage


@dataclass(frozen=True)
class RetryResult:
    media_id: uuid.UUID
    processing_status: str
    failure_stage: str | None  # the stage that had failed
    job_status: str | None  # the ingest job's status after the reset ("pending")


def not_retryable(status: str) -> Conflict:
    return Conflict("E_MEDIA_NOT_RETRYABLE", f"only a failed media can be retried (it is {status})")


@dataclass(frozen=True)
class _Retried:
    """A media to retry, locked, with what the retry checks."""

    id: uuid.UUID
    processing_status: str
    failure_stage: str | None
    created_by_user_id: uuid.UUID | None
    storage_path: str | None


async def _locked_media(session: AsyncSession, media_id: uuid.UUID) -> _Retried | None:
    row = (
        await session.execute(
            text(
                "SELECT m.id, m.processing_status, m.failure_stage, m.created_by_user_id, "
                "(SELECT f.storage_path FROM media_file f WHERE f.media_id = m.id) "
                "AS storage_path FROM media m WHERE m.id = :media_id FOR UPDATE OF m"
            ),
            {"media_id": media_id},
        )
    ).one_or_none()
    return None if row is None else _Retried(**fields_of(row))


async def _is_library_admin(session: AsyncSession, viewer: uuid.UUID, media_id: uuid.UUID) -> bool:
    """True when the viewer administers a library containing the media: a shared library
    holding it, or their default library holding it intrinsically (they saved it). A row
    in a default library that only mirrors a shared library (an edge) does not count: every
    member of a shared library has one, and members may not retry."""
    found = await session.scalar(
        text(
            "SELECT 1 FROM library_media lm JOIN libraries l ON l.id = lm.library_id "
            "JOIN memberships mb "
            "ON mb.library_id = lm.library_id AND mb.user_id = :viewer AND mb.role = 'admin' "
            "WHERE lm.media_id = :media_id AND (NOT l.is_default OR EXISTS ("
            "SELECT 1 FROM default_library_intrinsics i "
            "WHERE i.default_library_id = l.id AND i.media_id = :media_id)) LIMIT 1"
        ),
        {"viewer": viewer, "media_id": media_id},
    )
    return found is not None


async def _check_file(media: _Retried, storage: LocalStorage) -> None:
    if media.storage_path is None or not await storage.exists(media.storage_path):
        raise NexusError("E_STORAGE_MISSING", "the uploaded file is missing; upload it again")


async def retry_media(
    session: AsyncSession,
    media_id: uuid.UUID,
    topics: Topics,
    storage: LocalStorage,
    *,
    viewer: uuid.UUID | None,
    actor: str,
    request_id: str | None,
    correlation_id: str | None,
) -> RetryResult:
    """Reset a failed media to `pending` and re-enqueue it.

    Order: merges followed → 404 E_MEDIA_NOT_FOUND unless readable (with a `viewer`;
    operators pass None and only get 404 for a missing media) → 403 E_FORBIDDEN unless the
    viewer created it or administers a library containing it → 409 E_MEDIA_NOT_RETRYABLE
    unless `failed` → stage `upload`: 400 E_STORAGE_MISSING unless the file exists →
    reset (error fields cleared) + job pending with attempts 0 + outbox message.
    """
    if viewer is not None:
        resolved = await media_service.readable_media_id(session, viewer, media_id)
    else:
        resolved = await media_service.resolve_merged_id(session, media_id)
    media = await _locked_media(session, resolved)
    if media is None:
        raise media_service.media_not_found()
    if (
        viewer is not None
        and media.created_by_user_id != viewer
        and not await _is_library_admin(session, viewer, resolved)
    ):
        raise Forbidden("only the media's creator or a library admin may retry it")
    status = str(media.processing_status)
    if status != ProcessingStatus.FAILED:
        raise not_retryable(status)
    stage = None if media.failure_stage is None else str(media.failure_stage)
    if stage == FailureStage.UPLOAD:
        await _check_file(media, storage)
    # Under the row lock, with the status checked: a miss raises TransitionMissed.
    await media_transitions.reset_for_retry(session, resolved)
    job_status = await jobs.enqueue(
        session,
        resolved,
        topics,
        actor=actor,
        request_id=request_id,
        correlation_id=correlation_id,
    )
    return RetryResult(resolved, ProcessingStatus.PENDING.value, stage, job_status)
