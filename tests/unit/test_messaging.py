from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from nexus.config import Settings
from nexus.errors import NexusError, TerminalError, TransientError
from nexus.jobs.worker import classify
from nexus.messaging.messages import BackfillRequested, BackfillRequeueRequested, DomainEvent
from nexus.messaging.topics import Topics


def test_topics_come_from_the_prefix_with_final_partition_counts() -> None:
    topics = Topics.from_settings(Settings(topic_prefix="x.", topic_partitions=6))
    assert (topics.ingest, topics.backfill, topics.backfill_requeue, topics.operations) == (
        "x.ingest",
        "x.backfill",
        "x.backfill-requeue",
        "x.operations",
    )
    specs = {s.name: s.partitions for s in topics.specs()}
    assert specs == {
        "x.ingest": 6,
        "x.backfill": 6,
        "x.backfill-requeue": 6,
        "x.operations": 6,
        "x.events": 6,
        "x.dead-letter": 1,
    }


def test_every_message_carries_trace_fields_and_round_trips() -> None:
    msg = BackfillRequested(
        default_library_id=uuid.uuid4(),
        source_library_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        request_id="r-1",
        correlation_id="c-1",
    )
    doc = json.loads(msg.to_bytes())
    assert {"message_id", "request_id", "correlation_id", "sent_at"} <= set(doc)
    assert BackfillRequested.model_validate_json(msg.to_bytes()) == msg
    assert msg.key == str(msg.default_library_id)
    assert msg.trace_headers()["correlation_id"] == "c-1"


def test_invalid_messages_are_rejected() -> None:
    with pytest.raises(ValidationError):
        BackfillRequested.model_validate_json(b'{"default_library_id": "nope"}')
    with pytest.raises(ValidationError):
        BackfillRequeueRequested.model_validate(
            {
                "default_library_id": str(uuid.uuid4()),
                "source_library_id": str(uuid.uuid4()),
                "user_id": str(uuid.uuid4()),
                "requested_by": "",
            }
        )


def test_domain_event_key_is_the_entity() -> None:
    assert DomainEvent(event="x", entity_id="abc").key == "abc"


@pytest.mark.parametrize(
    ("exc", "terminal", "code"),
    [
        (TerminalError("E_PDF_ENCRYPTED", "x"), True, "E_PDF_ENCRYPTED"),
        (TransientError("E_FETCH_TIMEOUT", "x"), False, "E_FETCH_TIMEOUT"),
        (NexusError("E_INVALID_URL", "x"), True, "E_INVALID_URL"),
        (NexusError("E_DEPENDENCY_UNAVAILABLE", "x"), False, "E_DEPENDENCY_UNAVAILABLE"),
        (ConnectionRefusedError(), False, "E_INTERNAL"),
        (KeyError("boom"), False, "E_INTERNAL"),
    ],
)
def test_failures_are_classified(exc: BaseException, terminal: bool, code: str) -> None:
    got_terminal, got_code, _ = classify(exc)
    assert (got_terminal, got_code) == (terminal, code)


def test_deadlocks_translate_to_a_retryable_503() -> None:
    from sqlalchemy.exc import DBAPIError

    from nexus.db.errors import translate

    class Deadlock(Exception):
        sqlstate = "40P01"

    err = translate(DBAPIError("UPDATE ...", {}, Deadlock()))
    assert err is not None and err.code == "E_DEPENDENCY_UNAVAILABLE"
    assert err.retry_after == 1
