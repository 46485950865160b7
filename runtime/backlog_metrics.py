"""Prometheus gauges for the backfill backlog health (SPEC §7), shared by API and agents.

Refreshed at scrape time with one short, bounded read; if the database does not answer
in time the gauges keep their last values and `nexus_backfill_backlog_up` drops to 0.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.sharing.health import BacklogHealth, Thresholds, backlog_health

log = logging.getLogger(__name__)
REFRESH_TIMEOUT_SECONDS = 2.0


class BacklogGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=registry)

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
        self.up = gauge("nexus_backfill_backlog_up", "1 when the last refresh succeeded.")

    def set(self, health: BacklogHealth) -> None:
        self.pending.set(health.pending_count)
        self.p95.set(health.pending_age_p95_seconds or 0.0)
        self.oldest.set(health.oldest_pending_age_seconds or 0.0)
        self.degraded.set(int(health.degraded))
        self.alerting.set(int(health.alerting))
        self.up.set(1)

    async def refresh(
        self, sessionmaker: async_sessionmaker[AsyncSession], thresholds: Thresholds
    ) -> None:
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT_SECONDS), sessionmaker() as session:
                health = await backlog_health(session, thresholds)
        except Exception as exc:  # a scrape must never fail because of the database
            log.warning("backlog gauges not refreshed: %s", type(exc).__name__)
            self.up.set(0)
            return
        self.set(health)
