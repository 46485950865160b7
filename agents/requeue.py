"""`backfill-requeue` agent: operator requeue messages (SPEC §7), one transaction each.

Invalid messages (bad JSON, bad UUIDs, missing `requested_by`) never reach this handler:
the runner's decode step dead-letters them with the validation error as the reason.
"""

from __future__ import annotations

from agents.context import AgentContext
from nexus.messaging.messages import BackfillRequeueRequested
from nexus.sharing.requeue_service import requeue_from_message


async def handle_backfill_requeue(ctx: AgentContext, msg: BackfillRequeueRequested) -> str:
    async with ctx.unit_of_work() as session:
        result = await requeue_from_message(session, msg, ctx.topics)
    return result.outcome
