"""Prometheus gauges derived from the database, shared by API and agents: the backfill
backlog health (SPEC §7) and the outbox (SPEC §10).

A scrape must stay cheap whoever sends it, so the numbers are cached: a scrape refreshes
them only when the last refresh is older than `max_age_seconds`, concurrent scrapes share
one refresh, and a refresh is one short, bounded read. If the database does not answer in
time the gauges keep their last values and `nexus_db_gauges_up` drops to 0.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.jobs import relay
from nexus.jobs.relay import OutboxStats
from nexus.sharing.health import BacklogHealth, Thresholds, backlog_health

log = logging.getLogger(__name__)
REFRESH_TIMEOUT_SECONDS = 2.0


class DatabaseGauges:
    def __init__(self, registry: CollectorRegistry, *, max_age_seconds: float = 5.0) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=registry)

        self.max_age_seconds = max_age_seconds
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
            except Exception as exc:  # a scrape must never fail because of the database
                log.warning("database gauges not refreshed: %s", type(exc).__name__)
                self.up.set(0)
                return
            self.set(health, outbox)
