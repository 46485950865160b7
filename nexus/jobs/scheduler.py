"""Re-drive work from Postgres: due pending jobs get a message; expired leases are rescued.

Kafka only carries wake-up calls, so losing every message must never lose work. The
leader's scheduler writes an outbox message for each pending job that is due and has had
no message since it became due (a retry or rescue sets a later `next_attempt_at`), or whose
last message is older than `redeliver_after_seconds` (lost with a broker, say). Duplicates
are harmless: the claim is guarded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, literal, or_, select, text, tuple_, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.jobs import outbox
from nexus.jobs.machine import JobType
from nexus.jobs.states import JobStatus
from nexus.messaging.messages import Message

MessageFactory = Callable[[Any], Message]


async def dispatch_due(
    session: AsyncSession,
    job: JobType,
    *,
    topic: str,
    make_message: MessageFactory,
    redeliver_after_seconds: float,
    limit: int = 500,
) -> int:
    """Write one outbox message per due, undispatched pending job; returns how many."""
    t = job.table
    keys = [t.c[name] for name in job.key_columns]
    due = (
        select(*keys)
        .where(
            t.c.status == JobStatus.PENDING.value,
            t.c.next_attempt_at <= func.now(),
            or_(
                t.c.dispatched_at.is_(None),
                t.c.dispatched_at < t.c.next_attempt_at,
                t.c.dispatched_at
                < func.now()
                - text("make_interval(secs => :redeliver)").bindparams(
                    redeliver=redeliver_after_seconds
                ),
            ),
        )
        .order_by(t.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = (
        await session.execute(
            update(t)
            .where(tuple_(*keys).in_(due))
            .values(dispatched_at=func.now())
            .returning(*keys, t.c.attempts, t.c.request_id, t.c.correlation_id)
        )
    ).all()
    for row in rows:
        message = make_message(row)
        await outbox.enqueue(session, topic, getattr(message, "key", None), message)
    return len(rows)


async def backlog(session: AsyncSession, job: JobType) -> dict[str, float | int | None]:
    """Pending backlog: count, p95 and oldest age in seconds (age since due)."""
    t = job.table
    age = func.extract("epoch", func.now() - t.c.next_attempt_at)
    row = (
        await session.execute(
            select(
                func.count(),
                func.percentile_cont(0.95).within_group(age),
                func.max(age),
            ).where(t.c.status == JobStatus.PENDING.value, t.c.next_attempt_at <= func.now())
        )
    ).one()
    return {
        "pending_count": int(row[0]),
        "pending_age_p95_seconds": float(row[1]) if row[1] is not None else None,
        "oldest_pending_age_seconds": float(row[2]) if row[2] is not None else None,
    }


async def counts(session: AsyncSession, jobs: Sequence[JobType]) -> dict[tuple[str, str], int]:
    """Jobs by (job type, status) for every type in `jobs`, in one statement (scrapes call
    it; each table's status index answers it)."""
    if not jobs:
        return {}
    parts = [
        select(literal(job.name).label("job_type"), job.table.c.status, func.count()).group_by(
            job.table.c.status
        )
        for job in jobs
    ]
    rows = (await session.execute(union_all(*parts))).all()
    return {(str(job_type), str(status)): int(n) for job_type, status, n in rows}
