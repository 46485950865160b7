"""Read-only numbers and histories of jobs for the SREs' views (SPEC §10), any job type.

Every query here is bounded and index-backed, because monitoring pages are refreshed
every few seconds by whoever has them open:
- `hour_activity`, `completed_last_minute`: one aggregate each over the last hour / minute
  of `job_events` (range scans of `ix_job_events_at`);
- `recent_failures`: per job type, the newest failed rows (backward range scan of
  `ix_<table>_status_next_attempt_at` within `failed`, `limit` rows);
- `timeline`: one job's ledger rows (`ix_job_events_job_type_job_key`) and its outbox
  messages (`ix_outbox_key`), each capped at `TIMELINE_CAP`.
Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
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
class HourActivity:
    """What went wrong with one job type's jobs in the last hour, from the ledger.

    A retry is a failed attempt sent back to `pending` (running → pending with an error
    other than the rescue's); a rescue is the leader's return of an expired lease
    (running → pending or failed with `E_LEASE_EXPIRED`). A drained worker's release
    (no error) is neither."""

    retries_last_hour: int = 0
    rescues_last_hour: int = 0
    failed_last_hour: int = 0


# Both windows are range scans of ix_job_events_at; the hour's is the big one, so callers
# refresh it less often than the minute's.
_HOUR = text(
    """
    SELECT job_type,
        count(*) FILTER (WHERE from_status = 'running' AND to_status = 'pending'
                         AND error_code IS NOT NULL AND error_code <> :rescue) AS retries,
        count(*) FILTER (WHERE from_status = 'running' AND error_code = :rescue) AS rescues,
        count(*) FILTER (WHERE to_status = 'failed') AS failed
    FROM job_events
    WHERE at > now() - interval '1 hour' AND error_code IS NOT NULL
    GROUP BY job_type
    """
)
_MINUTE = text(
    "SELECT job_type, count(*) AS completed FROM job_events "
    "WHERE at > now() - interval '1 minute' AND to_status = 'completed' GROUP BY job_type"
)


async def hour_activity(session: AsyncSession) -> dict[str, HourActivity]:
    """Per job type with such events in the last hour: see `HourActivity`."""
    rows = await session.execute(_HOUR, {"rescue": RESCUE_CODE})
    return {
        r.job_type: HourActivity(
            retries_last_hour=int(r.retries),
            rescues_last_hour=int(r.rescues),
            failed_last_hour=int(r.failed),
        )
        for r in rows
    }


async def completed_last_minute(session: AsyncSession) -> dict[str, int]:
    """Per job type with completions in the last minute: how many (any worker)."""
    rows = await session.execute(_MINUTE)
    return {r.job_type: int(r.completed) for r in rows}


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
        """Its fields, the time as ISO 8601 (the dashboard's JSON)."""
        fields = asdict(self)
        fields["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return fields


async def recent_failures(
    session: AsyncSession, jobs: Sequence[JobType], *, limit: int = 20
) -> list[FailedJob]:
    """The `limit` most recently failed jobs (status `failed` now) over `jobs`, newest
    first (by `finished_at`); each with its key (as strings) and the error of its last
    attempt."""
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
            # The (status, next_attempt_at) index: a failed job's last attempt was due at
            # next_attempt_at, so the newest failures come first without a scan of the
            # table (ordering by finished_at would read every failed row).
            .order_by(t.c.next_attempt_at.desc())
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
