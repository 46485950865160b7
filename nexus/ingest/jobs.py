"""The ingest job type (one row per media in `ingest_jobs`) on the shared job machinery."""

from __future__ import annotations

import uuid

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.ingest.models import IngestJob
from nexus.jobs import machine, outbox
from nexus.jobs.machine import DueJob, JobType
from nexus.messaging.messages import IngestRequested
from nexus.messaging.topics import Topics

_TABLE: Table = IngestJob.__table__  # type: ignore[assignment]
JOB = JobType(name="ingest", table=_TABLE, key_columns=("media_id",))


def request_message(row: DueJob) -> IngestRequested:
    return IngestRequested(
        media_id=row.key["media_id"],
        attempt=row.attempts,
        request_id=row.request_id,
        correlation_id=row.correlation_id,
    )


async def enqueue(
    session: AsyncSession,
    media_id: uuid.UUID,
    topics: Topics,
    *,
    actor: str,
    request_id: str | None,
    correlation_id: str | None,
) -> str | None:
    """Create or reset the media's ingest job to pending and write its message.

    Returns the job's status afterwards; a running job is left running (no message)."""
    reset = await machine.reset_to_pending(
        session,
        JOB,
        {"media_id": media_id},
        actor=actor,
        request_id=request_id,
        correlation_id=correlation_id,
        insert_values={},
    )
    if reset is None:
        return "running"
    msg = IngestRequested(
        media_id=media_id, attempt=0, request_id=request_id, correlation_id=correlation_id
    )
    await outbox.enqueue(session, topics.ingest, msg.key, msg)
    return "pending"
