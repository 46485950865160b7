"""Which topic each agent consumes and which handler runs its messages."""

from __future__ import annotations

from agents.backfill import handle_backfill
from agents.ingest import handle_ingest
from agents.operations import handle_operation
from agents.requeue import handle_backfill_requeue
from agents.runner import Route
from agents.webhooks import handle_event
from nexus.messaging.messages import (
    BackfillRequested,
    BackfillRequeueRequested,
    DomainEvent,
    IngestRequested,
    OperationRequested,
)
from nexus.messaging.topics import Topics


def consumed(topics: Topics, *, ingest_concurrency: int = 1) -> list[tuple[str, Route]]:
    """(topic, route) for every agent; the Faust app creates one agent per entry."""
    ingest = Route("ingest", IngestRequested, handle_ingest, concurrency=ingest_concurrency)
    return [
        (topics.backfill, Route("backfill", BackfillRequested, handle_backfill)),
        (topics.ingest, ingest),
        (
            topics.backfill_requeue,
            Route("backfill-requeue", BackfillRequeueRequested, handle_backfill_requeue),
        ),
        (topics.operations, Route("operations", OperationRequested, handle_operation)),
        # Domain events: recorded as webhook deliveries (agents/webhooks.py).
        (topics.events, Route("events", DomainEvent, handle_event)),
    ]
