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
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.messaging.topics import Topics
from tests.pipeline.test_backfill_faults import _accept, _source
from tests.support.processes import Child, poll, start_agents
from tests.support.services import free_port

SM = async_sessionmaker[AsyncSession]


async def _one(sm: SM, sql: str, **params: object) -> object:
    async with sm() as s:
        return (await s.execute(text(sql), params)).first()


async def _events(sm: SM, user: uuid.UUID) -> list[tuple[str | None, str, str]]:
    async with sm() as s:
        rows = await s.execute(
            text(
                "SELECT from_status, to_status, actor FROM job_events "
                "WHERE job_key->>'user_id' = :u ORDER BY at, id"
            ),
            {"u": str(user)},
        )
        return [(r[0], r[1], r[2]) for r in rows]


async def test_sigterm_drains_and_the_other_worker_finishes_long_before_the_lease(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n = 20_000
    settings = pipeline_settings.model_copy(
        update={
            "lease_seconds": 120.0,
            "drain_seconds": 1.0,
            "backfill_chunk_size": 40,
            "worker_heartbeat_seconds": 0.5,
        }
    )
    topics = Topics.from_settings(settings)
    owner, lib = await _source(sessionmaker, n)
    workers: dict[str, Child] = {}
    for name in ("wa", "wb"):
        own = settings.model_copy(update={"agents_web_port": free_port()})
        workers[name] = await start_agents(
            own, logs_dir, name=name, worker_id=f"{name}-{uuid.uuid4().hex[:6]}"
        )
    try:
        user, d, _ = await _accept(sessionmaker, topics, owner, lib)

        async def running_owner() -> str | None:
            row = await _one(
                sessionmaker,
                "SELECT lease_owner FROM default_library_backfill_jobs "
                "WHERE user_id = :u AND status = 'running'",
                u=user,
            )
            return None if row is None else str(row[0])

        holder = await poll(running_owner, deadline_s=60, what="the job to run")
        name = holder.split("-", 1)[0]
        other = "wb" if name == "wa" else "wa"
        # Both workers registered and beat.
        rows = await _one(sessionmaker, "SELECT count(*) FROM workers WHERE status = 'running'")
        assert rows is not None and rows[0] == 2
        draining = workers[name]
        draining.proc.send_signal(signal.SIGTERM)  # the worker only, as a supervisor would
        sent_at = time.monotonic()

        async def completed() -> bool:
            row = await _one(
                sessionmaker,
                "SELECT status, lease_owner FROM default_library_backfill_jobs WHERE user_id = :u",
                u=user,
            )
            return row is not None and row[0] == "completed"

        await poll(completed, deadline_s=90, interval=0.2, what="the other worker to finish")
        took = time.monotonic() - sent_at
        assert draining.proc.wait(timeout=30) == 0, draining.log_tail()
        assert workers[other].alive()
        stopped = await _one(sessionmaker, "SELECT status FROM workers WHERE id = :w", w=holder)
    finally:
        for child in workers.values():
            child.stop()
    assert took < settings.lease_seconds / 2, f"took {took:.1f}s"
    assert stopped is not None and stopped[0] == "stopped"
    events = await _events(sessionmaker, user)
    assert ("running", "pending", "release") in events
    # The job completed exactly once, after being released by its first worker.
    assert [e[1] for e in events].count("completed") == 1
    assert events[-1][1] == "completed" and events[-1][2] != holder
    edges = await _one(
        sessionmaker,
        "SELECT count(*), count(DISTINCT media_id) FROM default_library_closure_edges "
        "WHERE default_library_id = :d",
        d=d,
    )
    assert edges is not None and (edges[0], edges[1]) == (n, n)
