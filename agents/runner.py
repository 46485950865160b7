"""The one path every consumed message takes.

decode (pydantic) → handler (which opens its transactions) → classify failures → record.
Every message the agent cannot process becomes a dead letter (SPEC §10): recorded in the
`dead_letters` table and published to the dead-letter topic with its origin, bytes and
error. That is: a message whose `message_type` header names another message
(`E_MESSAGE_UNKNOWN`), one that does not decode (`E_MESSAGE_INVALID`), and one whose
handler raised (`E_HANDLER_FAILED`; job failures never get here, the job runner records
them on the job). Nothing escapes the agent's `async for`: Faust would acknowledge the
event and move on, losing the reason. A database outage is retried with backoff (the
partition waits, which is right: nothing can progress without Postgres); after the
deadline the message is dead-lettered (`E_DEPENDENCY_UNAVAILABLE`, on the topic only when
the database still cannot take it) and Postgres-driven re-delivery (scheduler, relay)
picks job work up later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from agents.context import AgentContext
from nexus import tracing
from nexus.db.errors import is_connection_error
from nexus.db.tx import autocommit
from nexus.deadletters import service as deadletters
from nexus.errors import DependencyUnavailable, NexusError
from nexus.messaging.messages import DeadLetter, Message
from nexus.messaging.publisher import PublishError

log = logging.getLogger(__name__)

Handler = Callable[[AgentContext, Any], Awaitable[str]]
OUTAGE_BACKOFF = (0.5, 1, 2, 4, 8, 15, 30)


@dataclass(frozen=True)
class Route:
    name: str
    model: type[Message]
    handler: Handler
    # Messages of this route one worker handles at once (Faust agent `concurrency`): I/O
    # bound handlers (ingest: fetch + DB) overlap their waits. Order is not preserved
    # between them; every handler lets the guarded job row decide, so that is safe.
    concurrency: int = 1


def _text(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return "" if raw is None else str(raw)


def _headers(message: Any) -> dict[str, str]:
    raw = message.headers or []
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    return {str(k): _text(v) for k, v in pairs}


def _raw_value(message: Any) -> bytes:
    value = message.value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return _text(value).encode()


async def _record(ctx: AgentContext, captured: deadletters.Captured) -> int | None:
    """The `dead_letters` row for `captured`, or None when the database cannot take it
    (the topic still gets the letter; the log line keeps the rest)."""
    try:
        async with autocommit(ctx.db) as conn:
            return await deadletters.record(conn, captured)
    except Exception:
        log.exception("dead letter not recorded in the database")
        return None


async def dead_letter(ctx: AgentContext, event: Any, code: str, reason: str) -> None:
    """Record the message in `dead_letters` and publish it to the dead-letter topic in the
    SPEC §10 shape (with the row's id). Never raises: a letter neither store takes is
    logged in full."""
    message = event.message
    captured = deadletters.Captured(
        original_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=_text(message.key) or None,
        value=_raw_value(message),
        headers=_headers(message),
        error_code=code,
        error_message=reason[: deadletters.MAX_ERROR_MESSAGE],
        worker_id=ctx.worker_id,
    )
    ctx.counters[f"dead_letter:{message.topic}"] += 1
    ctx.metrics.dead_lettered(message.topic)
    letter = DeadLetter.of(
        captured.value,
        id=await _record(ctx, captured),
        original_topic=captured.original_topic,
        partition=captured.partition,
        offset=captured.offset,
        key=captured.key,
        headers=captured.headers,
        error_code=code,
        error_message=captured.error_message,
        worker_id=ctx.worker_id,
    )
    log.warning(
        "message dead-lettered",
        extra={
            "error_code": code,
            "original_topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "dead_letter_id": letter.id,
        },
    )
    for delay in (0, 0.5, 1, 2):
        await asyncio.sleep(delay)
        try:
            await ctx.pub.publish(
                ctx.topics.dead_letter,
                letter.key,
                letter.model_dump_json().encode(),
                {"error_code": code, "original_topic": message.topic},
            )
            return
        except PublishError:
            continue
        except Exception:
            log.exception("dead-letter publish raised")
            continue
    log.error("dead-letter publish failed: %s", letter.model_dump_json())


def decode(route: Route, raw: object) -> Message:
    if isinstance(raw, bytes | bytearray | str):
        return route.model.model_validate_json(raw)
    return route.model.model_validate(raw)


async def redispatch(ctx: AgentContext, event: Any) -> str:
    """Send a message this draining worker will not handle back to its topic (same key, so
    the same partition), for whichever worker owns the partition after this one leaves."""
    message = event.message
    headers = _headers(message)
    await ctx.pub.publish(message.topic, _text(message.key) or None, _raw_value(message), headers)
    ctx.counters["redispatched"] += 1
    return "redispatched"


async def process(ctx: AgentContext, route: Route, event: Any) -> str:
    """Handle one event in a consumer span that continues the producer's trace (the
    message's `traceparent` header); returns the outcome label (also counted).

    While the worker drains, a new message is not started: it is sent back to its topic."""
    if ctx.draining:
        try:
            return await redispatch(ctx, event)
        except PublishError:
            log.warning("could not redispatch while draining; the scheduler will re-drive it")
            return "dropped_draining"
    topic = event.message.topic
    ctx.work_started()
    try:
        with tracing.span(
            f"consume {topic}",
            context=tracing.from_kafka_headers(getattr(event, "headers", None)),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.source.name": topic},
        ) as span:
            outcome = await _process(ctx, route, event)
            span.set_attribute("nexus.outcome", outcome)
            return outcome
    finally:
        ctx.work_finished()


def _unknown(route: Route, event: Any) -> str | None:
    """Why the message is not one this route handles (its `message_type` header names
    another message), or None. Messages without the header are judged by their shape."""
    named = _headers(event.message).get("message_type")
    if named is None or named == route.model.type:
        return None
    return f"{route.name} agent does not handle {named[:100]!r} messages"


async def _process(ctx: AgentContext, route: Route, event: Any) -> str:
    unknown = _unknown(route, event)
    if unknown is not None:
        await dead_letter(ctx, event, deadletters.MESSAGE_UNKNOWN, unknown)
        return "dead_lettered"
    try:
        msg = decode(route, event.value)
    except (ValidationError, ValueError) as exc:
        await dead_letter(
            ctx, event, deadletters.MESSAGE_INVALID, f"invalid {route.name} message: {exc}"
        )
        return "dead_lettered"
    structlog.contextvars.bind_contextvars(
        message_id=str(msg.message_id),
        request_id=msg.request_id,
        correlation_id=msg.correlation_id,
    )
    try:
        return await _handle(ctx, route, event, msg)
    finally:
        structlog.contextvars.unbind_contextvars("message_id", "request_id", "correlation_id")


async def _handle(ctx: AgentContext, route: Route, event: Any, msg: Message) -> str:
    """Run the handler; a database outage is retried with back-off, anything else the
    handler raises (job failures never get here: the job runner records them) sends the
    message to the dead letters."""
    for attempt, backoff in enumerate((*OUTAGE_BACKOFF, None)):
        try:
            outcome = await route.handler(ctx, msg)
            ctx.counters[f"{route.name}:{outcome}"] += 1
            return outcome
        except Exception as exc:
            outage = isinstance(exc, DependencyUnavailable) or is_connection_error(exc)
            if outage and backoff is not None:
                log.warning("database unavailable; retrying in %ss", backoff)
                await asyncio.sleep(backoff)
                continue
            log.exception("%s handler failed (attempt %d)", route.name, attempt + 1)
            ctx.counters[f"{route.name}:error"] += 1
            code = deadletters.DEPENDENCY_UNAVAILABLE if outage else deadletters.HANDLER_FAILED
            detail = f"{exc.code}: {exc.message}" if isinstance(exc, NexusError) else str(exc)
            reason = f"{route.name} handler raised {type(exc).__name__}: {detail}"
            await dead_letter(ctx, event, code, reason)
            return "dead_lettered"
    raise AssertionError("unreachable: the last back-off step always returns")
