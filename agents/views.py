"""Monitoring data for the Faust web views (`/nexus/ready`, `/nexus/stats`, the failed
jobs and a job's timeline behind `/nexus/dashboard`); docs/operations.md "Dashboard and
stats" describes every field."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from agents.context import AgentContext
from agents.jobs import JobSpec, registry
from agents.stats import StatsCache
from nexus.errors import InvalidRequest, NotFound
from nexus.jobs import monitoring
from nexus.jobs.machine import DueJob
from nexus.sharing.operations import ITEM_FIELDS

TIMELINE_PATH = "/nexus/jobs/timeline"


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


def _dead_letters(ctx: AgentContext, recorded: Mapping[str, int]) -> dict[str, Any]:
    """The `dead_letters` table's totals (every worker) and this worker's own letters
    since it started, by original topic."""
    prefix = "dead_letter:"
    by_topic = {k[len(prefix) :]: v for k, v in ctx.counters.items() if k.startswith(prefix)}
    return {
        **recorded,
        "this_worker": sum(by_topic.values()),
        "this_worker_by_topic": by_topic,
    }


def _totals(activity: Mapping[str, Mapping[str, Any]], name: str) -> int:
    return sum(int(a[name]) for a in activity.values())


async def stats(ctx: AgentContext, app: Any, cache: StatsCache) -> dict[str, Any]:
    """This worker's numbers (live) and the database's (at most the cache age old)."""
    snap = await cache.get()
    health = snap.backfill_backlog
    return {
        "worker_id": ctx.worker_id,
        "leader": bool(app.is_leader()),
        "draining": ctx.draining,
        "stalled": ctx.stall_reason,
        "inflight": ctx.inflight,
        "lag": [p.as_dict() for p in ctx.lags],
        "rates": ctx.rates.snapshot(),
        "dead_letters": _dead_letters(ctx, snap.dead_letters),
        "counters": dict(ctx.counters),
        "jobs": snap.jobs,
        "backlog": snap.backlog,
        "activity": snap.activity,
        "retries_last_hour": _totals(snap.activity, "retries_last_hour"),
        "rescues_last_hour": _totals(snap.activity, "rescues_last_hour"),
        "degraded": bool(health["degraded"]),
        "alerting": bool(health["alerting"]),
        "backfill_backlog": health,
        "outbox": snap.outbox,
        "workers": snap.workers,
        "database_age_seconds": round(cache.age_seconds(snap), 3),
    }


def timeline_url(job_type: str, key: Mapping[str, str]) -> str:
    return f"{TIMELINE_PATH}?{urlencode({'job_type': job_type, **key})}"


async def failed_jobs(cache: StatsCache) -> dict[str, Any]:
    """The most recently failed jobs of every type, each with a link to its timeline."""
    snap = await cache.get()
    return {
        "data": [
            {**job, "timeline_url": timeline_url(job["job_type"], job["key"])}
            for job in snap.failed_jobs
        ]
    }


def _spec(ctx: AgentContext, job_type: str | None) -> JobSpec:
    specs = {spec.job.name: spec for spec in registry(ctx.topics)}
    if job_type not in specs:
        raise InvalidRequest(f"job_type must be one of {', '.join(sorted(specs))}")
    return specs[job_type]


def _key(spec: JobSpec, query: Mapping[str, str]) -> dict[str, Any]:
    """The job key from the query string; UUID columns must be UUIDs."""
    key: dict[str, Any] = {}
    for name in spec.job.key_columns:
        raw = query.get(name)
        if not raw:
            raise InvalidRequest(f"{name} is required for {spec.job.name} jobs")
        try:
            python_type = spec.job.table.c[name].type.python_type
        except NotImplementedError:
            python_type = str
        try:
            key[name] = uuid.UUID(raw) if python_type is uuid.UUID else raw
        except ValueError as exc:
            raise InvalidRequest(f"{name} must be a UUID") from exc
    return key


async def job_timeline(ctx: AgentContext, query: Mapping[str, str]) -> dict[str, Any]:
    """`{job_type, key, job, data}`: the job row now (or null) and its ledger and outbox
    rows, oldest first. `InvalidRequest` for an unknown type or a bad key; `NotFound` when
    nothing at all is recorded."""
    spec = _spec(ctx, query.get("job_type"))
    key = _key(spec, query)
    async with ctx.db() as session:
        row = await monitoring.get_job(session, spec.job, key)
        message_key = (
            getattr(spec.make_message(DueJob.of(spec.job, row)), "key", None)
            if row is not None
            else None
        )
        entries = await monitoring.timeline(session, spec.job, key, message_key=message_key)
    if row is None and not entries:
        raise NotFound(f"nothing recorded for this {spec.job.name} job")
    job = None
    if row is not None:
        job = {name: row._mapping[name] for name in (*spec.job.key_columns, *_NOW_FIELDS)}
    return {
        "job_type": spec.job.name,
        "key": {k: str(v) for k, v in key.items()},
        "job": _jsonable(job),
        "data": [_jsonable(e) for e in entries],
    }


# The job item of the operator views (SPEC §7) without its lease deadline, which this page
# has never shown.
_NOW_FIELDS = tuple(name for name in ITEM_FIELDS if name != "lease_expires_at")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
