"""A worker's life in the `workers` table, and its graceful drain (SPEC §10 "Workers").

- `heartbeat` (a timer on every worker, not only the leader) upserts the worker's row with
  its status and assigned partitions every `NEXUS_WORKER_HEARTBEAT_SECONDS`.
- `drain` runs on SIGTERM (agents/worker.py): the worker turns `draining` (readiness 503),
  stops fetching and sends every message it has not started back to its topic; work in
  flight gets `NEXUS_DRAIN_SECONDS` to finish; then every lease it still holds is released
  (job back to pending, ledger actor `release`, its message re-dispatched through the
  outbox in the same transaction) so another worker takes the jobs at once, long before
  their leases would have expired. Finally Faust stops and the row says `stopped`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from typing import Any

from agents import jobs
from agents.context import AgentContext
from nexus.jobs import machine, outbox
from nexus.jobs.states import JobStatus
from nexus.workers import service as workers

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return importlib.metadata.version("nexus")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


VERSION = _version()


def assigned_partitions(app: Any) -> list[str]:
    try:
        return sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    except Exception:  # no consumer yet (starting) or already gone (stopping)
        return []


def status_of(ctx: AgentContext) -> str:
    return "draining" if ctx.draining else "running"


async def heartbeat(ctx: AgentContext, app: Any, *, status: str | None = None) -> bool:
    """Upsert this worker's row; a database hiccup costs one beat, never the worker."""
    beat = workers.Beat(
        worker_id=ctx.worker_id,
        status=status or status_of(ctx),
        assigned=assigned_partitions(app) if status != "stopped" else [],
        version=VERSION,
    )
    try:
        async with ctx.db() as session, session.begin():
            await workers.beat(session, beat)
        return True
    except Exception as exc:
        log.warning("heartbeat not recorded: %s", type(exc).__name__)
        return False


def _stop_fetching(app: Any) -> None:
    try:
        app.consumer.pause_partitions(app.consumer.assignment())
    except Exception:  # pragma: no cover - no consumer: nothing is fetched anyway
        log.debug("no consumer to pause")


async def wait_for_inflight(ctx: AgentContext, seconds: float) -> bool:
    """True when every message in flight finished within `seconds`."""
    try:
        await asyncio.wait_for(ctx.idle.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def release_leases(ctx: AgentContext) -> int:
    """Give back every job this worker still leases and re-dispatch its message."""
    released = 0
    for spec in jobs.registry(ctx.topics):
        async with ctx.unit_of_work() as session:
            rows = await machine.release_held(session, spec.job, owner=ctx.worker_id)
            for row in rows:
                message = spec.make_message(row)
                await outbox.enqueue(session, spec.topic, getattr(message, "key", None), message)
        released += len(rows)
        for _ in rows:
            ctx.metrics.job_transition(spec.job.name, JobStatus.RUNNING, JobStatus.PENDING)
    return released


async def drain(ctx: AgentContext, app: Any) -> None:
    """Stop taking work, let work in flight finish, release what is left (never raises)."""
    ctx.draining = True
    _stop_fetching(app)
    await heartbeat(ctx, app)
    started = time.monotonic()
    finished = await wait_for_inflight(ctx, ctx.settings.drain_seconds)
    try:
        released = await release_leases(ctx)
    except Exception:
        log.exception("drain: releasing leases failed; they will be rescued when they expire")
        released = -1
    log.info(
        "drained",
        extra={
            "worker_id": ctx.worker_id,
            "inflight_finished": finished,
            "released": released,
            "seconds": round(time.monotonic() - started, 3),
        },
    )
