"""Requeue requested by an operator message on the `backfill-requeue` topic (SPEC §7).

Same rule as the HTTP route (`nexus.sharing.backfill.requeue`), applied in the caller's
transaction together with its audit row and the outcome event, so the three commit or
roll back as one. Redelivery of the same message (same `message_id`) is recognised by its
audit row and changes nothing a second time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import NotFound
from nexus.jobs import outbox
from nexus.messaging.messages import BackfillRequeueRequested, DomainEvent
from nexus.messaging.topics import Topics
from nexus.operators.service import record_action
from nexus.sharing import backfill

ACTION = "backfill.requeue"
RESULT_EVENT = "backfill.requeue.result"


@dataclass(frozen=True)
class TopicRequeueOutcome:
    outcome: str  # requeued | noop_running | not_found | duplicate
    event: DomainEvent | None


async def already_applied(
    session: AsyncSession, key: backfill.BackfillKey, message_id: str
) -> bool:
    """True when an audit row for this requeue message exists (GIN index on target)."""
    found = await session.scalar(
        text(
            "SELECT 1 FROM operator_actions WHERE action = :a "
            "AND target @> CAST(:t AS jsonb) AND details ->> 'message_id' = :m LIMIT 1"
        ),
        {
            "a": ACTION,
            "t": json.dumps({k: str(v) for k, v in key.as_dict().items()}),
            "m": message_id,
        },
    )
    return found is not None


def _event_data(
    msg: BackfillRequeueRequested, outcome: str, job: dict[str, Any] | None, idempotent: bool
) -> dict[str, Any]:
    return {
        "message_id": str(msg.message_id),
        "outcome": outcome,
        "default_library_id": str(msg.default_library_id),
        "source_library_id": str(msg.source_library_id),
        "user_id": str(msg.user_id),
        "requested_by": msg.requested_by,
        "reason": msg.reason,
        "idempotent": idempotent,
        "status": job["status"] if job else None,
        "attempts": job["attempts"] if job else None,
        "last_error_code": job["last_error_code"] if job else None,
        "updated_at": job["updated_at"].isoformat() if job else None,
        "finished_at": job["finished_at"].isoformat() if job and job["finished_at"] else None,
    }


async def requeue_from_message(
    session: AsyncSession, msg: BackfillRequeueRequested, topics: Topics
) -> TopicRequeueOutcome:
    """Apply one operator requeue message in the caller's transaction.

    Outcomes: `requeued` (reset + backfill message in the outbox), `noop_running` (job
    running: unchanged), `not_found` (no job), `duplicate` (this message_id was already
    applied: nothing written). Every outcome but `duplicate` writes one `operator_actions`
    row (actor = requested_by, details {reason, message_id, via: topic, requested_by:
    "claimed"}: the topic is a trust boundary, whoever may produce to it names the
    requester and nothing here can verify it; docs/operations.md "Locking Kafka down") and one
    `backfill.requeue.result` event on the events topic through the outbox.
    """
    key = backfill.BackfillKey(msg.default_library_id, msg.source_library_id, msg.user_id)
    message_id = str(msg.message_id)
    if await already_applied(session, key, message_id):
        return TopicRequeueOutcome(outcome="duplicate", event=None)
    job: dict[str, Any] | None
    try:
        result = await backfill.requeue(
            session,
            key,
            topics,
            actor=f"topic:{msg.requested_by}",
            request_id=msg.request_id or message_id,
            correlation_id=msg.correlation_id or message_id,
        )
        outcome = "noop_running" if result.idempotent else "requeued"
        job, idempotent = result.job, result.idempotent
    except NotFound:
        outcome, job, idempotent = "not_found", None, False
    details = {
        "reason": msg.reason,
        "message_id": message_id,
        "via": "topic",
        "requested_by": "claimed",
    }
    await record_action(
        session,
        actor=msg.requested_by,
        action=ACTION,
        target=key.as_dict(),
        outcome=outcome,
        details=details,
        request_id=msg.request_id or message_id,
    )
    event = DomainEvent(
        event=RESULT_EVENT,
        entity_id=str(msg.default_library_id),
        data=_event_data(msg, outcome, job, idempotent),
        request_id=msg.request_id,
        correlation_id=msg.correlation_id or message_id,
    )
    await outbox.enqueue(session, topics.events, event.key, event)
    return TopicRequeueOutcome(outcome=outcome, event=event)
