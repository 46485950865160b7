"""SPEC §10 "Workers": identity, heartbeats and the graceful drain, with two real Faust
workers, a real broker and Postgres.

SIGTERM to the worker that holds a long backfill: it stops taking messages, gives its work
`NEXUS_DRAIN_SECONDS`, then releases the lease (ledger actor `release`) and re-dispatches
the message, so the other worker completes the job long before the lease would have
expired; every edge is written once and the job completes once.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from tests.support import backfill_jobs as jobs
from tests.support.db import count, first
from tests.support.long_backfill import LONG_LEASE, long_job_on_one_of_two

SM = async_sessionmaker[AsyncSession]


async def test_sigterm_drains_and_the_other_worker_finishes_long_before_the_lease(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    settings = pipeline_settings.model_copy(update={**LONG_LEASE, "drain_seconds": 1.0})
    async with long_job_on_one_of_two(sessionmaker, settings, logs_dir, ("wa", "wb")) as job:
        # Both workers registered and beat.
        assert (
            await count(sessionmaker, "SELECT count(*) FROM workers WHERE status = 'running'") == 2
        )
        draining = job.running_worker
        draining.proc.send_signal(signal.SIGTERM)  # the worker only, as a supervisor would
        sent_at = time.monotonic()
        await jobs.wait_for_status(
            sessionmaker,
            job.user,
            "completed",
            deadline_s=90,
            interval=0.2,
            what="the other worker",
        )
        took = time.monotonic() - sent_at
        assert draining.proc.wait(timeout=30) == 0, draining.log_tail()
        assert job.other_worker.alive()
        stopped = await first(
            sessionmaker, "SELECT status FROM workers WHERE id = :w", w=job.holder
        )
    assert took < settings.lease_seconds / 2, f"took {took:.1f}s"
    assert stopped is not None and stopped[0] == "stopped"
    events = await jobs.events(
        sessionmaker, job.user, "from_status, to_status, actor", order_by="at, id"
    )
    assert ("running", "pending", "release") in events
    # The job completed exactly once, after being released by its first worker.
    assert [e[1] for e in events].count("completed") == 1
    assert events[-1][1] == "completed" and events[-1][2] != job.holder
    edges = await first(
        sessionmaker,
        "SELECT count(*), count(DISTINCT media_id) FROM default_library_closure_edges "
        "WHERE default_library_id = :d",
        d=job.default_library_id,
    )
    assert edges is not None and (edges[0], edges[1]) == (job.n_media, job.n_media)
