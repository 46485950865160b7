"""Bulk requeue operations on the real database, without a broker: `run_job` + the
operation work, as the agents run it.

Steps (chunks) with progress per step, spacing by `rate_per_second`, the result and audit
rows, and resuming from the checkpoint after a failed attempt or a dead worker (rescue)
without requeuing any job twice.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.main import main
from nexus.db.tx import transaction
from nexus.jobs import machine
from nexus.jobs.worker import JobPolicy, Outcome, run_job
from nexus.messaging.topics import Topics
from nexus.operations import jobs, service
from nexus.operations.service import OperationDeps
from nexus.sharing import requeue_bulk
from tests.conftest import make_settings
from tests.support import backfill_jobs

SM = async_sessionmaker[AsyncSession]
TOPICS = Topics.from_settings(make_settings())
POLICY = JobPolicy(owner="test-worker", lease_seconds=30, delays=(0.0,))
NOW = datetime.now(UTC)
COUNTERS = ("total", "processed", "requeued", "skipped_running", "not_found")


async def _seed(sm: SM, status: str, *, age_s: float = 60, **values: Any) -> dict[str, uuid.UUID]:
    values = backfill_jobs.values_for(
        status, now=NOW, updated_at=NOW - timedelta(seconds=age_s), **values
    )
    return await backfill_jobs.seed(sm, n_media=1, **values)


async def _fixture(sm: SM, n_failed: int = 5) -> dict[str, list[dict[str, uuid.UUID]]]:
    # Distinct ages: the selection runs newest first, so failed[0] goes in the first step.
    failed = [
        await _seed(sm, "failed", age_s=60 + i, last_error_code="E_X") for i in range(n_failed)
    ]
    running = [await _seed(sm, "running", last_error_code="E_X") for _ in range(2)]
    other = [await _seed(sm, "failed", last_error_code="E_OTHER")]
    return {"failed": failed, "running": running, "other": other}


async def _create(sm: SM, **params: Any) -> uuid.UUID:
    body = requeue_bulk.BulkRequeueParams(**params).model_dump(mode="json")
    async with transaction(sm) as s:
        operation = await service.create(
            s,
            kind=requeue_bulk.NAME,
            params=body,
            requested_by="admin-1",
            operator_key_id=None,
            topics=TOPICS,
            request_id="req-bulk",
            correlation_id="corr-bulk",
        )
    return operation.id


def _deps(
    sm: SM, *, chunk_size: int = 2, sleep: Callable[[float], Awaitable[None]] | None = None
) -> OperationDeps:
    @asynccontextmanager
    async def unit_of_work() -> AsyncIterator[AsyncSession]:
        async with transaction(sm) as session:
            yield session

    async def no_wait(seconds: float) -> None:
        del seconds

    return OperationDeps(
        topics=TOPICS, unit_of_work=unit_of_work, chunk_size=chunk_size, sleep=sleep or no_wait
    )


async def _run(sm: SM, operation_id: uuid.UUID, deps: OperationDeps) -> Outcome:
    return await run_job(
        sm,
        jobs.JOB,
        {"id": operation_id},
        service.make_work(deps),
        POLICY,
        on_finish=service.on_finish(TOPICS),
    )


async def _operation(sm: SM, operation_id: uuid.UUID) -> Any:
    async with sm() as s:
        return (
            await s.execute(text("SELECT * FROM operations WHERE id = :i"), {"i": operation_id})
        ).one()


async def _rows(sm: SM, sql: str, **params: Any) -> list[Any]:
    async with sm() as s:
        return list(await s.execute(text(sql), params))


async def _resets(sm: SM) -> dict[str, int]:
    """Per backfill job, how many times it was reset to pending (ledger rows)."""
    rows = await _rows(
        sm,
        "SELECT job_key ->> 'user_id' AS u, count(*) AS n FROM job_events "
        "WHERE job_type = 'backfill' AND to_status = 'pending' GROUP BY 1",
    )
    return {r.u: r.n for r in rows}


def _result(**counts: int) -> dict[str, int]:
    return {name: counts.get(name, 0) for name in COUNTERS}


async def test_bulk_operation_requeues_in_steps_and_records_everything(sm: SM) -> None:
    jobs_ = await _fixture(sm)
    operation_id = await _create(sm, error_code="E_X", reason="fix", rate_per_second=1000)
    seen: list[dict[str, Any]] = []

    async def watch(seconds: float) -> None:
        seen.append(dict((await _operation(sm, operation_id)).progress))

    assert await _run(sm, operation_id, _deps(sm, chunk_size=2, sleep=watch)) == Outcome.COMPLETED

    op = await _operation(sm, operation_id)
    expected = _result(total=5, processed=5, requeued=5, skipped_running=2)
    assert (op.status, op.attempts, op.result, op.progress) == ("completed", 1, expected, expected)
    # Progress was saved after every step: 2 + 2 + 1 jobs, then an empty step ends it.
    assert [p["processed"] for p in seen] == [2, 4, 5]
    assert all(p["total"] == 5 for p in seen)
    assert [await backfill_jobs.status(sm, k) for k in jobs_["failed"]] == ["pending"] * 5
    assert [await backfill_jobs.status(sm, k) for k in jobs_["running"]] == ["running"] * 2
    assert await backfill_jobs.status(sm, jobs_["other"][0]) == "failed"

    ledger = await _rows(
        sm,
        "SELECT from_status, to_status, actor FROM job_events "
        "WHERE job_type = 'operation' ORDER BY id",
    )
    assert [(r.from_status, r.to_status) for r in ledger] == [
        (None, "pending"),
        ("pending", "running"),
        ("running", "completed"),
    ]
    per_job = await _rows(
        sm,
        "SELECT actor, outcome, details, request_id FROM operator_actions "
        "WHERE action = 'backfill.requeue' ORDER BY id",
    )
    assert len(per_job) == 5 and {a.outcome for a in per_job} == {"requeued"}
    assert all(a.actor == "admin-1" and a.request_id == "req-bulk" for a in per_job)
    assert all(
        a.details == {"via": "bulk", "operation_id": str(operation_id), "reason": "fix"}
        for a in per_job
    )
    [summary] = await _rows(
        sm,
        "SELECT target, outcome, details FROM operator_actions "
        "WHERE action = 'backfill.requeue_bulk'",
    )
    assert summary.outcome == "completed" and summary.target == {"error_code": "E_X"}
    assert summary.details == {"operation_id": str(operation_id), **expected}
    messages = await _rows(sm, "SELECT topic, payload FROM outbox ORDER BY id")
    backfill_messages = [m for m in messages if m.topic == TOPICS.backfill]
    assert {m.payload["user_id"] for m in backfill_messages} == {
        str(k["user_id"]) for k in jobs_["failed"]
    }
    assert all(m.payload["correlation_id"] == "corr-bulk" for m in backfill_messages)
    [event] = [m.payload for m in messages if m.topic == TOPICS.events]
    assert event["event"] == "operation.completed" and event["entity_id"] == str(operation_id)


async def test_steps_are_spaced_by_the_rate_and_the_limit_caps_the_selection(sm: SM) -> None:
    await _fixture(sm)
    operation_id = await _create(sm, error_code="E_X", limit=2, rate_per_second=0.1)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    # Under one job per second a step is one job; chunk_size does not widen it.
    assert await _run(sm, operation_id, _deps(sm, chunk_size=10, sleep=record)) == (
        Outcome.COMPLETED
    )
    op = await _operation(sm, operation_id)
    assert op.result == _result(total=2, processed=2, requeued=2, skipped_running=2)
    # One wait between the two steps: what is left of the 10 s one job takes at 0.1/s.
    assert len(waits) == 1 and 0 < waits[0] <= 10.0


async def test_a_failed_attempt_resumes_from_the_checkpoint(sm: SM) -> None:
    jobs_ = await _fixture(sm)
    operation_id = await _create(sm, status="failed", error_code="E_X", rate_per_second=1000)

    async def crash(seconds: float) -> None:
        raise ConnectionResetError("network blip between steps")

    assert await _run(sm, operation_id, _deps(sm, sleep=crash)) == Outcome.RETRY
    op = await _operation(sm, operation_id)
    assert op.status == "pending" and op.last_error_code == "E_INTERNAL"
    assert op.progress["processed"] == 2 and op.result is None

    assert await _run(sm, operation_id, _deps(sm)) == Outcome.COMPLETED
    op = await _operation(sm, operation_id)
    assert op.result == _result(total=5, processed=5, requeued=5)
    assert op.attempts == 2
    # Every selected job was reset exactly once across both attempts.
    assert await _resets(sm) == {str(k["user_id"]): 1 for k in jobs_["failed"]}
    actions = await _rows(
        sm, "SELECT outcome FROM operator_actions WHERE action = 'backfill.requeue'"
    )
    assert len(actions) == 5


async def test_a_dead_worker_is_rescued_and_the_next_attempt_finishes(sm: SM) -> None:
    """The worker dies after committing its first step (its task is cancelled mid-run, as
    when the process is killed): the lease expires, the rescue returns the operation to
    pending and a fresh attempt completes it from the checkpoint."""
    jobs_ = await _fixture(sm)
    operation_id = await _create(sm, error_code="E_X", rate_per_second=1000)

    async def die(seconds: float) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await _run(sm, operation_id, _deps(sm, sleep=die))
    op = await _operation(sm, operation_id)
    assert op.status == "running" and op.progress["processed"] == 2

    async with transaction(sm) as s:
        await s.execute(
            text("UPDATE operations SET lease_expires_at = now() - interval '1 second'")
        )
        rescued = await machine.rescue_expired(s, jobs.JOB, delays=(0.0,), actor="rescuer")
    assert rescued == [{"id": operation_id, "status": "pending", "lost_owner": "test-worker"}]

    assert await _run(sm, operation_id, _deps(sm)) == Outcome.COMPLETED
    op = await _operation(sm, operation_id)
    assert op.result == _result(total=5, processed=5, requeued=5, skipped_running=2)
    assert await _resets(sm) == {str(k["user_id"]): 1 for k in jobs_["failed"]}


async def test_jobs_changed_after_the_request_are_left_alone(sm: SM) -> None:
    """The selection is the jobs as they were when the operation was requested: a job
    that started running or was requeued by someone else since is not touched again."""
    jobs_ = await _fixture(sm)
    operation_id = await _create(sm, error_code="E_X", rate_per_second=1000)
    started, requeued_elsewhere = jobs_["failed"][2], jobs_["failed"][3]

    async def meanwhile(seconds: float) -> None:
        async with transaction(sm) as s:
            await s.execute(
                text(
                    "UPDATE default_library_backfill_jobs SET status = 'running', "
                    "finished_at = NULL, lease_token = gen_random_uuid(), lease_owner = 'w9', "
                    "lease_expires_at = now() + interval '5 minutes', updated_at = now() "
                    "WHERE user_id = :u"
                ),
                {"u": started["user_id"]},
            )
            await s.execute(
                text(
                    "UPDATE default_library_backfill_jobs SET status = 'pending', "
                    "finished_at = NULL, updated_at = now() WHERE user_id = :u"
                ),
                {"u": requeued_elsewhere["user_id"]},
            )

    assert await _run(sm, operation_id, _deps(sm, sleep=meanwhile)) == Outcome.COMPLETED
    op = await _operation(sm, operation_id)
    assert op.result == _result(total=5, processed=3, requeued=3, skipped_running=2)
    assert await backfill_jobs.status(sm, started) == "running"
    assert str(requeued_elsewhere["user_id"]) not in await _resets(sm)


async def test_invalid_params_fail_the_operation_for_good(sm: SM) -> None:
    operation_id = await _create(sm)
    async with transaction(sm) as s:
        await s.execute(
            text("UPDATE operations SET params = '{\"limit\": 0}'::jsonb WHERE id = :i"),
            {"i": operation_id},
        )
    assert await _run(sm, operation_id, _deps(sm)) == Outcome.FAILED
    op = await _operation(sm, operation_id)
    assert op.status == "failed" and op.last_error_code == "E_INVALID_REQUEST"
    assert op.result is None
    [summary] = await _rows(
        sm, "SELECT outcome, details FROM operator_actions WHERE action = 'backfill.requeue_bulk'"
    )
    assert summary.outcome == "failed"
    assert summary.details["error"]["code"] == "E_INVALID_REQUEST"


@pytest.fixture
def sm(sessionmaker: SM) -> SM:
    return sessionmaker


async def test_cli_shows_an_operation(
    sm: SM, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await _fixture(sm, n_failed=1)
    operation_id = await _create(sm, error_code="E_X", rate_per_second=1000)
    assert await _run(sm, operation_id, _deps(sm)) == Outcome.COMPLETED
    monkeypatch.setenv("NEXUS_DATABASE_URL", db_url)
    show = ["ops", "operations", "show", str(operation_id)]

    assert await asyncio.to_thread(main, [*show, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == str(operation_id) and shown["status"] == "completed"
    assert shown["result"] == _result(total=1, processed=1, requeued=1, skipped_running=2)
    assert "checkpoint" not in shown and shown["error"] is None

    assert await asyncio.to_thread(main, show) == 0
    text_out = capsys.readouterr().out
    assert f"id:           {operation_id}" in text_out
    assert '"requeued": 1' in text_out and "status:       completed" in text_out

    missing = ["ops", "operations", "show", str(uuid.uuid4())]
    assert await asyncio.to_thread(main, missing) == 1
    assert "E_NOT_FOUND" in capsys.readouterr().err


async def test_a_long_wait_between_steps_keeps_the_lease(sm: SM) -> None:
    """At 0.01 jobs/s the wait between steps (100 s) outlasts the 30 s lease: it is cut into
    slices and the lease renewed after each, so a slow operation is never rescued."""
    await _fixture(sm, n_failed=2)
    operation_id = await _create(sm, error_code="E_X", rate_per_second=0.01)
    slices: list[float] = []
    expiries: list[datetime] = []

    async def record(seconds: float) -> None:
        slices.append(seconds)
        expiries.append((await _operation(sm, operation_id)).lease_expires_at)

    assert await _run(sm, operation_id, _deps(sm, sleep=record)) == Outcome.COMPLETED
    # A wait after each one-job step, due at 100 s and 200 s after the start (this test's
    # sleep does not pass time): 300 s in all, in slices of at most a third of the lease.
    assert all(0 <= s <= 10.0 for s in slices) and len(slices) >= 30
    assert 290 < sum(slices) <= 300
    # The lease was extended while waiting: later slices see a later expiry.
    assert expiries[-1] > expiries[0]
