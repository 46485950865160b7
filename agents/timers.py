"""Leader-only periodic work. Each tick is bounded and safe to run on several workers."""

from __future__ import annotations

import logging

from agents.context import AgentContext
from nexus.jobs import outbox

log = logging.getLogger(__name__)


async def relay_outbox(ctx: AgentContext) -> int:
    """Publish outbox rows the API (or an agent) could not publish right after commit."""
    total = 0
    try:
        while True:
            report = await outbox.relay_once(
                ctx.db,
                ctx.pub,
                older_than_seconds=ctx.settings.outbox_relay_after_seconds,
                batch=ctx.settings.outbox_relay_batch,
            )
            total += report.published
            ctx.counters["outbox:relayed"] += report.published
            if report.failed or report.published < ctx.settings.outbox_relay_batch:
                break
    except Exception:
        log.exception("outbox relay tick failed")
        ctx.counters["outbox:relay_errors"] += 1
    return total
