"""Database-derived gauges: correct values, and scrapes never cost more than one refresh
per cache period (SPEC §10: a scrape never runs more than one cheap query)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.jobs import outbox
from nexus.messaging.messages import DomainEvent
from nexus.sharing.health import Thresholds
from runtime.db_gauges import DatabaseGauges
from tests.support import factories as f


class CountingSessions:
    """The real sessionmaker, counting the sessions opened through it."""

    def __init__(self, sm: async_sessionmaker[AsyncSession]) -> None:
        self.sm = sm
        self.opened = 0

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncSession:
        self.opened += 1
        return self.sm(*args, **kwargs)


def _value(registry: CollectorRegistry, name: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


async def test_outbox_gauges_and_one_refresh_per_period(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessionmaker) as s:
        for n in range(3):
            event = DomainEvent(event="t", entity_id=f"e{n}", request_id="r", correlation_id="c")
            await outbox.enqueue(s, "t.events", "k", event)
        await s.execute(
            text("UPDATE outbox SET parked_at = now() WHERE id = (SELECT min(id) FROM outbox)")
        )
    registry = CollectorRegistry()
    gauges = DatabaseGauges(registry, max_age_seconds=60)
    sessions = CountingSessions(sessionmaker)
    await asyncio.gather(*(gauges.refresh(sessions, Thresholds()) for _ in range(20)))  # type: ignore[arg-type]
    assert sessions.opened == 1
    assert _value(registry, "nexus_outbox_parked") == 1
    assert _value(registry, "nexus_outbox_unpublished") == 2
    assert _value(registry, "nexus_db_gauges_up") == 1
    await gauges.refresh(sessions, Thresholds())  # type: ignore[arg-type]
    assert sessions.opened == 1  # still cached
    fresh = DatabaseGauges(CollectorRegistry(), max_age_seconds=0)
    for _ in range(3):
        await fresh.refresh(sessions, Thresholds())  # type: ignore[arg-type]
    assert sessions.opened == 4


def _sample(registry: CollectorRegistry, line_start: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not exported")


async def test_jobs_by_type_and_status_and_live_workers(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessionmaker) as s:
        for status in ("pending", "pending", "failed"):
            sc = await f.sharing_scenario(s, n_media=1)
            finished = {"finished_at": datetime.now(UTC)} if status == "failed" else {}
            await f.backfill_job(s, sc["d"], sc["s"], sc["viewer"], status=status, **finished)
        await s.execute(
            text(
                "INSERT INTO workers (id, host, pid, status, assigned, version, last_heartbeat_at)"
                " VALUES ('live', 'h', 1, 'running', '[]', 'v', now()),"
                " ('draining', 'h', 2, 'draining', '[]', 'v', now()),"
                " ('stopped', 'h', 3, 'stopped', '[]', 'v', now()),"
                " ('silent', 'h', 4, 'running', '[]', 'v', now() - interval '16 s')"
            )
        )
    registry = CollectorRegistry()
    gauges = DatabaseGauges(registry, max_age_seconds=60, heartbeat_seconds=5)
    await gauges.refresh(sessionmaker, Thresholds())
    jobs = 'nexus_jobs{job_type="%s",status="%s"}'
    assert _sample(registry, jobs % ("backfill", "pending")) == 2
    assert _sample(registry, jobs % ("backfill", "failed")) == 1
    assert _sample(registry, jobs % ("backfill", "running")) == 0
    assert _sample(registry, jobs % ("ingest", "pending")) == 0
    # Alive: running or draining, heartbeat within 3 beats; not stopped, not silent.
    assert _sample(registry, "nexus_workers_alive ") == 2
