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
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.jobs import outbox
from nexus.libraries import invites, service
from nexus.libraries.states import LibraryRole
from nexus.messaging.topics import Topics
from runtime.kafka import KafkaPublisher
from tests.support import factories as f
from tests.support.processes import Child, poll, start_agents
from tests.support.services import Broker, broker_ready, free_port

SM = async_sessionmaker[AsyncSession]

FAST = {
    "lease_seconds": 3.0,
    "backfill_retry_delays": (0.5, 1.0),
    "scheduler_interval_seconds": 0.3,
    "scheduler_redeliver_after_seconds": 2.0,
    "rescue_interval_seconds": 0.3,
}


# ------------------------------------------------------------------------- helpers


async def _source(sm: SM, n_media: int) -> tuple[uuid.UUID, uuid.UUID]:
    """(owner, S): a shared library of n fresh media."""
    async with transaction(sm) as s:
        owner, _ = await f.account(s)
        lib = await f.library(s, owner)
        await s.execute(
            text(
                "WITH m AS (INSERT INTO media (kind, title) SELECT 'web_article', 't' || g "
                "FROM generate_series(1, :n) g RETURNING id) "
                "INSERT INTO library_media (library_id, media_id) SELECT :l, id FROM m"
            ),
            {"n": n_media, "l": lib},
        )
    return owner, lib


async def _accept(
    sm: SM, topics: Topics, owner: uuid.UUID, lib: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID, list[int]]:
    """A new user accepts an invite to `lib` (the real service path): (user, d, outbox ids)."""
    async with transaction(sm) as s:
        user, d = await f.account(s)
        invite = await invites.create_invite(s, owner, lib, user, LibraryRole.MEMBER)
    async with transaction(sm) as s:
        await invites.accept_invite(
            s, user, invite.id, topics, request_id=None, correlation_id=f"accept-{user}"
        )
        ids = outbox.enqueued_ids(s)
    return user, d, ids


async def _scalar(sm: SM, sql: str, **params: Any) -> Any:
    async with sm() as s:
        return await s.scalar(text(sql), params)


async def _edges(sm: SM, d: uuid.UUID) -> int:
    return int(
        await _scalar(
            sm,
            "SELECT count(*) FROM default_library_closure_edges WHERE default_library_id = :d",
            d=d,
        )
    )


async def _rows(sm: SM, d: uuid.UUID) -> int:
    return int(await _scalar(sm, "SELECT count(*) FROM library_media WHERE library_id = :l", l=d))


async def _status(sm: SM, user: uuid.UUID) -> str | None:
    return await _scalar(
        sm, "SELECT status FROM default_library_backfill_jobs WHERE user_id = :u", u=user
    )


async def _events(sm: SM, user: uuid.UUID) -> list[tuple[Any, ...]]:
    async with sm() as s:
        rows = await s.execute(
            text(
                "SELECT from_status, to_status, error_code, actor FROM job_events "
                "WHERE job_type = 'backfill' AND job_key->>'user_id' = :u ORDER BY id"
            ),
            {"u": str(user)},
        )
        return [tuple(r) for r in rows]


async def _counters(settings: Settings) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=5) as client:
        resp = await client.get(f"http://127.0.0.1:{settings.agents_web_port}/nexus/stats")
    return dict(resp.json()["counters"])


def _handled(counters: dict[str, int]) -> int:
    """Backfill messages the worker has finished with (any outcome)."""
    return sum(v for k, v in counters.items() if k.startswith("backfill:"))


async def _violations(sm: SM) -> list[str]:
    async with sm() as s:
        return await f.closure_violations(s)


@pytest_asyncio.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A broker for this test alone: it is stopped and replaced by an empty one."""
    b = Broker(port=free_port(), log_path=tmp_path / "tansu.log")
    b.start()
    try:
        await broker_ready(b.bootstrap)
        yield b
    finally:
        b.stop()


# ----------------------------------------------------------------------------- crash


async def test_sigkill_mid_materialisation_then_a_new_worker_completes_it_once(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n = 30_000
    settings = pipeline_settings.model_copy(update={**FAST, "backfill_chunk_size": 500})
    topics = Topics.from_settings(settings)
    owner, lib = await _source(sessionmaker, n)
    first = await start_agents(settings, logs_dir, name="agents-1", worker_id="worker-1")
    second: Child | None = None
    try:
        user, d, _ = await _accept(sessionmaker, topics, owner, lib)  # the relay publishes

        async def partly_done() -> int:
            return (await _edges(sessionmaker, d)) or 0

        seen = await poll(partly_done, deadline_s=60, interval=0.02, what="first chunks")
        first.kill()
        at_kill = await _edges(sessionmaker, d)
        assert 0 < seen <= at_kill < n, f"kill must land mid-job ({seen}, {at_kill})"
        assert await _status(sessionmaker, user) == "running"

        second = await start_agents(settings, logs_dir, name="agents-2", worker_id="worker-2")

        async def completed() -> bool:
            return await _status(sessionmaker, user) == "completed"

        await poll(completed, deadline_s=90, interval=0.2, what="job re-driven to completion")
    finally:
        first.kill()
        if second is not None:
            second.stop()

    assert await _edges(sessionmaker, d) == n
    assert await _rows(sessionmaker, d) == n
    events = await _events(sessionmaker, user)
    assert [(e[0], e[1], e[2]) for e in events] == [
        (None, "pending", None),
        ("pending", "running", None),
        ("running", "pending", "E_LEASE_EXPIRED"),
        ("pending", "running", None),
        ("running", "completed", None),
    ]
    assert events[1][3] == "worker-1" and events[3][3] == "worker-2"
    assert [e[1] for e in events].count("completed") == 1
    assert await _violations(sessionmaker) == []


async def test_a_live_job_longer_than_its_lease_is_not_rescued(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n = 20_000
    settings = pipeline_settings.model_copy(
        # Small chunks: ~500 transactions, so the job outlives its lease by a wide margin
        # even on a fast machine (200-row chunks once finished in 0.95 s).
        update={**FAST, "lease_seconds": 1.0, "backfill_chunk_size": 40}
    )
    topics = Topics.from_settings(settings)
    owner, lib = await _source(sessionmaker, n)
    worker = await start_agents(settings, logs_dir)
    try:
        user, d, _ = await _accept(sessionmaker, topics, owner, lib)

        async def completed() -> bool:
            return await _status(sessionmaker, user) == "completed"

        await poll(completed, deadline_s=90, interval=0.2, what="long job completed")
        took = await _scalar(
            sessionmaker,
            "SELECT extract(epoch FROM max(at) - min(at)) FROM job_events "
            "WHERE job_key->>'user_id' = :u AND to_status IN ('running', 'completed')",
            u=str(user),
        )
    finally:
        worker.stop()
    assert float(took) > settings.lease_seconds, "the job must outlive one lease to mean much"
    assert [e[1] for e in await _events(sessionmaker, user)] == ["pending", "running", "completed"]
    assert await _edges(sessionmaker, d) == n


# ----------------------------------------------------------------------- broker loss


async def test_broker_loss_with_jobs_pending_loses_no_work(
    db_url: str, own_broker: Broker, sessionmaker: SM, logs_dir: Path
) -> None:
    from tests.conftest import make_settings

    settings = make_settings(
        database_url=db_url,
        kafka_bootstrap=own_broker.bootstrap,
        agents_web_port=free_port(),
        api_port=free_port(),
        backfill_chunk_size=500,
        # The test publishes the rows itself once the gate is held; a relay pass while the
        # 50 accepts commit (slow on a busy machine) would start jobs before the gate.
        outbox_relay_after_seconds=600.0,
        **FAST,
    )
    topics = Topics.from_settings(settings)
    n_media, n_jobs = 2_000, 50
    owner, lib = await _source(sessionmaker, n_media)
    worker = await start_agents(settings, logs_dir, name="agents-1")
    fresh: Child | None = None
    publisher = KafkaPublisher(own_broker.bootstrap, timeout_seconds=5)
    try:
        accepted = [await _accept(sessionmaker, topics, owner, lib) for _ in range(n_jobs)]
        # Hold every new membership: the worker claims a job and waits in its first chunk,
        # so the broker dies with that job running and the other 49 messages in flight.
        gate = sessionmaker()
        await gate.begin()
        await gate.execute(
            text("SELECT 1 FROM memberships WHERE library_id = :l AND user_id <> :o FOR UPDATE"),
            {"l": lib, "o": owner},
        )
        # The API's path: publish right after commit.
        report = await outbox.publish_rows(
            sessionmaker, publisher, [i for _, _, ids in accepted for i in ids]
        )
        assert report.all_published

        async def count(status: str) -> int:
            return int(
                await _scalar(
                    sessionmaker,
                    "SELECT count(*) FROM default_library_backfill_jobs WHERE status = :s",
                    s=status,
                )
            )

        await poll(lambda: count("running"), deadline_s=60, interval=0.05, what="a claim")
        own_broker.stop()  # memory-only broker: every message and offset is gone
        await publisher.close()
        assert await count("completed") == 0
        await gate.rollback()
        await gate.close()

        own_broker.start()
        await broker_ready(own_broker.bootstrap)
        # The old worker lost its group and topics with the broker; a supervisor restarts it.
        worker.kill()
        fresh = await start_agents(settings, logs_dir, name="agents-2")

        async def all_completed() -> bool:
            return await count("completed") == n_jobs

        await poll(all_completed, deadline_s=120, interval=0.3, what="every job completed")
    finally:
        await publisher.close()
        worker.kill()
        if fresh is not None:
            fresh.stop()

    for user, d, _ in accepted:
        assert await _edges(sessionmaker, d) == n_media
        assert [e[1] for e in await _events(sessionmaker, user)].count("completed") == 1
    assert await _violations(sessionmaker) == []


# ------------------------------------------------------------------ revocation race


async def test_membership_removed_at_random_points_of_a_running_backfill(
    pipeline_settings: Settings, sessionmaker: SM, logs_dir: Path
) -> None:
    n, rounds = 5_000, 6
    rng = random.Random(20261122)
    settings = pipeline_settings.model_copy(update={**FAST, "backfill_chunk_size": 250})
    topics = Topics.from_settings(settings)
    owner, lib = await _source(sessionmaker, n)
    worker = await start_agents(settings, logs_dir)
    publisher = KafkaPublisher(settings.kafka_bootstrap, timeout_seconds=5)
    try:
        for i in range(rounds):
            # Round 0 removes before the worker even sees the message.
            target = 0 if i == 0 else rng.randrange(1, n)
            before = _handled(await _counters(settings))
            user, d, ids = await _accept(sessionmaker, topics, owner, lib)
            assert (await outbox.publish_rows(sessionmaker, publisher, ids)).all_published

            async def reached(d: uuid.UUID = d, target: int = target) -> bool:
                return await _edges(sessionmaker, d) >= target

            await poll(reached, deadline_s=60, interval=0.005, what=f"{target} edges")
            async with transaction(sessionmaker) as s:
                await service.remove_member(s, owner, lib, user)

            async def handled(before: int = before) -> bool:
                return _handled(await _counters(settings)) > before

            await poll(handled, deadline_s=60, interval=0.05, what="worker done with the message")
            assert await _edges(sessionmaker, d) == 0, f"round {i}: edges outlived the membership"
            assert await _rows(sessionmaker, d) == 0, f"round {i}: unjustified default rows"
            assert await _status(sessionmaker, user) is None, f"round {i}: job row left"
            assert await _violations(sessionmaker) == []
        assert (await _counters(settings)).get("backfill:error", 0) == 0
    finally:
        await publisher.close()
        worker.stop()
