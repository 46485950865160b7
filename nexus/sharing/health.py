"""Backfill backlog health (SPEC §7 guardrails), computed from the job rows alone.

`degraded` when more than `pending_count` jobs are pending and due, or their p95 wait
(age since due) exceeds `p95_seconds`. `alerting` only when the degradation has been
sustained for `alert_after_seconds`, judged from the rows themselves rather than from
remembered state (no extra table, no timer, the same answer from every process):

- count rule: more than the threshold of jobs have been pending and due for at least the
  window. A pending row's `next_attempt_at` only moves forward (claim, retry, rescue and
  requeue all rewrite it), so each of those jobs was pending and due during the whole
  window: the count was above the threshold throughout. Exact lower bound.
- age rule: the p95 wait is above its threshold now and the oldest job has been waiting
  for at least threshold + window, i.e. the age breach is not a momentary spike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.config import Settings
from nexus.db.types import Record
from nexus.jobs.machine import JobType
from nexus.jobs.scheduler import backlog
from nexus.jobs.states import JobStatus
from nexus.sharing.backfill import JOB


@dataclass(frozen=True)
class Thresholds:
    pending_count: int = 500
    p95_seconds: float = 900.0
    alert_after_seconds: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            pending_count=settings.backlog_degraded_pending_count,
            p95_seconds=settings.backlog_degraded_p95_seconds,
            alert_after_seconds=settings.backlog_alert_after_seconds,
        )


class BacklogHealth(Record):
    pending_count: int
    pending_age_p95_seconds: float | None
    oldest_pending_age_seconds: float | None
    degraded: bool
    alerting: bool
    sustained_pending_count: int

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


def evaluate(
    numbers: dict[str, float | int | None], sustained_count: int, th: Thresholds
) -> BacklogHealth:
    """Pure rule over the measured numbers (see the module docstring)."""
    count = int(numbers["pending_count"] or 0)
    p95 = numbers["pending_age_p95_seconds"]
    oldest = numbers["oldest_pending_age_seconds"]
    age_breach = p95 is not None and float(p95) > th.p95_seconds
    degraded = count > th.pending_count or age_breach
    age_sustained = (
        age_breach
        and oldest is not None
        and float(oldest) >= th.p95_seconds + th.alert_after_seconds
    )
    alerting = degraded and (sustained_count > th.pending_count or age_sustained)
    return BacklogHealth(
        pending_count=count,
        pending_age_p95_seconds=None if p95 is None else float(p95),
        oldest_pending_age_seconds=None if oldest is None else float(oldest),
        degraded=degraded,
        alerting=alerting,
        sustained_pending_count=sustained_count,
    )


async def backlog_health(
    session: AsyncSession, thresholds: Thresholds, job: JobType = JOB
) -> BacklogHealth:
    """Health of `job`'s pending backlog now (two index-backed aggregate queries)."""
    numbers = await backlog(session, job)
    t = job.table
    sustained = await session.scalar(
        select(func.count()).where(
            t.c.status == JobStatus.PENDING.value,
            t.c.next_attempt_at
            <= func.now()
            - text("make_interval(secs => :window)").bindparams(
                window=thresholds.alert_after_seconds
            ),
        )
    )
    return evaluate(numbers, int(sustained or 0), thresholds)
