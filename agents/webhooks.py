"""Webhooks (SPEC §10): the `events` agent records deliveries; the leader's timer sends them.

The agent only writes rows (one transaction per event: a delivery per matching active
subscription), so a slow receiver never holds up the events partition; the timer
(`deliver_webhooks`) sends due deliveries from Postgres, which is what makes retries
survive restarts and leader changes. A delivery that ends `dead` is also announced on the
dead-letter topic (best effort: the row is the record).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from agents.context import AgentContext
from nexus.fetching.fetch import FetchPolicy
from nexus.messaging.messages import DeadLetter, DomainEvent
from nexus.webhooks import delivery, policy
from nexus.webhooks.service import record_event

log = logging.getLogger(__name__)
# The dead-letter topic's error code of a delivery that used its last attempt (or was
# refused for good): not one of the consumed-message codes of nexus.deadletters.
WEBHOOK_DEAD = "E_WEBHOOK_DEAD"

DELIVERIES = Counter(
    "nexus_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retry, dead).",
    ["outcome"],
)


async def handle_event(ctx: AgentContext, msg: DomainEvent) -> str:
    async with ctx.unit_of_work() as session:
        created = await record_event(session, msg)
    ctx.counters["webhooks:deliveries_created"] += created
    return "recorded" if created else "no_subscriber"


def backoff(ctx: AgentContext) -> policy.Backoff:
    s = ctx.settings
    return policy.Backoff(
        max_attempts=s.webhook_max_attempts,
        base_seconds=s.webhook_backoff_base_seconds,
        max_seconds=s.webhook_backoff_max_seconds,
    )


async def deliver_webhooks(ctx: AgentContext) -> int:
    """One round of due deliveries (nexus.webhooks.delivery); returns how many were sent."""
    try:
        sent = await delivery.deliver_due(
            ctx.db,
            fetch_policy=FetchPolicy.from_settings(
                ctx.settings, timeout=ctx.settings.webhook_timeout_seconds
            ),
            backoff=backoff(ctx),
            batch=ctx.settings.webhook_batch,
        )
    except Exception:
        log.exception("webhook delivery round failed")
        ctx.counters["webhooks:errors"] += 1
        return 0
    for item in sent:
        kind = item.outcome.kind
        DELIVERIES.labels(outcome=kind).inc()
        ctx.counters[f"webhooks:{kind}"] += 1
        if kind == "dead":
            await _announce_dead(ctx, item)
    return len(sent)


async def _announce_dead(ctx: AgentContext, item: delivery.Sent) -> None:
    """Log the dead delivery and put a letter on the dead-letter topic. No `dead_letters`
    row: the delivery row is the record (listed, and retried with `webhook.retry`), and a
    letter's replay targets work topics only, so `id` stays None."""
    due = item.due
    error = f"webhook delivery {due.id} to subscription {due.subscription_id}: {item.outcome.error}"
    letter = DeadLetter.of(
        due.body.encode(),
        original_topic=ctx.topics.events,
        key=str(due.event_id),
        headers={"message_type": DomainEvent.type, "message_id": str(due.event_id)},
        error_code=WEBHOOK_DEAD,
        error_message=error[:2000],
        worker_id=ctx.worker_id,
    )
    log.warning(
        "webhook delivery dead",
        extra={"delivery_id": due.id, "event_id": str(due.event_id), "error": item.outcome.error},
    )
    try:
        await ctx.pub.publish(
            ctx.topics.dead_letter,
            letter.key,
            letter.model_dump_json().encode(),
            {"reason": error[:200], "original_topic": ctx.topics.events},
        )
    except Exception:
        log.warning("could not announce a dead webhook delivery on the dead-letter topic")
