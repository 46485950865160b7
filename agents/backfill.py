"""Backfill agent handler: one attempt of the job named by the message."""

from __future__ import annotations

import functools

from agents.context import AgentContext
from nexus.jobs.worker import JobPolicy, run_job
from nexus.messaging.messages import BackfillRequested
from nexus.sharing import backfill


async def handle_backfill(ctx: AgentContext, msg: BackfillRequested) -> str:
    key = {
        "default_library_id": msg.default_library_id,
        "source_library_id": msg.source_library_id,
        "user_id": msg.user_id,
    }
    policy = JobPolicy(
        owner=ctx.worker_id,
        lease_seconds=ctx.settings.lease_seconds,
        delays=ctx.settings.backfill_retry_delays,
    )
    outcome = await run_job(
        ctx.db,
        backfill.JOB,
        key,
        functools.partial(backfill.materialise, chunk_size=ctx.settings.backfill_chunk_size),
        policy,
        on_finish=backfill.finish_event(ctx.topics),
        metrics=ctx.metrics,
    )
    return outcome.value
