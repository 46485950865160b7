"""The database half of `/nexus/stats` and the dashboard, cached.

The views are refreshed every few seconds by every open dashboard, so the database is
read at most once per `max_age_seconds` (NEXUS_METRICS_DB_CACHE_SECONDS) whatever the
number of viewers: concurrent requests share one refresh, and a refresh is a fixed set of
short queries (nexus/jobs/monitoring.py, scheduler.backlog, the outbox, dead-letter and
workers listings) bounded by a timeout. A failed refresh raises; the previous snapshot is
not served as if it were current.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agents.context import AgentContext
from agents.jobs import registry
from nexus.deadletters import service as deadletters
from nexus.jobs import machine, monitoring, relay, scheduler
from nexus.sharing.health import Thresholds, backlog_health
from nexus.workers.service import list_workers

REFRESH_TIMEOUT_SECONDS = 5.0
# The last hour's retries, rescues and failures scan an hour of the ledger: re-counted once
# per this many cache periods (60 s by default); the last minute's completions are
# re-counted with everything else.
HOUR_COUNTS_PERIODS = 12
FAILED_JOBS_SHOWN = 20


@dataclass
class Snapshot:
    """What the database said at `taken_at` (the cache's clock), in JSON-ready form."""

    taken_at: float
    outbox: dict[str, Any]
    jobs: dict[str, dict[str, int]]
    backlog: dict[str, dict[str, Any]]
    activity: dict[str, dict[str, Any]]
    backfill_backlog: dict[str, Any]
    workers: list[dict[str, Any]]
    dead_letters: dict[str, int]
    failed_jobs: list[dict[str, Any]] = field(default_factory=list)


def _activity(
    hour: monitoring.HourActivity, completed_last_minute: int, hour_age_seconds: float
) -> dict[str, Any]:
    return {
        "retries_last_hour": hour.retries_last_hour,
        "rescues_last_hour": hour.rescues_last_hour,
        "failed_last_hour": hour.failed_last_hour,
        "last_hour_age_seconds": round(hour_age_seconds, 3),
        "completed_last_minute": completed_last_minute,
        "completed_per_second": completed_last_minute / 60.0,
    }


async def _outbox(session: AsyncSession) -> dict[str, Any]:
    ob = await relay.stats(session)
    return {
        "unpublished": ob.unpublished,
        "parked": ob.parked,
        "oldest_unpublished_at": ob.oldest_unpublished_at.isoformat()
        if ob.oldest_unpublished_at
        else None,
        "oldest_age_seconds": ob.oldest_age_seconds,
    }


async def _workers(session: AsyncSession, ctx: AgentContext) -> list[dict[str, Any]]:
    found = await list_workers(session, heartbeat_seconds=ctx.settings.worker_heartbeat_seconds)
    return [
        {
            "id": w.id,
            "host": w.host,
            "pid": w.pid,
            "status": w.status,
            "started_at": w.started_at.isoformat(),
            "last_heartbeat_at": w.last_heartbeat_at.isoformat(),
            "assigned": list(w.assigned),
            "version": w.version,
            "alive": w.alive,
            "this_worker": w.id == ctx.worker_id,
        }
        for w in found
    ]


@dataclass(frozen=True)
class HourCounts:
    taken_at: float
    by_type: dict[str, monitoring.HourActivity]


async def take_snapshot(
    session: AsyncSession, ctx: AgentContext, hour: HourCounts, *, now: float
) -> Snapshot:
    jobs = [spec.job for spec in registry(ctx.topics)]
    completed = await monitoring.completed_last_minute(session)
    counts: dict[str, dict[str, int]] = {}
    backlog: dict[str, dict[str, Any]] = {}
    for job in jobs:
        counts[job.name] = await machine.counts_by_status(session, job)
        backlog[job.name] = await scheduler.backlog(session, job)
    health = await backlog_health(session, Thresholds.from_settings(ctx.settings))
    failed = await monitoring.recent_failures(session, jobs, limit=FAILED_JOBS_SHOWN)
    letters = await deadletters.totals(session)
    return Snapshot(
        taken_at=now,
        outbox=await _outbox(session),
        jobs=counts,
        backlog=backlog,
        activity={
            job.name: _activity(
                hour.by_type.get(job.name, monitoring.HourActivity()),
                completed.get(job.name, 0),
                now - hour.taken_at,
            )
            for job in jobs
        },
        backfill_backlog=health.as_dict(),
        workers=await _workers(session, ctx),
        dead_letters={
            "total": letters.total,
            "unreplayed": letters.unreplayed,
            "last_hour": letters.last_hour,
        },
        failed_jobs=[f.as_dict() for f in failed],
    )


class StatsCache:
    def __init__(
        self,
        ctx: AgentContext,
        *,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._hour: HourCounts | None = None
        self._lock = asyncio.Lock()

    def age_seconds(self, snap: Snapshot) -> float:
        return self._clock() - snap.taken_at

    async def _hour_counts(self, session: AsyncSession) -> HourCounts:
        hour = self._hour
        max_age = HOUR_COUNTS_PERIODS * self.max_age_seconds
        if hour is None or self._clock() - hour.taken_at >= max_age:
            hour = HourCounts(self._clock(), await monitoring.hour_activity(session))
            self._hour = hour
        return hour

    def _fresh(self) -> Snapshot | None:
        snap = self._snapshot
        if snap is not None and self.age_seconds(snap) < self.max_age_seconds:
            return snap
        return None

    async def get(self) -> Snapshot:
        """A snapshot at most `max_age_seconds` old; raises when the database fails."""
        snap = self._fresh()
        if snap is not None:
            return snap
        async with self._lock:
            snap = self._fresh()  # another request refreshed while this one waited
            if snap is not None:
                return snap
            async with asyncio.timeout(REFRESH_TIMEOUT_SECONDS), self.ctx.db() as session:
                hour = await self._hour_counts(session)
                self._snapshot = await take_snapshot(session, self.ctx, hour, now=self._clock())
            return self._snapshot
