"""Read-only numbers and histories of jobs for the SREs' views (SPEC §10), any job type.

Every query here is bounded and index-backed, because monitoring pages are refreshed
every few seconds by whoever has them open:
- `activity`: one aggregate over the last hour of `job_events` (range scan of
  `ix_job_events_at`);
- `recent_failures`: per job type, the newest failed rows (backward scan of
  `ix_<table>_updated_at`, stopping after `limit` failed rows);
- `timeline`: one job's ledger rows (`ix_job_events_job_type_job_key`) and its outbox
  messages (`ix_outbox_key`), each capped at `TIMELINE_CAP`.
Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.jobs.ledger import json_key
from nexus.jobs.machine import JobType
from nexus.jobs.states import JobStatus

TIMELINE_CAP = 1000  # rows per source; a job with more history is an anomaly anyway
RESCUE_CODE = "E_LEASE_EXPIRED"


@dataclass(frozen=True)
class JobActivity:
    """What happened to one job type's jobs lately, from the ledger.

    A retry is a failed attempt sent back to `pending` (running → pending with an error
    other than the rescue's); a rescue is the leader's return of an expired lease
    (running → pending or failed with `E_LEASE_EXPIRED`). A drained worker's release
    (no error) is neither."""

    retries_last_hour: int = 0
    rescues_last_hour: int = 0
    failed_last_hour: int = 0
    completed_last_minute: int = 0

    @property
    def completed_per_second(self) -> float:
        return self.completed_last_minute / 60.0


_ACTIVITY = text(
    """
    SELECT job_type,
        count(*) FILTER (WHERE from_status = 'running' AND to_status = 'pending'
                         AND error_code IS NOT NULL AND error_code <> :rescue) AS retries,
        count(*) FILTER (WHERE from_status = 'running' AND error_code = :rescue) AS rescues,
        count(*) FILTER (WHERE to_status = 'failed') AS failed,
        count(*) FILTER (WHERE to_status = 'completed'
                         AND at > now() - interval '1 minute') AS completed_last_minute
    FROM job_events
    WHERE at > now() - interval '1 hour'
    GROUP BY job_type
    """
)


async def activity(session: AsyncSession) -> dict[str, JobActivity]:
    """Per job type (only those with events in the last hour): see `JobActivity`."""
    rows = await session.execute(_ACTIVITY, {"rescue": RESCUE_CODE})
    return {
        r.job_type: JobActivity(
            retries_last_hour=int(r.retries),
            rescues_last_hour=int(r.rescues),
            failed_last_hour=int(r.failed),
            completed_last_minute=int(r.completed_last_minute),
        )
        for r in rows
    }


@dataclass(frozen=True)
class FailedJob:
    job_type: str
    key: dict[str, str]
    attempts: int
    last_error_code: str | None
    last_error_message: str | None
    finished_at: datetime | None
    correlation_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_type": self.job_type,
            "key": self.key,
            "attempts": self.attempts,
            "last_error_code": self.last_error_code,
            "last_error_message": self.last_error_message,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "correlation_id": self.correlation_id,
        }


async def recent_failures(
    session: AsyncSession, jobs: Sequence[JobType], *, limit: int = 20
) -> list[FailedJob]:
    """The `limit` most recently failed jobs (status `failed` now) over `jobs`, newest
    first; each with its key (as strings) and the error of its last attempt."""
    found: list[FailedJob] = []
    for job in jobs:
        t = job.table
        rows = await session.execute(
            select(
                *(t.c[name] for name in job.key_columns),
                t.c.attempts,
                t.c.last_error_code,
                t.c.last_error_message,
                t.c.finished_at,
                t.c.correlation_id,
            )
            .where(t.c.status == JobStatus.FAILED.value)
            .order_by(t.c.updated_at.desc())
            .limit(limit)
        )
        for r in rows:
            found.append(
                FailedJob(
                    job_type=job.name,
                    key=json_key(job.key_of(r)),
                    attempts=int(r.attempts),
                    last_error_code=r.last_error_code,
                    last_error_message=r.last_error_message,
                    finished_at=r.finished_at,
                    correlation_id=r.correlation_id,
                )
            )
    found.sort(key=lambda f: f.finished_at.timestamp() if f.finished_at else 0.0, reverse=True)
    return found[:limit]


async def get_job(session: AsyncSession, job: JobType, key: Mapping[str, Any]) -> Any | None:
    """The job row now, or None."""
    return (await session.execute(select(job.table).where(job.where_key(key)))).one_or_none()


_JOB_EVENTS = text(
    "SELECT id, at, from_status, to_status, attempt, actor, error_code, error_message, "
    "request_id, correlation_id FROM job_events "
    "WHERE job_type = :job_type AND job_key = CAST(:job_key AS jsonb) ORDER BY at, id LIMIT :cap"
)
# Messages are found by their Kafka key first (indexed). A job whose key is one column is
# the only job its messages' key names (an ingest's media, an operation), so every row
# with that key is its own; a wider key (backfill: keyed by the default library) is
# matched on the payload: the request message carries the key at the top level, domain
# events in `data`.
_OUTBOX = text(
    "SELECT id, created_at AS at, topic, key, payload, published_at, publish_attempts, "
    "last_error, parked_at FROM outbox "
    "WHERE key = :message_key AND (:whole_key OR payload @> CAST(:job_key AS jsonb) "
    "OR payload -> 'data' @> CAST(:job_key AS jsonb)) ORDER BY created_at, id LIMIT :cap"
)


async def timeline(
    session: AsyncSession, job: JobType, key: Mapping[str, Any], *, message_key: str | None
) -> list[dict[str, Any]]:
    """One job's ledger rows (`kind` "job_event") and, when `message_key` (the Kafka key
    of its messages) is given, the outbox rows naming it (`kind` "outbox"), oldest first;
    at the same instant the transition comes before the message it caused."""
    params: dict[str, Any] = {
        "job_type": job.name,
        "job_key": json.dumps(json_key(key)),
        "cap": TIMELINE_CAP,
    }
    entries = [
        {"kind": "job_event", **row}
        for row in (await session.execute(_JOB_EVENTS, params)).mappings()
    ]
    if message_key is not None:
        params.update(message_key=message_key, whole_key=len(job.key_columns) == 1)
        entries += [
            {"kind": "outbox", **row} for row in (await session.execute(_OUTBOX, params)).mappings()
        ]
    order = {"job_event": 0, "outbox": 1}
    entries.sort(key=lambda e: (e["at"], order[e["kind"]], e["id"]))
    return entries
