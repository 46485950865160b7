"""Every job type the agents drive: its table, topic, message and retry schedule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nexus.config import Settings
from nexus.ingest import jobs as ingest_jobs
from nexus.jobs.machine import JobType
from nexus.messaging.messages import Message
from nexus.messaging.topics import Topics
from nexus.operations import jobs as operation_jobs
from nexus.sharing import backfill


@dataclass(frozen=True)
class JobSpec:
    job: JobType
    topic: str
    make_message: Callable[[Any], Message]
    delays: Callable[[Settings], Sequence[float]]


def _backfill_message(row: Any) -> Message:
    key = backfill.BackfillKey(row.default_library_id, row.source_library_id, row.user_id)
    return backfill.request_message(key, row.request_id, row.correlation_id)


def registry(topics: Topics) -> list[JobSpec]:
    return [
        JobSpec(
            job=backfill.JOB,
            topic=topics.backfill,
            make_message=_backfill_message,
            delays=lambda s: s.backfill_retry_delays,
        ),
        JobSpec(
            job=ingest_jobs.JOB,
            topic=topics.ingest,
            make_message=ingest_jobs.request_message,
            delays=lambda s: s.ingest_retry_delays,
        ),
        JobSpec(
            job=operation_jobs.JOB,
            topic=topics.operations,
            make_message=operation_jobs.request_message,
            delays=lambda s: s.operation_retry_delays,
        ),
    ]
