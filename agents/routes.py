"""Which topic each agent consumes and which handler runs its messages."""

from __future__ import annotations

from agents.backfill import handle_backfill
from agents.ingest import handle_ingest
from agents.requeue import handle_backfill_requeue
from agents.runner import Route
from nexus.messaging.messages import (
    BackfillRequested,
    BackfillRequeueRequested,
    IngestRequested,
)
from nexus.messaging.topics import Topics


def consumed(topics: Topics) -> list[tuple[str, Route]]:
    """(topic, route) for every agent; the Faust app creates one agent per entry."""
    return [
        (topics.backfill, Route("backfill", BackfillRequested, handle_backfill)),
        (topics.ingest, Route("ingest", IngestRequested, handle_ingest)),
        (
            topics.backfill_requeue,
            Route("backfill-requeue", BackfillRequeueRequested, handle_backfill_requeue),
        ),
    ]
