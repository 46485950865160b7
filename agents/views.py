"""Monitoring data for the Faust web views (`/nexus/ready`, `/nexus/stats`)."""

from __future__ import annotations

from typing import Any

from agents.context import AgentContext
from nexus.ingest.jobs import JOB as INGEST_JOB
from nexus.jobs import machine, relay
from nexus.operations.jobs import JOB as OPERATION_JOB
from nexus.sharing import backfill
from nexus.sharing.health import Thresholds, backlog_health


def readiness(app: Any, ctx: AgentContext) -> tuple[bool, dict[str, Any]]:
    """Ready once an assignment has completed and no rebalance is running; never while
    draining or once the watchdog judged the worker wedged."""
    assignment = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    assigned = app.rebalancing_count > 0 and not app.rebalancing and bool(assignment)
    ready = assigned and not ctx.draining and ctx.stall_reason is None
    return ready, {
        "ready": ready,
        "rebalancing": bool(app.rebalancing),
        "rebalances": int(app.rebalancing_count),
        "assigned_partitions": assignment,
        "draining": ctx.draining,
        "stalled": ctx.stall_reason,
    }


async def stats(ctx: AgentContext, app: Any) -> dict[str, Any]:
    async with ctx.db() as session:
        ob = await relay.stats(session)
        jobs = {
            "backfill": await machine.counts_by_status(session, backfill.JOB),
            "ingest": await machine.counts_by_status(session, INGEST_JOB),
            "operation": await machine.counts_by_status(session, OPERATION_JOB),
        }
        health = await backlog_health(session, Thresholds.from_settings(ctx.settings))
    return {
        "worker_id": ctx.worker_id,
        "leader": bool(app.is_leader()),
        "outbox": {
            "unpublished": ob.unpublished,
            "parked": ob.parked,
            "oldest_unpublished_at": ob.oldest_unpublished_at.isoformat()
            if ob.oldest_unpublished_at
            else None,
            "oldest_age_seconds": ob.oldest_age_seconds,
        },
        "jobs": jobs,
        "backfill_backlog": health.as_dict(),
        "counters": dict(ctx.counters),
        "lag": [p.as_dict() for p in ctx.lags],
        "inflight": ctx.inflight,
        "draining": ctx.draining,
    }
