"""Operator cancel and heartbeat rescue with real Faust workers, a real broker and Postgres.

- cancel: a long backfill is cancelled while a worker runs it; the worker stops at its next
  chunk (its lease is gone), nothing is written after the cancel commits, the job stays
  cancelled; a requeue then completes it;
- rescue by heartbeats: the worker running a long backfill is SIGKILLed; with a 120 s lease
  the other worker still completes the job within seconds, because the leader sees the dead
  worker's missed heartbeats; the rescue's ledger row names the dead owner.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.pipeline.test_backfill_faults import (
    FAST,
    SM,
    _accept,
    _counters,
    _edges,
    _events,
    _rows,
    _scalar,
    _source,
    _status,
    _violations,
)
from tests.support.processes import Child, poll, start_agents
from tests.support.services import free_port


async def test_cancel_stops_a_running_backfill_at_its_next_chunk_and_requeue_completes_it(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n = 20_000
    settings = pipeline_settings.model_copy(update={**FAST, "backfill_chunk_size": 40})
    topics = Topics.from_settings(settings)
    owner, lib = await _source(sessionmaker, n)
    worker = await start_agents(settings, logs_dir)
    try:
        user, d, _ = await _accept(sessionmaker, topics, owner, lib)

        async def started() -> int:
            return await _edges(sessionmaker, d)

        await poll(started, deadline_s=60, interval=0.02, what="first chunks")
        key = backfill.BackfillKey(d, lib, user)
        async with transaction(sessionmaker) as s:
            done = await backfill.cancel(
                s,
                key,
                topics,
                requested_by="ops",
                reason="test",
                request_id="req-cancel",
                correlation_id="cor-cancel",
            )
        at_cancel = await _edges(sessionmaker, d)
        assert done.from_status == "running" and done.lease_owner is not None
        assert 0 < at_cancel < n, f"the cancel must land mid-job ({at_cancel})"

        async def gave_up() -> int:
            return (await _counters(settings)).get("backfill:lease_lost", 0)

        await poll(gave_up, deadline_s=60, interval=0.1, what="the worker to stop")
        # Nothing was written after the cancel committed, and the job stays cancelled.
        assert await _edges(sessionmaker, d) == at_cancel
        assert await _rows(sessionmaker, d) == at_cancel
        assert await _status(sessionmaker, user) == "cancelled"
        events = await _events(sessionmaker, user)
        assert [(e[0], e[1], e[2]) for e in events][-1] == ("running", "cancelled", "E_CANCELLED")
        assert "completed" not in [e[1] for e in events]

        async with transaction(sessionmaker) as s:
            requeued = await backfill.requeue(
                s, key, topics, actor="operator:ops", request_id="r2", correlation_id="c2"
            )
        assert requeued.job.status == "pending"

        async def completed() -> bool:
            return await _status(sessionmaker, user) == "completed"

        await poll(completed, deadline_s=90, interval=0.2, what="requeued job completed")
    finally:
        worker.stop()
    assert await _edges(sessionmaker, d) == n and await _rows(sessionmaker, d) == n
    statuses = [e[1] for e in await _events(sessionmaker, user)]
    assert statuses[-4:] == ["cancelled", "pending", "running", "completed"]
    assert await _violations(sessionmaker) == []


async def test_a_sigkilled_workers_job_is_rescued_by_heartbeats_long_before_its_lease(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n = 20_000
    settings = pipeline_settings.model_copy(
        update={
            **FAST,
            "lease_seconds": 120.0,
            "worker_heartbeat_seconds": 0.5,
            "backfill_chunk_size": 40,
        }
    )
    topics = Topics.from_settings(settings)
    owner, lib = await _source(sessionmaker, n)
    workers: dict[str, Child] = {}
    for name in ("ka", "kb"):
        own = settings.model_copy(update={"agents_web_port": free_port()})
        workers[name] = await start_agents(
            own, logs_dir, name=name, worker_id=f"{name}-{uuid.uuid4().hex[:6]}"
        )
    try:
        user, d, _ = await _accept(sessionmaker, topics, owner, lib)

        async def running_owner() -> str | None:
            found = await _scalar(
                sessionmaker,
                "SELECT lease_owner FROM default_library_backfill_jobs "
                "WHERE user_id = :u AND status = 'running'",
                u=user,
            )
            return None if found is None else str(found)

        holder = await poll(running_owner, deadline_s=60, what="the job to run")

        async def some_edges() -> int:
            return await _edges(sessionmaker, d)

        await poll(some_edges, deadline_s=60, interval=0.02, what="first chunks")
        victim = workers[holder.split("-", 1)[0]]
        victim.kill()
        killed_at = time.monotonic()
        assert await _edges(sessionmaker, d) < n, "the kill must land mid-job"

        async def completed() -> bool:
            return await _status(sessionmaker, user) == "completed"

        await poll(completed, deadline_s=90, interval=0.2, what="the other worker to finish")
        took = time.monotonic() - killed_at
    finally:
        for child in workers.values():
            child.kill()
    assert took < settings.lease_seconds / 2, f"took {took:.1f}s: the lease was waited out"
    events = await _events(sessionmaker, user)
    rescue = [e for e in events if e[2] == "E_LEASE_EXPIRED"]
    assert len(rescue) == 1 and rescue[0][:2] == ("running", "pending")
    message = await _scalar(
        sessionmaker,
        "SELECT error_message FROM job_events WHERE job_key->>'user_id' = :u "
        "AND error_code = 'E_LEASE_EXPIRED'",
        u=str(user),
    )
    assert message == f"worker {holder} stopped or missed its heartbeats; lease taken back"
    assert [e[1] for e in events].count("completed") == 1
    assert events[-1][3] != holder
    assert await _edges(sessionmaker, d) == n and await _rows(sessionmaker, d) == n
    assert await _violations(sessionmaker) == []
