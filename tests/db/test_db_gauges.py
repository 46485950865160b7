"""Database-derived gauges: correct values, and scrapes never cost more than one refresh
per cache period (SPEC §10: a scrape never runs more than one cheap query)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.jobs import outbox
from nexus.messaging.messages import DomainEvent
from nexus.sharing.health import Thresholds
from runtime.db_gauges import DatabaseGauges


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
