"""`nexus_job_transitions_total` on the agents (issue #12), in process without a broker:
the resets of requeue-topic messages and of bulk requeue steps are counted by the agents'
unit of work once each transaction committed, once per job, by the status it left.

The e2e twin (tests/e2e/test_metrics.py) runs the same paths through real processes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.context import AgentContext
from agents.requeue import handle_backfill_requeue
from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.jobs.worker import JobPolicy, Outcome, run_job
from nexus.messaging.messages import BackfillRequeueRequested
from nexus.operations import jobs, service
from nexus.sharing import backfill, requeue_bulk
from tests.support import backfill_jobs

SM = async_sessionmaker[AsyncSession]
Counted = dict[tuple[str, str, str], float]
NOW = datetime.now(UTC)


@pytest.fixture
def ctx(settings: Settings, sessionmaker: SM) -> AgentContext:
    """An agents context on the test database; no publisher (rows stay in the outbox)."""
    context = AgentContext.create(settings)
    context.sessionmaker = sessionmaker
    return context


def counted(ctx: AgentContext) -> Counted:
    return {
        (s.labels["job_type"], s.labels["from"], s.labels["to"]): s.value
        for family in text_string_to_metric_families(ctx.metrics.render().decode())
        if family.name == "nexus_job_transitions"
        for s in family.samples
        if s.name == "nexus_job_transitions_total"
    }


async def _job(sm: SM, status: str, **values: Any) -> dict[str, uuid.UUID]:
    values = backfill_jobs.values_for(
        status, now=NOW, **{"updated_at": NOW - timedelta(minutes=1), **values}
    )
    return await backfill_jobs.seed(sm, n_media=1, **values)


async def test_topic_requeue_is_counted_once_by_the_status_it_left(
    ctx: AgentContext, sessionmaker: SM
) -> None:
    completed = await _job(sessionmaker, "completed")
    running = await _job(sessionmaker, "running")
    msg = BackfillRequeueRequested(**completed, requested_by="ops")
    assert await handle_backfill_requeue(ctx, msg) == "requeued"
    assert await handle_backfill_requeue(ctx, msg) == "duplicate"  # redelivered
    noop = BackfillRequeueRequested(**running, requested_by="ops")
    assert await handle_backfill_requeue(ctx, noop) == "noop_running"
    missing = BackfillRequeueRequested(**{k: uuid.uuid4() for k in running}, requested_by="x")
    assert await handle_backfill_requeue(ctx, missing) == "not_found"
    assert counted(ctx) == {("backfill", "completed", "pending"): 1}


async def test_bulk_requeue_counts_each_reset_once_across_a_retried_attempt(
    ctx: AgentContext, sessionmaker: SM
) -> None:
    for i, status in enumerate(["failed", "failed", "failed", "cancelled"]):
        await _job(
            sessionmaker, status, last_error_code="E_X", updated_at=NOW - timedelta(seconds=60 + i)
        )
    await _job(sessionmaker, "running", last_error_code="E_X")  # never requeued
    params = requeue_bulk.BulkRequeueParams(error_code="E_X", rate_per_second=1000)
    async with transaction(sessionmaker) as s:  # the API's part (counted there)
        operation = await service.create(
            s,
            kind=requeue_bulk.NAME,
            params=params.model_dump(mode="json"),
            requested_by="admin",
            operator_key_id=None,
            topics=ctx.topics,
            request_id=None,
            correlation_id=None,
        )
    policy = JobPolicy(owner=ctx.worker_id, lease_seconds=30, delays=(0.0,))

    async def attempt(sleep: Any) -> Outcome:
        deps = service.OperationDeps(
            topics=ctx.topics, unit_of_work=ctx.unit_of_work, chunk_size=3, sleep=sleep
        )
        return await run_job(
            ctx.db,
            jobs.JOB,
            {"id": operation.id},
            service.make_work(deps),
            policy,
            on_finish=service.on_finish(ctx.topics),
            metrics=ctx.metrics,
        )

    async def crash(seconds: float) -> None:
        raise ConnectionResetError("between the first and the second step")

    async def no_wait(seconds: float) -> None:
        del seconds

    # The first step (3 jobs, newest first: the failed ones) commits, then the attempt fails.
    assert await attempt(crash) == Outcome.RETRY
    assert counted(ctx)[("backfill", "failed", "pending")] == 3
    assert await attempt(no_wait) == Outcome.COMPLETED
    assert counted(ctx) == {
        ("backfill", "failed", "pending"): 3,
        ("backfill", "cancelled", "pending"): 1,
        ("operation", "pending", "running"): 2,
        ("operation", "running", "pending"): 1,
        ("operation", "running", "completed"): 1,
    }


async def test_a_rolled_back_reset_is_not_counted(ctx: AgentContext, sessionmaker: SM) -> None:
    key = await _job(sessionmaker, "failed")
    with pytest.raises(RuntimeError):
        async with ctx.unit_of_work() as session:
            result = await backfill.requeue(
                session,
                backfill.BackfillKey(**key),
                ctx.topics,
                actor="test",
                request_id=None,
                correlation_id=None,
            )
            assert result.job.status == "pending"
            raise RuntimeError("after the reset, before the commit")
    assert await backfill_jobs.status(sessionmaker, key) == "failed"
    assert counted(ctx) == {}
