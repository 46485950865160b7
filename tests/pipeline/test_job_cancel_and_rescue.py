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
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import backfill_jobs as jobs
from tests.support.agent_stats import counters
from tests.support.backfill_jobs import FAST_RESCUE
from tests.support.db import scalar
from tests.support.long_backfill import LONG_LEASE, long_job_on_one_of_two
from tests.support.processes import Child, poll, start_agents
from tests.support.running import running

SM = async_sessionmaker[AsyncSession]
LEDGER = "from_status, to_status, error_code, actor"


async def test_cancel_stops_a_running_backfill_at_its_next_chunk_and_requeue_completes_it(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n = 20_000
    settings = pipeline_settings.model_copy(update={**FAST_RESCUE, "backfill_chunk_size": 40})
    topics = Topics.from_settings(settings)
    owner, lib = await jobs.shared_library(sessionmaker, n)
    async with running(start_agents(settings, logs_dir)):
        user, d, _ = await jobs.accepted_invite(sessionmaker, topics, owner, lib)
        await poll(
            lambda: jobs.edge_count(sessionmaker, d),
            deadline_s=60,
            interval=0.02,
            what="first chunks",
        )
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
        at_cancel = await jobs.edge_count(sessionmaker, d)
        assert done.from_status == "running" and done.lease_owner is not None
        assert 0 < at_cancel < n, f"the cancel must land mid-job ({at_cancel})"

        async def gave_up() -> int:
            return (await counters(settings)).get("backfill:lease_lost", 0)

        await poll(gave_up, deadline_s=60, interval=0.1, what="the worker to stop")
        # Nothing was written after the cancel committed, and the job stays cancelled.
        assert await jobs.edge_count(sessionmaker, d) == at_cancel
        assert await jobs.library_row_count(sessionmaker, d) == at_cancel
        assert await jobs.status(sessionmaker, user) == "cancelled"
        events = await jobs.events(sessionmaker, user, LEDGER)
        assert [(e[0], e[1], e[2]) for e in events][-1] == ("running", "cancelled", "E_CANCELLED")
        assert "completed" not in [e[1] for e in events]

        async with transaction(sessionmaker) as s:
            requeued = await backfill.requeue(
                s, key, topics, actor="operator:ops", request_id="r2", correlation_id="c2"
            )
        assert requeued.job.status == "pending"
        await jobs.wait_for_status(
            sessionmaker, user, "completed", deadline_s=90, interval=0.2, what="requeued job"
        )
    assert await jobs.edge_count(sessionmaker, d) == n
    assert await jobs.library_row_count(sessionmaker, d) == n
    statuses = [e[1] for e in await jobs.events(sessionmaker, user, LEDGER)]
    assert statuses[-4:] == ["cancelled", "pending", "running", "completed"]
    assert await jobs.closure_violations(sessionmaker) == []


async def test_a_sigkilled_workers_job_is_rescued_by_heartbeats_long_before_its_lease(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    settings = pipeline_settings.model_copy(update={**FAST_RESCUE, **LONG_LEASE})
    async with long_job_on_one_of_two(
        sessionmaker, settings, logs_dir, ("ka", "kb"), on_exit=Child.kill
    ) as job:
        user, d, n = job.user, job.default_library_id, job.n_media
        await poll(
            lambda: jobs.edge_count(sessionmaker, d),
            deadline_s=60,
            interval=0.02,
            what="first chunks",
        )
        job.running_worker.kill()
        killed_at = time.monotonic()
        assert await jobs.edge_count(sessionmaker, d) < n, "the kill must land mid-job"
        await jobs.wait_for_status(
            sessionmaker, user, "completed", deadline_s=90, interval=0.2, what="the other worker"
        )
        took = time.monotonic() - killed_at
    assert took < settings.lease_seconds / 2, f"took {took:.1f}s: the lease was waited out"
    events = await jobs.events(sessionmaker, user, LEDGER)
    rescue = [e for e in events if e[2] == "E_LEASE_EXPIRED"]
    assert len(rescue) == 1 and rescue[0][:2] == ("running", "pending")
    message = await scalar(
        sessionmaker,
        "SELECT error_message FROM job_events WHERE job_key->>'user_id' = :u "
        "AND error_code = 'E_LEASE_EXPIRED'",
        u=str(user),
    )
    assert message == f"worker {job.holder} stopped or missed its heartbeats; lease taken back"
    assert [e[1] for e in events].count("completed") == 1
    assert events[-1][3] != job.holder
    assert await jobs.edge_count(sessionmaker, d) == n
    assert await jobs.library_row_count(sessionmaker, d) == n
    assert await jobs.closure_violations(sessionmaker) == []
