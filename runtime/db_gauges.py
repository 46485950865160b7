"""Prometheus gauges derived from the database, shared by API and agents: the backfill
backlog health (SPEC §7), the outbox, jobs by type and status, and the live workers
(SPEC §10).

A scrape must stay cheap whoever sends it, so the numbers are cached: a scrape refreshes
them only when the last refresh is older than `max_age_seconds`, concurrent scrapes share
one refresh, and a refresh is one short, bounded read. If the database does not answer in
time the gauges keep their last values and `nexus_db_gauges_up` drops to 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.ingest import jobs as ingest_jobs
from nexus.jobs import relay, scheduler
from nexus.jobs.machine import JobType
from nexus.jobs.relay import OutboxStats
from nexus.jobs.states import JobStatus
from nexus.operations import jobs as operation_jobs
from nexus.sharing import backfill
from nexus.sharing.health import BacklogHealth, Thresholds, backlog_health
from nexus.workers import service as workers

log = logging.getLogger(__name__)
REFRESH_TIMEOUT_SECONDS = 2.0
# Every job type, for `nexus_jobs{job_type,status}`.
JOB_TYPES: tuple[JobType, ...] = (backfill.JOB, ingest_jobs.JOB, operation_jobs.JOB)


class DatabaseGauges:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_age_seconds: float = 5.0,
        heartbeat_seconds: float = 5.0,
        job_types: Sequence[JobType] = JOB_TYPES,
    ) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=registry)

        self.max_age_seconds = max_age_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.job_types = tuple(job_types)
        self._refreshed_at: float | None = None
        self._lock = asyncio.Lock()
        self.pending = gauge("nexus_backfill_backlog_pending", "Pending and due backfill jobs.")
        self.p95 = gauge(
            "nexus_backfill_backlog_age_p95_seconds", "p95 wait of pending backfill jobs."
        )
        self.oldest = gauge(
            "nexus_backfill_backlog_oldest_age_seconds", "Oldest wait of a pending backfill job."
        )
        self.degraded = gauge("nexus_backfill_backlog_degraded", "1 when the backlog is degraded.")
        self.alerting = gauge(
            "nexus_backfill_backlog_alerting", "1 when degradation is sustained (alert)."
        )
        self.outbox_unpublished = gauge(
            "nexus_outbox_unpublished", "Outbox rows waiting to be published (parked apart)."
        )
        self.outbox_parked = gauge(
            "nexus_outbox_parked", "Outbox rows parked after too many refused publishes."
        )
        self.outbox_oldest = gauge(
            "nexus_outbox_oldest_age_seconds", "Age of the oldest outbox row waiting."
        )
        self.jobs = Gauge(
            "nexus_jobs", "Jobs by type and status.", ["job_type", "status"], registry=registry
        )
        self.workers_alive = gauge(
            "nexus_workers_alive", "Agents workers running or draining, heartbeat current."
        )
        self.up = gauge("nexus_db_gauges_up", "1 when the last refresh of these gauges succeeded.")

    def set(self, health: BacklogHealth, outbox: OutboxStats) -> None:
        self.pending.set(health.pending_count)
        self.p95.set(health.pending_age_p95_seconds or 0.0)
        self.oldest.set(health.oldest_pending_age_seconds or 0.0)
        self.degraded.set(int(health.degraded))
        self.alerting.set(int(health.alerting))
        self.outbox_unpublished.set(outbox.unpublished)
        self.outbox_parked.set(outbox.parked)
        self.outbox_oldest.set(outbox.oldest_age_seconds or 0.0)
        self.up.set(1)

    def set_jobs(self, counts: dict[tuple[str, str], int], alive: int) -> None:
        """Every (job type, status) pair is set, 0 when no row has it."""
        for job in self.job_types:
            for status in JobStatus:
                n = counts.get((job.name, status.value), 0)
                self.jobs.labels(job.name, status.value).set(n)
        self.workers_alive.set(alive)

    def _fresh(self) -> bool:
        at = self._refreshed_at
        return at is not None and time.monotonic() - at < self.max_age_seconds

    async def refresh(
        self, sessionmaker: async_sessionmaker[AsyncSession], thresholds: Thresholds
    ) -> None:
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():  # another scrape refreshed while this one waited
                return
            self._refreshed_at = time.monotonic()
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_SECONDS), sessionmaker() as session:
                    health = await backlog_health(session, thresholds)
                    outbox = await relay.stats(session)
                    counts = await scheduler.counts(session, self.job_types)
                    alive = await workers.count_alive(
                        session, heartbeat_seconds=self.heartbeat_seconds
                    )
            except Exception as exc:  # a scrape must never fail because of the database
                log.warning("database gauges not refreshed: %s", type(exc).__name__)
                self.up.set(0)
                return
            self.set(health, outbox)
            self.set_jobs(counts, alive)
