"""Bulk requeue as a background operation, with real processes: the API answers 202, the
Faust worker runs the operation from the operations topic in steps, the requeued jobs'
messages reach the backfill agent, and the API (stopped meanwhile) shows the result.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.operators.service import create_key
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.db import count, rows
from tests.support.operators import operator_headers
from tests.support.processes import poll, start_agents, start_api
from tests.support.running import running

pytestmark = pytest.mark.e2e
N_FAILED = 40
CHUNK = 7  # 40 jobs: six steps of 7 and one of 5
NOW = datetime.now(UTC)


@pytest.fixture
def stack_settings(stack_settings: Settings) -> Settings:
    return stack_settings.model_copy(update={"operation_chunk_size": CHUNK})


@pytest_asyncio.fixture
async def worker(stack_settings: Settings, logs_dir: Path) -> AsyncIterator[Settings]:
    """Only the agents: the test starts and stops the API itself."""
    async with running(start_agents(stack_settings, logs_dir)):
        yield stack_settings


async def _seed(sm: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    seeded: dict[str, Any] = {"failed": []}
    async with transaction(sm) as s:
        for i in range(N_FAILED):
            sc = await f.sharing_scenario(s, n_media=2)
            failed = jobs.values_for(
                "failed",
                now=NOW,
                attempts=3,
                last_error_code="E_FETCH_FAILED",
                updated_at=NOW - timedelta(seconds=60 + i),
            )
            seeded["failed"].append(
                await f.backfill_job(s, sc["d"], sc["s"], sc["viewer"], **failed)
            )
        sc = await f.sharing_scenario(s, n_media=1)
        running_job = jobs.values_for("running", now=NOW, last_error_code="E_FETCH_FAILED")
        seeded["running"] = await f.backfill_job(s, sc["d"], sc["s"], sc["viewer"], **running_job)
        seeded["admin"] = (await create_key(s, name="bulk-admin", role="admin")).token
        seeded["viewer"] = (await create_key(s, name="bulk-viewer", role="viewer")).token
    return seeded


def _headers(token: str) -> dict[str, str]:
    return operator_headers(token, **{"X-Request-ID": "e2e-bulk"})


async def test_bulk_requeue_runs_in_the_background_and_survives_an_api_restart(
    worker: Settings, sessionmaker: async_sessionmaker[AsyncSession], logs_dir: Path
) -> None:
    settings = worker
    seeded = await _seed(sessionmaker)
    base = f"http://127.0.0.1:{settings.api_port}"
    # The API stops once it answered: the operation does not need it any more.
    async with running(start_api(settings, logs_dir)), httpx.AsyncClient(base_url=base) as client:
        r = await client.post(
            "/internal/libraries/backfill-jobs/requeue-bulk",
            json={
                "error_code": "E_FETCH_FAILED",
                "dry_run": False,
                "rate_per_second": 1000,
                "reason": "e2e",
            },
            headers=_headers(seeded["admin"]),
        )
    assert r.status_code == 202, r.text
    operation_id = r.json()["data"]["operation_id"]
    assert r.headers["location"] == f"/internal/operations/{operation_id}"

    # Progress as the worker saves it, step by step, until the operation completes.
    seen: list[int] = []

    async def completed() -> Any:
        [op] = await rows(
            sessionmaker, "SELECT * FROM operations WHERE id = :i", i=uuid.UUID(operation_id)
        )
        if op.progress:
            seen.append(op.progress["processed"])
        return op if op.status in ("completed", "failed") else None

    op = await poll(completed, deadline_s=90, interval=0.05, what="operation finished")
    expected = {
        "total": N_FAILED,
        "processed": N_FAILED,
        "requeued": N_FAILED,
        "skipped_running": 1,
        "not_found": 0,
    }
    assert (op.status, op.result, op.progress, op.attempts) == ("completed", expected, expected, 1)
    assert seen == sorted(seen) and all(n % CHUNK == 0 or n == N_FAILED for n in seen)

    # The requeued jobs' messages reached the backfill agent, which ran every job.
    async def jobs_done() -> bool:
        done = await count(
            sessionmaker,
            "SELECT count(*) FROM default_library_backfill_jobs WHERE status = 'completed'",
        )
        return done == N_FAILED

    await poll(jobs_done, deadline_s=90, what="every requeued backfill job completed")
    untouched = await jobs.job(sessionmaker, seeded["running"], "status, lease_owner")
    assert untouched is not None
    assert (untouched.status, untouched.lease_owner) == ("running", "elsewhere")

    actions = await rows(
        sessionmaker,
        "SELECT action, outcome, details, request_id FROM operator_actions ORDER BY id",
    )
    summary = [(a.action, a.outcome) for a in actions if a.action == "backfill.requeue_bulk"]
    assert summary == [
        ("backfill.requeue_bulk", "accepted"),
        ("backfill.requeue_bulk", "completed"),
    ]
    assert actions[-1].details == {"operation_id": operation_id, **expected}
    per_job = [a for a in actions if a.action == "backfill.requeue"]
    assert len(per_job) == N_FAILED
    assert all(a.details["operation_id"] == operation_id for a in per_job)
    assert {a.request_id for a in actions} == {"e2e-bulk"}
    ledger = await rows(
        sessionmaker,
        "SELECT from_status, to_status FROM job_events "
        "WHERE job_type = 'operation' AND job_key ->> 'id' = :i ORDER BY id",
        i=operation_id,
    )
    assert [tuple(row) for row in ledger] == [
        (None, "pending"),
        ("pending", "running"),
        ("running", "completed"),
    ]

    # A fresh API process reads the outcome from the row.
    async with running(start_api(settings, logs_dir)), httpx.AsyncClient(base_url=base) as client:
        r = await client.get(
            f"/internal/operations/{operation_id}", headers=_headers(seeded["viewer"])
        )
    assert r.status_code == 200, r.text
    shown = r.json()["data"]
    assert shown["status"] == "completed" and shown["result"] == expected
    assert shown["error"] is None and shown["requested_by"] == "bulk-admin"
