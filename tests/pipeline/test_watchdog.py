"""SPEC §10 "Workers": a wedged worker is restarted without a person.

Each test injects a real fault into the first worker that `nexus agents` starts (a blocked
event loop, a consumer that stops fetching, a rebalance that never finishes; the fault is
a test-only setting), submits a backfill, and checks that the watchdog ends the wedged
worker, the supervisor starts a fresh one, and the job completes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.context import AgentContext
from agents.watchdog import EXIT_STALLED, Observed, judge
from nexus.config import Settings
from nexus.messaging.topics import Topics
from tests.support import backfill_jobs as jobs
from tests.support.processes import Child, poll, settings_env

SM = async_sessionmaker[AsyncSession]


def _supervised(settings: Settings, logs_dir: Path, name: str) -> Child:
    log_path = logs_dir / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "agents"],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, proc, log_path)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("block-loop:30", "event loop blocked"),
        ("stall-consumer", "no progress"),
        ("stall-rebalance", "rebalance not finished"),
    ],
)
async def test_a_wedged_worker_is_restarted_and_the_job_completes(
    fault: str,
    reason: str,
    pipeline_settings: Settings,
    sessionmaker: SM,
    logs_dir: Path,
    tmp_path: Path,
) -> None:
    settings = pipeline_settings.model_copy(
        update={
            "stall_seconds": 3.0,
            "test_fault": fault,
            "test_fault_once_file": str(tmp_path / f"fault-{uuid.uuid4().hex}"),
        }
    )
    topics = Topics.from_settings(settings)
    owner, lib = await jobs.shared_library(sessionmaker, 50)
    supervisor = _supervised(settings, logs_dir, "nexus-agents")
    try:
        marker = Path(settings.test_fault_once_file or "")
        await poll(
            lambda: _fired(marker), deadline_s=60, what="the fault to wedge the first worker"
        )
        # A job submitted while the worker is wedged...
        user, _, _ = await jobs.accepted_invite(sessionmaker, topics, owner, lib)

        async def restarted() -> bool:
            text_ = await asyncio.to_thread(supervisor.log_path.read_text, errors="replace")
            return f"exited with status {EXIT_STALLED}; restarting" in text_

        await poll(restarted, deadline_s=60, what="the watchdog to end the wedged worker")

        # ...completes once the supervisor has started a fresh one, without a person.
        await jobs.wait_for_status(
            sessionmaker, user, "completed", deadline_s=120, interval=0.3, what="the job done"
        )
        assert supervisor.alive()
    finally:
        supervisor.stop(timeout=60)
    output = supervisor.log_path.read_text(errors="replace")
    wedged = [line for line in output.splitlines() if "worker wedged" in line]
    assert wedged and reason in wedged[0], output[-3000:]


async def _fired(marker: Path) -> bool:
    try:
        return "fired" in await asyncio.to_thread(marker.read_text)
    except FileNotFoundError:
        return False


def _ctx() -> AgentContext:
    return AgentContext.create(Settings(topic_prefix="t."))


def test_judge_names_each_stall_and_only_past_the_limit() -> None:
    ctx = _ctx()
    ctx.last_progress = 100.0
    healthy = Observed(tick_at=109.0)
    assert judge(110.0, healthy, ctx, stall_seconds=5) is None
    assert "event loop blocked" in (judge(120.0, Observed(tick_at=110.0), ctx, 5) or "")
    rebalancing = Observed(tick_at=119.9, rebalancing_since=110.0)
    assert "rebalance not finished" in (judge(120.0, rebalancing, ctx, 5) or "")
    lagging = Observed(tick_at=119.9, lag_waiting=True)
    assert "no progress" in (judge(120.0, lagging, ctx, 5) or "")
    ctx.work_started()  # a long job in flight is progress, not a stall
    assert judge(120.0, lagging, ctx, 5) is None
    ctx.work_finished()
    ctx.last_progress = 118.0
    assert judge(120.0, lagging, ctx, 5) is None
