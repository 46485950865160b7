"""Leader-only periodic work. Each tick is bounded and safe to run on several workers."""

from __future__ import annotations

import logging

from agents import jobs
from agents.context import AgentContext
from nexus.config import Settings
from nexus.idempotency.service import prune_idempotency_keys
from nexus.jobs import machine, relay, scheduler
from nexus.ratelimit import prune_windows

log = logging.getLogger(__name__)


def relay_policy(settings: Settings) -> relay.RetryPolicy:
    return relay.RetryPolicy(
        max_attempts=settings.outbox_max_attempts,
        base_seconds=settings.outbox_backoff_base_seconds,
        max_seconds=settings.outbox_backoff_max_seconds,
    )


async def relay_outbox(ctx: AgentContext) -> int:
    """Publish outbox rows the API (or an agent) could not publish right after commit."""
    total = 0
    try:
        while True:
            report = await relay.relay_once(
                ctx.db,
                ctx.pub,
                older_than_seconds=ctx.settings.outbox_relay_after_seconds,
                batch=ctx.settings.outbox_relay_batch,
                policy=relay_policy(ctx.settings),
            )
            total += report.published
            ctx.counters["outbox:relayed"] += report.published
            ctx.counters["outbox:parked"] += report.parked
            seen = report.published + report.failed
            if report.broker_down or seen < ctx.settings.outbox_relay_batch:
                break
    except Exception:
        log.exception("outbox relay tick failed")
        ctx.counters["outbox:relay_errors"] += 1
    return total


async def schedule_due_jobs(ctx: AgentContext) -> int:
    """Give every due pending job a message (retries, rescues, lost messages)."""
    total = 0
    try:
        for spec in jobs.registry(ctx.topics):
            async with ctx.unit_of_work() as session:
                total += await scheduler.dispatch_due(
                    session,
                    spec.job,
                    topic=spec.topic,
                    make_message=spec.make_message,
                    redeliver_after_seconds=ctx.settings.scheduler_redeliver_after_seconds,
                )
        ctx.counters["scheduler:dispatched"] += total
    except Exception:
        log.exception("scheduler tick failed")
        ctx.counters["scheduler:errors"] += 1
    return total


async def rescue_expired_leases(ctx: AgentContext) -> int:
    """Return running jobs whose lease expired to pending (or failed when exhausted)."""
    total = 0
    try:
        for spec in jobs.registry(ctx.topics):
            async with ctx.unit_of_work() as session:
                rescued = await machine.rescue_expired(
                    session, spec.job, delays=spec.delays(ctx.settings), actor=ctx.worker_id
                )
            total += len(rescued)
        ctx.counters["rescue:rescued"] += total
    except Exception:
        log.exception("rescue tick failed")
        ctx.counters["rescue:errors"] += 1
    return total


async def prune_expired_state(ctx: AgentContext) -> int:
    """Delete idempotency keys past their 24 h lifetime and old rate-limit windows (SPEC §2)."""
    try:
        async with ctx.unit_of_work() as session:
            pruned = await prune_idempotency_keys(session)
            windows = await prune_windows(session)
        ctx.counters["prune:idempotency_keys"] += pruned
        ctx.counters["prune:rate_limit_windows"] += windows
        return pruned + windows
    except Exception:
        log.exception("prune tick failed")
        ctx.counters["prune:errors"] += 1
        return 0
