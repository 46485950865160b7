"""Backfill under faults, with a real broker, real Faust worker processes and Postgres.

- crash: SIGKILL the worker in the middle of a many-chunk materialisation; the rescue and
  the scheduler re-drive the job on a new worker; it completes once, nothing missing or
  duplicated;
- a live job that takes longer than its lease is never rescued (lease renewed per chunk);
- broker loss: the broker dies with work in flight and comes back empty; every job still
  completes (the scheduler re-sends from Postgres);
- revocation race: the membership is removed at random points of a running backfill;
  no edge outlives it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.jobs import outbox
from nexus.libraries import service
from nexus.messaging.topics import Topics
from runtime.kafka import KafkaPublisher
from tests.support import backfill_jobs as jobs
from tests.support import running
from tests.support.agent_stats import counters
from tests.support.backfill_jobs import FAST_RESCUE
from tests.support.db import count, scalar
from tests.support.locks import rows_locked
from tests.support.processes import Child, poll, start_agents
from tests.support.services import Broker, broker_ready

SM = async_sessionmaker[AsyncSession]
LEDGER = "from_status, to_status, error_code, actor"


def _handled(counters: dict[str, int]) -> int:
    """Backfill messages the worker has finished with (any outcome)."""
    return sum(v for k, v in counters.items() if k.startswith("backfill:"))


@pytest_asyncio.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A broker for this test alone: it is stopped and replaced by an empty one."""
    async with running.own_broker(tmp_path / "tansu.log") as broker:
        yield broker


# ----------------------------------------------------------------------------- crash


async def test_sigkill_mid_materialisation_then_a_new_worker_completes_it_once(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n = 30_000
    settings = pipeline_settings.model_copy(update={**FAST_RESCUE, "backfill_chunk_size": 500})
    topics = Topics.from_settings(settings)
    owner, lib = await jobs.shared_library(sessionmaker, n)
    first = await start_agents(settings, logs_dir, name="agents-1", worker_id="worker-1")
    second: Child | None = None
    try:
        user, d, _ = await jobs.accepted_invite(
            sessionmaker, topics, owner, lib
        )  # the relay publishes

        async def partly_done() -> int:
            return await jobs.edge_count(sessionmaker, d)

        seen = await poll(partly_done, deadline_s=60, interval=0.02, what="first chunks")
        first.kill()
        at_kill = await jobs.edge_count(sessionmaker, d)
        assert 0 < seen <= at_kill < n, f"kill must land mid-job ({seen}, {at_kill})"
        assert await jobs.status(sessionmaker, user) == "running"

        second = await start_agents(settings, logs_dir, name="agents-2", worker_id="worker-2")
        await jobs.wait_for_status(
            sessionmaker, user, "completed", deadline_s=90, interval=0.2, what="job re-driven"
        )
    finally:
        first.kill()
        if second is not None:
            second.stop()

    assert await jobs.edge_count(sessionmaker, d) == n
    assert await jobs.library_row_count(sessionmaker, d) == n
    events = await jobs.events(sessionmaker, user, LEDGER)
    assert [(e[0], e[1], e[2]) for e in events] == [
        (None, "pending", None),
        ("pending", "running", None),
        ("running", "pending", "E_LEASE_EXPIRED"),
        ("pending", "running", None),
        ("running", "completed", None),
    ]
    assert events[1][3] == "worker-1" and events[3][3] == "worker-2"
    assert [e[1] for e in events].count("completed") == 1
    assert await jobs.closure_violations(sessionmaker) == []


async def test_a_live_job_longer_than_its_lease_is_not_rescued(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n = 20_000
    settings = pipeline_settings.model_copy(
        # Small chunks: ~500 transactions, so the job outlives its lease by a wide margin
        # even on a fast machine (200-row chunks once finished in 0.95 s).
        update={**FAST_RESCUE, "lease_seconds": 1.0, "backfill_chunk_size": 40}
    )
    topics = Topics.from_settings(settings)
    owner, lib = await jobs.shared_library(sessionmaker, n)
    worker = await start_agents(settings, logs_dir)
    try:
        user, d, _ = await jobs.accepted_invite(sessionmaker, topics, owner, lib)
        await jobs.wait_for_status(
            sessionmaker, user, "completed", deadline_s=90, interval=0.2, what="long job done"
        )
        took = await scalar(
            sessionmaker,
            "SELECT extract(epoch FROM max(at) - min(at)) FROM job_events "
            "WHERE job_key->>'user_id' = :u AND to_status IN ('running', 'completed')",
            u=str(user),
        )
    finally:
        worker.stop()
    assert float(took) > settings.lease_seconds, "the job must outlive one lease to mean much"
    assert [e[1] for e in await jobs.events(sessionmaker, user, LEDGER)] == [
        "pending",
        "running",
        "completed",
    ]
    assert await jobs.edge_count(sessionmaker, d) == n


# ----------------------------------------------------------------------- broker loss


async def test_broker_loss_with_jobs_pending_loses_no_work(
    pipeline_settings: Settings, own_broker: Broker, sessionmaker: SM, logs_dir: Path
) -> None:
    settings = pipeline_settings.model_copy(
        update={
            **FAST_RESCUE,
            "kafka_bootstrap": own_broker.bootstrap,
            "backfill_chunk_size": 500,
            # The test publishes the rows itself once the gate is held; a relay pass while
            # the 50 accepts commit (slow on a busy machine) would start jobs before it.
            "outbox_relay_after_seconds": 600.0,
        }
    )
    topics = Topics.from_settings(settings)
    n_media, n_jobs = 2_000, 50
    owner, lib = await jobs.shared_library(sessionmaker, n_media)
    # Nor may the first worker's scheduler redeliver the pending jobs while the 50 accepts
    # commit (its 2 s comes quickly when three test processes share two cores); the worker
    # started after the outage redelivers them quickly.
    patient = settings.model_copy(update={"scheduler_redeliver_after_seconds": 600.0})
    worker = await start_agents(patient, logs_dir, name="agents-1")
    fresh: Child | None = None
    publisher = KafkaPublisher(own_broker.bootstrap, timeout_seconds=5)
    try:
        accepted = [
            await jobs.accepted_invite(sessionmaker, topics, owner, lib) for _ in range(n_jobs)
        ]

        async def jobs_in(status: str) -> int:
            return await count(
                sessionmaker,
                "SELECT count(*) FROM default_library_backfill_jobs WHERE status = :s",
                s=status,
            )

        # Hold every new membership: the worker claims a job and waits in its first chunk,
        # so the broker dies with that job running and the other 49 messages in flight.
        async with rows_locked(
            sessionmaker,
            "SELECT 1 FROM memberships WHERE library_id = :l AND user_id <> :o",
            l=lib,
            o=owner,
        ):
            # The API's path: publish right after commit.
            report = await outbox.publish_rows(
                sessionmaker, publisher, [i for _, _, ids in accepted for i in ids]
            )
            assert report.all_published
            await poll(lambda: jobs_in("running"), deadline_s=60, interval=0.05, what="a claim")
            own_broker.stop()  # memory-only broker: every message and offset is gone
            await publisher.close()
            assert await jobs_in("completed") == 0

        own_broker.start()
        await broker_ready(own_broker.bootstrap)
        # The old worker lost its group and topics with the broker; a supervisor restarts it.
        worker.kill()
        fresh = await start_agents(settings, logs_dir, name="agents-2")

        async def all_completed() -> bool:
            return await jobs_in("completed") == n_jobs

        await poll(all_completed, deadline_s=120, interval=0.3, what="every job completed")
    finally:
        await publisher.close()
        worker.kill()
        if fresh is not None:
            fresh.stop()

    for user, d, _ in accepted:
        assert await jobs.edge_count(sessionmaker, d) == n_media
        assert [e[1] for e in await jobs.events(sessionmaker, user, LEDGER)].count("completed") == 1
    assert await jobs.closure_violations(sessionmaker) == []


# ------------------------------------------------------------------ revocation race


async def test_membership_removed_at_random_points_of_a_running_backfill(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n, rounds = 5_000, 6
    rng = random.Random(20261122)
    settings = pipeline_settings.model_copy(update={**FAST_RESCUE, "backfill_chunk_size": 250})
    topics = Topics.from_settings(settings)
    owner, lib = await jobs.shared_library(sessionmaker, n)
    worker = await start_agents(settings, logs_dir)
    publisher = KafkaPublisher(settings.kafka_bootstrap, timeout_seconds=5)
    try:
        for i in range(rounds):
            # Round 0 removes before the worker even sees the message.
            target = 0 if i == 0 else rng.randrange(1, n)
            before = _handled(await counters(settings))
            user, d, ids = await jobs.accepted_invite(sessionmaker, topics, owner, lib)
            assert (await outbox.publish_rows(sessionmaker, publisher, ids)).all_published

            async def reached(d: uuid.UUID = d, target: int = target) -> bool:
                return await jobs.edge_count(sessionmaker, d) >= target

            await poll(reached, deadline_s=60, interval=0.005, what=f"{target} edges")
            async with transaction(sessionmaker) as s:
                await service.remove_member(s, owner, lib, user)

            async def handled(before: int = before) -> bool:
                return _handled(await counters(settings)) > before

            await poll(handled, deadline_s=60, interval=0.05, what="worker done with the message")
            assert await jobs.edge_count(sessionmaker, d) == 0, (
                f"round {i}: edges outlived the membership"
            )
            assert await jobs.library_row_count(sessionmaker, d) == 0, (
                f"round {i}: unjustified default rows"
            )
            assert await jobs.status(sessionmaker, user) is None, f"round {i}: job row left"
            assert await jobs.closure_violations(sessionmaker) == []
        assert (await counters(settings)).get("backfill:error", 0) == 0
    finally:
        await publisher.close()
        worker.stop()
