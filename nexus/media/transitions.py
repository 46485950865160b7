"""Every write of `media.processing_status`, as transitions of `MEDIA_STATES`.

The hot path's moves ride inside the ingest job's own claim and completion statements
(`start_cte`, `ready_cte`: no round trip of their own, nothing written when the job's
transition misses); the others are one guarded statement each (`apply`), and a miss is
either an explicit no-op named here or `TransitionMissed`.

Binds: the riders see the media id as `:key_media_id` (the ingest job's key); the error
fields are `:error_code`, `:error_message`, `:failure_stage`.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db import transitions
from nexus.db.transitions import Apply, Missed, Moved, Transition
from nexus.media.states import ACTIVE, MEDIA_STATES, READABLE, FailureStage, ProcessingStatus

P = ProcessingStatus
START = Transition(MEDIA_STATES, frozenset({P.PENDING, P.EXTRACTING}), P.EXTRACTING)
READY = Transition(MEDIA_STATES, frozenset({P.EXTRACTING}), P.READY_FOR_READING)
RETRY_LATER = Transition(MEDIA_STATES, frozenset({P.EXTRACTING}), P.PENDING)
FAIL = Transition(MEDIA_STATES, ACTIVE, P.FAILED)
REJECT_UPLOAD = Transition(MEDIA_STATES, frozenset({P.PENDING}), P.FAILED)
RETRY = Transition(MEDIA_STATES, frozenset({P.FAILED}), P.PENDING)

_MEDIA_OF_JOB = "id = :key_media_id"
_ERROR = "last_error_code = :error_code, last_error_message = :error_message"
_FAILED = f"failure_stage = :failure_stage, {_ERROR}, failed_at = now(), updated_at = now()"


def start_cte(name: str, *, returning: str) -> str:
    """START as a rider of the ingest claim (`moved` = the claimed job): the media becomes
    extracting, counting the job's attempt; no row when it is not waiting for ingestion."""
    return START.cte(
        name,
        where=_MEDIA_OF_JOB,
        set_also="processing_started_at = now(), "
        "processing_attempts = (SELECT attempts FROM moved), updated_at = now()",
        guard="EXISTS (SELECT 1 FROM moved)",
        returning=returning,
    )


def ready_cte(name: str, *, set_also: str) -> str:
    """READY as a rider of the ingest completion: readable, error fields cleared."""
    return READY.cte(
        name,
        where=_MEDIA_OF_JOB,
        set_also=f"{set_also}, processing_completed_at = now(), failure_stage = NULL, "
        "last_error_code = NULL, last_error_message = NULL, failed_at = NULL, updated_at = now()",
        guard="EXISTS (SELECT 1 FROM moved)",
        returning="id",
    )


def still_extracting() -> str:
    """A condition for the job's completion: READY would match."""
    return f"EXISTS (SELECT 1 FROM media WHERE {_MEDIA_OF_JOB} AND {READY.guard()})"


async def record_retry(
    session: AsyncSession, media_id: uuid.UUID, *, code: str, message: str
) -> Moved | Missed[ProcessingStatus]:
    """RETRY_LATER with the attempt's error. No-op: the media is readable already (a
    requeued job of a readable media failed on the way to its empty completion)."""
    change = Apply(
        RETRY_LATER,
        set_also=f"{_ERROR}, updated_at = now()",
        params={"error_code": code, "error_message": message[:1000]},
    )
    return await transitions.apply(session, change, {"id": media_id}, noop_if=READABLE)


async def record_failure(
    session: AsyncSession, media_id: uuid.UUID, *, stage: FailureStage, code: str, message: str
) -> Moved | Missed[ProcessingStatus]:
    """FAIL at `stage`. No-op: readable already (as in `record_retry`) or failed already."""
    change = Apply(FAIL, set_also=_FAILED, params=_failure(stage, code, message))
    return await transitions.apply(session, change, {"id": media_id}, noop_if=READABLE | {P.FAILED})


async def reject_upload(
    session: AsyncSession, media_id: uuid.UUID, *, code: str, message: str
) -> None:
    """REJECT_UPLOAD: the caller holds the pending media locked; any miss raises."""
    params = _failure(FailureStage.UPLOAD, code, message)
    await transitions.apply(
        session, Apply(REJECT_UPLOAD, set_also=_FAILED, params=params), {"id": media_id}
    )


async def reset_for_retry(session: AsyncSession, media_id: uuid.UUID) -> None:
    """RETRY with every error and timing field cleared; raises `TransitionMissed` when the
    media is not failed (the caller holds it locked and checked, so it means a bug)."""
    change = Apply(
        RETRY,
        set_also="failure_stage = NULL, last_error_code = NULL, last_error_message = NULL, "
        "failed_at = NULL, processing_started_at = NULL, processing_completed_at = NULL, "
        "updated_at = now()",
    )
    await transitions.apply(session, change, {"id": media_id})


def _failure(stage: FailureStage, code: str, message: str) -> dict[str, str]:
    return {"failure_stage": stage.value, "error_code": code, "error_message": message[:1000]}
