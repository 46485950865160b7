"""Leader-only periodic work. Each tick is bounded and safe to run on several workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from agents import jobs
from agents.context import AgentContext
from nexus.config import Settings
from nexus.idempotency.service import prune_idempotency_keys
from nexus.jobs import machine, relay, scheduler
from nexus.jobs.states import JobStatus
from nexus.ratelimit import prune_windows
from nexus.uploads import cleanup
from nexus.uploads.storage import LocalStorage

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _tick_errors(ctx: AgentContext, counter: str, message: str) -> Iterator[None]:
    """A tick's failure is logged and counted, never raised: the timer runs again."""
    try:
        yield
    except Exception:
        log.exception(message)
        ctx.counters[counter] += 1


def relay_policy(settings: Settings) -> relay.RetryPolicy:
    return relay.RetryPolicy(
        max_attempts=settings.outbox_max_attempts,
        base_seconds=settings.outbox_backoff_base_seconds,
        max_seconds=settings.outbox_backoff_max_seconds,
    )


async def relay_outbox(ctx: AgentContext) -> int:
    """Publish outbox rows the API (or an agent) could not publish right after commit."""
    total = 0
    with _tick_errors(ctx, "outbox:relay_errors", "outbox relay tick failed"):
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
    return total


async def schedule_due_jobs(ctx: AgentContext) -> int:
    """Give every due pending job a message (retries, rescues, lost messages)."""
    total = 0
    with _tick_errors(ctx, "scheduler:errors", "scheduler tick failed"):
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
    return total


async def rescue_expired_leases(ctx: AgentContext) -> int:
    """Return running jobs whose lease expired to pending (or failed when exhausted)."""
    total = 0
    with _tick_errors(ctx, "rescue:errors", "rescue tick failed"):
        for spec in jobs.registry(ctx.topics):
            async with ctx.unit_of_work() as session:
                rescued = await machine.rescue_expired(
                    session, spec.job, delays=spec.delays(ctx.settings), actor=ctx.worker_id
                )
            total += len(rescued)
            _count_rescued(ctx, spec.job.name, rescued)
        ctx.counters["rescue:rescued"] += total
    return total


def _count_rescued(ctx: AgentContext, job_type: str, rescued: list[dict[str, Any]]) -> None:
    """After the commit: each rescued job went running → pending (retry) or failed."""
    if not rescued:
        return
    ctx.metrics.job_rescued(job_type, len(rescued))
    for row in rescued:
        ctx.metrics.job_transition(job_type, JobStatus.RUNNING, str(row["status"]))


async def prune_expired_state(ctx: AgentContext) -> int:
    """Delete idempotency keys past their 24 h lifetime and old rate-limit windows (SPEC §2)."""
    with _tick_errors(ctx, "prune:errors", "prune tick failed"):
        async with ctx.unit_of_work() as session:
            pruned = await prune_idempotency_keys(session)
            windows = await prune_windows(session)
        ctx.counters["prune:idempotency_keys"] += pruned
        ctx.counters["prune:rate_limit_windows"] += windows
        return pruned + windows
    return 0


async def clean_storage(ctx: AgentContext) -> int:
    """Remove abandoned uploads (with their media) and the files of deleted media."""
    settings = ctx.settings
    abandoned_after = timedelta(
        seconds=settings.upload_url_ttl_seconds + settings.upload_cleanup_grace_seconds
    )
    removed = 0
    with _tick_errors(ctx, "storage:errors", "storage cleanup tick failed"):
        async with ctx.unit_of_work() as session:
            expired = await cleanup.expire_uploads(session, older_than=abandoned_after)
        ctx.counters["storage:expired_uploads"] += len(expired)
        if expired:
            log.info("removed %d abandoned uploads", len(expired))
        storage = LocalStorage(settings.storage_dir)
        while True:
            async with ctx.unit_of_work() as session:
                deleted = await cleanup.delete_stored_files(session, storage)
            removed += deleted
            if deleted < cleanup.BATCH:
                break
        ctx.counters["storage:deleted_files"] += removed
    return removed
