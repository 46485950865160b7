"""Operator cancel of a media's ingest job (SPEC §10 "Cancel and retention").

One transaction (the caller's): the job row is locked and moved to `cancelled` (the
machine's CANCEL, its ledger row), then the media is failed with `E_CANCELLED` through the
media helper (`record_failure`, the lock order of the ingest worker: job, then media) and
a `media.failed` event is written. `failure_stage` follows the media's current stage:
`embed` while embedding, else `extract` (pending or extracting: the ingest job extracts).
A media readable already (a requeued job of a readable media) or failed already is left
as it is and nothing is announced. The media's retry (`POST /media/{id}/retry`) brings
the job back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Unpack

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.ingest import jobs
from nexus.jobs import outbox
from nexus.jobs.cancel import CancelRequest, cancel_job, cancel_message
from nexus.jobs.machine import CANCELLED_CODE
from nexus.media import transitions as media_transitions
from nexus.media.states import FailureStage, ProcessingStatus
from nexus.messaging.messages import DomainEvent
from nexus.messaging.topics import Topics


@dataclass(frozen=True)
class IngestCancelResult:
    media_id: uuid.UUID
    job_status: str  # "cancelled"
    from_status: str  # the job's status before
    lease_owner: str | None  # the worker fenced out, when the job was running
    processing_status: str | None  # the media's status afterwards (None: media gone)
    failure_stage: str | None


def _stage(status: str) -> FailureStage:
    return FailureStage.EMBED if status == ProcessingStatus.EMBEDDING else FailureStage.EXTRACT


async def cancel_ingest(
    session: AsyncSession,
    media_id: uuid.UUID,
    topics: Topics,
    **request: Unpack[CancelRequest],
) -> IngestCancelResult:
    """Cancel the media's ingest job. Missing job → NotFound (E_NOT_FOUND); finished →
    Conflict (E_JOB_NOT_CANCELLABLE)."""
    done = await cancel_job(
        session,
        jobs.JOB,
        {"media_id": media_id},
        not_found="no ingest job for this media",
        **request,
    )
    status = await session.scalar(
        text("SELECT processing_status FROM media WHERE id = :id FOR UPDATE"), {"id": media_id}
    )
    stage: str | None = None
    if status is not None and ProcessingStatus(status) not in (
        ProcessingStatus.FAILED,
        ProcessingStatus.READY_FOR_READING,
        ProcessingStatus.READY,
    ):
        stage = _stage(status).value
        await media_transitions.record_failure(
            session,
            media_id,
            stage=FailureStage(stage),
            code=CANCELLED_CODE,
            message=cancel_message(request["requested_by"], request["reason"]),
        )
        status = ProcessingStatus.FAILED.value
        event = DomainEvent(
            event="media.failed",
            entity_id=str(media_id),
            data={"error_code": CANCELLED_CODE},
            request_id=request["request_id"],
            correlation_id=request["correlation_id"],
        )
        await outbox.enqueue(session, topics.events, event.key, event)
    return IngestCancelResult(
        media_id=media_id,
        job_status=done.row.status,
        from_status=done.from_status,
        lease_owner=done.lease_owner,
        processing_status=None if status is None else str(status),
        failure_stage=stage,
    )
