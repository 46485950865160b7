"""The one path every consumed message takes.

decode (pydantic) → handler (which opens its transactions) → classify failures → record.
Undecodable messages go to the dead-letter topic with the reason. Nothing escapes the
agent's `async for`: Faust would acknowledge the event and move on, losing the reason.
A database outage is retried with backoff (the partition waits, which is right: nothing
can progress without Postgres); after the deadline the message is dropped with a log line
and Postgres-driven re-delivery (scheduler, relay) picks the work up later.
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
from nexus.errors import DependencyUnavailable
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


async def dead_letter(ctx: AgentContext, event: Any, reason: str) -> None:
    message = event.message
    letter = DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=_text(message.key) or None,
        value=_text(message.value),
        reason=reason[:2000],
    )
    ctx.counters[f"dead_letter:{message.topic}"] += 1
    for delay in (0, 0.5, 1, 2):
        await asyncio.sleep(delay)
        try:
            await ctx.pub.publish(
                ctx.topics.dead_letter,
                letter.key,
                letter.model_dump_json().encode(),
                {"reason": reason[:200], "original_topic": message.topic},
            )
            return
        except PublishError:
            continue
        except Exception:
            log.exception("dead-letter publish raised")
            continue
    log.error("dead-letter publish failed; message dropped: %s", letter.model_dump_json())


def decode(route: Route, raw: object) -> Message:
    if isinstance(raw, bytes | bytearray | str):
        return route.model.model_validate_json(raw)
    return route.model.model_validate(raw)


async def redispatch(ctx: AgentContext, event: Any) -> str:
    """Send a message this draining worker will not handle back to its topic (same key, so
    the same partition), for whichever worker owns the partition after this one leaves."""
    message = event.message
    raw = message.headers or []
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    headers = {str(k): _text(v) for k, v in pairs}
    value = message.value if isinstance(message.value, bytes) else _text(message.value).encode()
    await ctx.pub.publish(message.topic, _text(message.key) or None, value, headers)
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


async def _process(ctx: AgentContext, route: Route, event: Any) -> str:
    try:
        msg = decode(route, event.value)
    except (ValidationError, ValueError) as exc:
        await dead_letter(ctx, event, f"invalid {route.name} message: {exc}")
        return "dead_lettered"
    structlog.contextvars.bind_contextvars(
        message_id=str(msg.message_id),
        request_id=msg.request_id,
        correlation_id=msg.correlation_id,
    )
    try:
        for attempt, backoff in enumerate((*OUTAGE_BACKOFF, None)):
            try:
                outcome = await route.handler(ctx, msg)
                ctx.counters[f"{route.name}:{outcome}"] += 1
                return outcome
            except Exception as exc:
                outage = isinstance(exc, DependencyUnavailable) or is_connection_error(exc)
                if not outage or backoff is None:
                    log.exception("%s handler failed (attempt %d)", route.name, attempt + 1)
                    ctx.counters[f"{route.name}:error"] += 1
                    return "error"
                log.warning("database unavailable; retrying in %ss", backoff)
                await asyncio.sleep(backoff)
        return "error"
    finally:
        structlog.contextvars.unbind_contextvars("message_id", "request_id", "correlation_id")
