"""Backfill agent handler: one attempt of the job named by the message."""

from __future__ import annotations

import functools

from agents.context import AgentContext
from nexus.messaging.messages import BackfillRequested
from nexus.sharing import backfill


async def handle_backfill(ctx: AgentContext, msg: BackfillRequested) -> str:
    key = backfill.BackfillKey(msg.default_library_id, msg.source_library_id, msg.user_id)
    return await ctx.run_attempt(
        backfill.JOB,
        key.as_dict(),
        functools.partial(backfill.materialise, chunk_size=ctx.settings.backfill_chunk_size),
        delays=ctx.settings.backfill_retry_delays,
        on_finish=backfill.finish_event(ctx.topics),
    )
