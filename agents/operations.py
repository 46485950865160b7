"""Operations agent handler: one attempt of the background operation named by the message."""

from __future__ import annotations

import asyncio

from agents.context import AgentContext
from nexus.messaging.messages import OperationRequested
from nexus.operations import jobs, service


async def handle_operation(ctx: AgentContext, msg: OperationRequested) -> str:
    deps = service.OperationDeps(
        topics=ctx.topics,
        # Each step's outbox rows (the requeued jobs' messages) go out right after commit.
        unit_of_work=ctx.unit_of_work,
        chunk_size=ctx.settings.operation_chunk_size,
        sleep=asyncio.sleep,
    )
    return await ctx.run_attempt(
        jobs.JOB,
        {"id": msg.operation_id},
        service.make_work(deps),
        delays=ctx.settings.operation_retry_delays,
        on_finish=service.on_finish(ctx.topics),
    )
