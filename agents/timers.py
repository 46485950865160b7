"""Leader-only periodic work. Each tick is bounded and safe to run on several workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from agents import jobs
from agents.context import AgentContext
from nexus.config import Settings
from nexus.idempotency.service import prune_idempotency_keys
from nexus.jobs import machine, relay, retention, scheduler
from nexus.jobs.states import JobStatus
from nexus.ratelimit import prune_windows
from nexus.uploads import cleanup
from nexus.uploads.storage import LocalStorage
from nexus.workers.service import MISSED_BEATS

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
    """Return running jobs whose lease was lost to pending (or failed when exhausted): it
    expired, or its owner is a known worker that stopped or missed `MISSED_BEATS` beats
    (ARCHITECTURE §3b: the rescue uses heartbeats as well as leases)."""
    total = 0
    dead_after = MISSED_BEATS * ctx.settings.worker_heartbeat_seconds
    with _tick_errors(ctx, "rescue:errors", "rescue tick failed"):
        for spec in jobs.registry(ctx.topics):
            async with ctx.unit_of_work() as session:
                rescued = await machine.rescue_expired(
                    session,
                    spec.job,
                    delays=spec.delays(ctx.settings),
                    actor=ctx.worker_id,
                    dead_after_seconds=dead_after,
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
        key = ",".join(f"{k}={v}" for k, v in row.items() if k not in ("status", "lost_owner"))
        log.warning(
            "job rescued from %s",
            row["lost_owner"],
            extra={"job_type": job_type, "job_key": key, "lost_owner": row["lost_owner"]},
        )
        ctx.metrics.job_transition(job_type, JobStatus.RUNNING, str(row["status"]))


async def prune_expired_state(ctx: AgentContext) -> int:
    """Delete idempotency keys past their 24 h lifetime and old rate-limit windows (SPEC §2),
    then what is older than `NEXUS_RETENTION_DAYS` (SPEC §10, `prune_retained`)."""
    with _tick_errors(ctx, "prune:errors", "prune tick failed"):
        async with ctx.unit_of_work() as session:
            pruned = await prune_idempotency_keys(session)
            windows = await prune_windows(session)
        ctx.counters["prune:idempotency_keys"] += pruned
        ctx.counters["prune:rate_limit_windows"] += windows
        before = datetime.now(UTC) - timedelta(days=ctx.settings.retention_days)
        retained = await prune_retained(ctx, before=before)
        return pruned + windows + retained
    return 0


# Rows per transaction, and transactions per kind of row per tick: a tick stays bounded,
# and a backlog (the first prune after an upgrade) drains over a few ticks.
RETENTION_BATCH = 1000
RETENTION_BATCHES_PER_TICK = 50


async def prune_retained(ctx: AgentContext, *, before: datetime) -> int:
    """Published outbox rows, ledger chains of finished jobs, replayed dead letters and
    silent workers older than `before` (nexus/jobs/retention.py); each batch is its own
    short transaction."""
    job_types = [spec.job for spec in jobs.registry(ctx.topics)]
    counts = {"outbox": 0, "job_events": 0, "dead_letters": 0, "workers": 0}
    for kind, prune in (
        ("outbox", retention.prune_outbox),
        ("dead_letters", retention.prune_dead_letters),
    ):
        for _ in range(RETENTION_BATCHES_PER_TICK):
            async with ctx.unit_of_work() as session:
                n = await prune(session, before=before, batch=RETENTION_BATCH)
            counts[kind] += n
            if n < RETENTION_BATCH:
                break
    after: int | None = 0
    for _ in range(RETENTION_BATCHES_PER_TICK):
        if after is None:
            break
        async with ctx.unit_of_work() as session:
            page = await retention.prune_ledger_page(
                session, job_types, before=before, after=after, batch=RETENTION_BATCH
            )
        counts["job_events"] += page.deleted
        after = page.next_after
    async with ctx.unit_of_work() as session:
        counts["workers"] = await retention.prune_workers(session, before=before)
    for kind, n in counts.items():
        ctx.counters[f"prune:{kind}"] += n
    if any(counts.values()):
        log.info("retention pruned %s", counts, extra={"pruned": counts})
    return sum(counts.values())


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
