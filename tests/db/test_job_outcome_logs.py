"""`run_job` logs one INFO line per attempt outcome, with the job fields and duration."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.errors import TerminalError, TransientError
from nexus.jobs.machine import Claim, LeaseLost
from nexus.jobs.worker import JobPolicy, Outcome, run_job
from nexus.sharing import backfill
from nexus.sharing.backfill import JOB
from tests.support import factories as f

SM = async_sessionmaker[AsyncSession]
POLICY = JobPolicy(owner="test-worker", lease_seconds=30, delays=(5.0,))


def _raising(exc: Exception) -> Any:
    async def work(sm: SM, claim: Claim) -> None:
        raise exc

    return work


@pytest.mark.parametrize(
    ("work", "outcome", "error_code"),
    [
        (backfill.materialise, Outcome.COMPLETED, None),
        (_raising(TransientError("E_INTERNAL", "flaky")), Outcome.RETRY, "E_INTERNAL"),
        (
            _raising(TerminalError("E_BACKFILL_TUPLE_INVALID", "no")),
            Outcome.FAILED,
            "E_BACKFILL_TUPLE_INVALID",
        ),
        (_raising(LeaseLost("rescued meanwhile")), Outcome.LEASE_LOST, None),
    ],
    ids=["completed", "retried", "failed", "lease_lost"],
)
async def test_one_info_line_per_outcome(
    sessionmaker: SM,
    caplog: pytest.LogCaptureFixture,
    work: Any,
    outcome: Outcome,
    error_code: str | None,
) -> None:
    async with transaction(sessionmaker) as s:
        sc = await f.sharing_scenario(s, n_media=1)
        key = await f.backfill_job(s, sc["d"], sc["s"], sc["viewer"])
    caplog.set_level(logging.INFO, logger="nexus.jobs.worker")
    assert await run_job(sessionmaker, JOB, key, work, POLICY) == outcome
    [line] = [r for r in caplog.records if r.name == "nexus.jobs.worker"]
    fields: dict[str, Any] = line.__dict__
    assert line.levelno == logging.INFO and line.getMessage() == f"job {outcome.value}"
    assert (fields["job_type"], fields["attempt"], fields["outcome"]) == (
        "backfill",
        1,
        outcome.value,
    )
    assert fields["job_key"] == ",".join(f"{k}={v}" for k, v in key.items())
    assert fields["duration_ms"] >= 0
    assert fields.get("error_code") == error_code
