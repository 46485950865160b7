"""`nexus ops requeue`: ask the agents to requeue one backfill job over the requeue topic.

Produces a `BackfillRequeueRequested` message (key = default library) and prints its
message_id. With `--wait` it first positions a group-less consumer at the end of the
events topic, then produces, then prints the `backfill.requeue.result` event carrying that
message_id as JSON. Exit status: 0 requeued or running no-op, 1 not found / timeout /
broker failure, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from cli.common import EXIT_FAILURE, EXIT_OK, SubParsers, err, out, run_service
from cli.ops.broker import assign_at_end, open_consumer, partitions_of
from nexus.config import Settings
from nexus.messaging.messages import BackfillRequeueRequested
from nexus.messaging.publisher import PublishError
from nexus.messaging.topics import Topics
from runtime.kafka import KafkaPublisher

RESULT_EVENT = "backfill.requeue.result"
SUCCESS_OUTCOMES = frozenset({"requeued", "noop_running"})


def default_requester() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def register(subparsers: SubParsers) -> None:
    p = subparsers.add_parser(
        "requeue", help="requeue a backfill job through the backfill-requeue topic"
    )
    p.add_argument("--default-library", required=True, type=uuid.UUID, metavar="ID")
    p.add_argument("--source-library", required=True, type=uuid.UUID, metavar="ID")
    p.add_argument("--user", required=True, type=uuid.UUID, metavar="ID")
    p.add_argument("--reason", default=None, help="free text kept in the audit trail")
    p.add_argument("--requested-by", default=None, help="audit actor (default: $USER@hostname)")
    p.add_argument("--wait", action="store_true", help="wait for and print the outcome event")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    p.set_defaults(handler=run_requeue)


def build_message(args: argparse.Namespace) -> BackfillRequeueRequested:
    message_id = uuid.uuid4()
    return BackfillRequeueRequested(
        message_id=message_id,
        default_library_id=args.default_library,
        source_library_id=args.source_library,
        user_id=args.user,
        requested_by=(args.requested_by or default_requester())[:255],
        reason=args.reason,
        request_id=f"cli-{message_id}",
        correlation_id=str(message_id),
    )


async def _produce(settings: Settings, topic: str, msg: BackfillRequeueRequested) -> None:
    publisher = KafkaPublisher.from_settings(
        settings, timeout_seconds=max(settings.publish_timeout_seconds, 5.0)
    )
    try:
        await publisher.publish(topic, msg.key, msg.to_bytes(), msg.trace_headers())
    finally:
        await publisher.close()


async def _await_result(
    consumer: AIOKafkaConsumer, message_id: str, timeout_s: float
) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=250)
        for records in batch.values():
            for record in records:
                try:
                    value = json.loads(record.value)
                except (TypeError, ValueError):
                    continue
                if (
                    isinstance(value, dict)
                    and value.get("event") == RESULT_EVENT
                    and value.get("data", {}).get("message_id") == message_id
                ):
                    return value
    return None


async def requeue(
    settings: Settings, msg: BackfillRequeueRequested, *, wait: bool, timeout_s: float
) -> dict[str, Any] | None:
    topics = Topics.from_settings(settings)
    if not wait:
        await _produce(settings, topics.backfill_requeue, msg)
        return None
    consumer = await open_consumer(settings)
    try:
        # Position before producing, so the answer cannot slip past us.
        await assign_at_end(consumer, await partitions_of(consumer, topics.events))
        await _produce(settings, topics.backfill_requeue, msg)
        out(str(msg.message_id))
        return await _await_result(consumer, str(msg.message_id), timeout_s)
    finally:
        await asyncio.wait_for(consumer.stop(), 10)


def run_requeue(args: argparse.Namespace, settings: Settings) -> int:
    msg = build_message(args)
    try:
        event = run_service(lambda: requeue(settings, msg, wait=args.wait, timeout_s=args.timeout))
    except (PublishError, LookupError, OSError, TimeoutError) as exc:
        err(f"error: broker: {exc}")
        return EXIT_FAILURE
    except Exception as exc:  # aiokafka errors: report, never a traceback
        if type(exc).__module__.startswith("aiokafka"):
            err(f"error: broker: {type(exc).__name__}: {exc}")
            return EXIT_FAILURE
        raise
    if not args.wait:
        out(str(msg.message_id))
        return EXIT_OK
    if event is None:
        err(f"error: no {RESULT_EVENT} for message {msg.message_id} within {args.timeout}s")
        return EXIT_FAILURE
    out(json.dumps(event, sort_keys=True))
    outcome = event.get("data", {}).get("outcome")
    return EXIT_OK if outcome in SUCCESS_OUTCOMES else EXIT_FAILURE
