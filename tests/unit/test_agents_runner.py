"""The message runner's decisions (decode, dead-letter, classify, back off) on fakes.

The broker and database paths are covered by tests/pipeline; here the handler and the
publisher are stand-ins so each branch can be forced.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from agents import runner, views
from agents.context import AgentContext
from nexus.config import Settings
from nexus.errors import DependencyUnavailable
from nexus.messaging.messages import BackfillRequested, DeadLetter
from nexus.messaging.publisher import PublishError


@dataclass
class Msg:
    topic: str = "t.backfill"
    partition: int = 0
    offset: int = 7
    key: bytes | None = b"k"
    value: bytes = b""
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Event:
    message: Msg

    @property
    def value(self) -> bytes:
        return self.message.value


class FakePublisher:
    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.failures = failures

    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: dict[str, str]
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise PublishError("down")
        self.sent.append((topic, json.loads(value), headers))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def _ctx(publisher: FakePublisher) -> AgentContext:
    ctx = AgentContext.create(Settings(topic_prefix="t."))
    ctx.publisher = publisher  # type: ignore[assignment]
    return ctx


def _valid() -> bytes:
    return BackfillRequested(
        default_library_id=uuid.uuid4(), source_library_id=uuid.uuid4(), user_id=uuid.uuid4()
    ).to_bytes()


@pytest.fixture(autouse=True)
def _no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(runner.asyncio, "sleep", fake_sleep)
    return slept


async def test_undecodable_message_is_dead_lettered_with_its_position() -> None:
    pub = FakePublisher(failures=1)  # the first dead-letter publish fails and is retried
    ctx = _ctx(pub)

    async def never(ctx: AgentContext, msg: Any) -> str:
        raise AssertionError("handler must not run")

    outcome = await runner.process(
        ctx, runner.Route("backfill", BackfillRequested, never), Event(Msg(value=b"{oops"))
    )
    assert outcome == "dead_lettered"
    [(topic, letter, headers)] = pub.sent
    assert topic == "t.dead-letter"
    assert base64.b64decode(letter["value"]) == b"{oops"
    assert (letter["original_topic"], letter["partition"], letter["offset"]) == (
        "t.backfill",
        0,
        7,
    )
    assert letter["error_code"] == "E_MESSAGE_INVALID" and letter["key"] == "k"
    assert letter["error_message"].startswith("invalid backfill message")
    assert letter["worker_id"] == ctx.worker_id and letter["at"]
    # the pre-0014 names are still written
    assert letter["topic"] == "t.backfill" and letter["reason"] == letter["error_message"]
    assert headers["original_topic"] == "t.backfill"
    assert ctx.counters["dead_letter:t.backfill"] == 1


async def test_handler_errors_are_dead_lettered_and_counted() -> None:
    pub = FakePublisher()
    ctx = _ctx(pub)

    async def boom(ctx: AgentContext, msg: Any) -> str:
        raise KeyError("bug")

    route = runner.Route("backfill", BackfillRequested, boom)
    value = _valid()
    headers = [("message_type", b"backfill.requested"), ("request_id", b"r1")]
    outcome = await runner.process(ctx, route, Event(Msg(value=value, headers=headers)))
    assert outcome == "dead_lettered"
    assert ctx.counters["backfill:error"] == 1 and ctx.counters["dead_letter:t.backfill"] == 1
    [(_, letter, _)] = pub.sent
    assert letter["error_code"] == "E_HANDLER_FAILED"
    assert "KeyError" in letter["error_message"] and "bug" in letter["error_message"]
    assert base64.b64decode(letter["value"]) == value
    assert letter["headers"] == {"message_type": "backfill.requested", "request_id": "r1"}


async def test_a_message_of_another_type_is_unknown() -> None:
    pub = FakePublisher()
    ctx = _ctx(pub)

    async def never(ctx: AgentContext, msg: Any) -> str:
        raise AssertionError("handler must not run")

    route = runner.Route("backfill", BackfillRequested, never)
    event = Event(Msg(value=_valid(), headers=[("message_type", b"operation.requested")]))
    assert await runner.process(ctx, route, event) == "dead_lettered"
    [(_, letter, _)] = pub.sent
    assert letter["error_code"] == "E_MESSAGE_UNKNOWN"
    assert "operation.requested" in letter["error_message"]


def test_legacy_letters_are_still_read() -> None:
    old = {"kind": "dead_letter", "topic": "t.ingest", "value": "{x", "reason": "invalid"}
    letter = DeadLetter.model_validate(old)
    assert (letter.original_topic, letter.error_message, letter.raw_value()) == (
        "t.ingest",
        "invalid",
        b"{x",
    )
    assert letter.error_code == "E_MESSAGE_INVALID"
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again == letter
    # built with the old keyword names (bytes or text values)
    built = DeadLetter(topic="t.events", key="e1", value=b"\x00raw", reason="dead")
    assert (built.original_topic, built.raw_value(), built.error_message) == (
        "t.events",
        b"\x00raw",
        "dead",
    )


async def test_database_outage_is_retried_with_backoff(_no_real_sleep: list[float]) -> None:
    ctx = _ctx(FakePublisher())
    calls = 0

    async def flaky(ctx: AgentContext, msg: Any) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise DependencyUnavailable()
        return "completed"

    route = runner.Route("backfill", BackfillRequested, flaky)
    assert await runner.process(ctx, route, Event(Msg(value=_valid()))) == "completed"
    assert calls == 3 and _no_real_sleep == list(runner.OUTAGE_BACKOFF[:2])
    assert ctx.counters["backfill:completed"] == 1


async def test_endless_outage_gives_up_after_the_schedule(_no_real_sleep: list[float]) -> None:
    ctx = _ctx(FakePublisher())

    async def down(ctx: AgentContext, msg: Any) -> str:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError())

    pub = FakePublisher()
    ctx.publisher = pub  # type: ignore[assignment]
    route = runner.Route("backfill", BackfillRequested, down)
    assert await runner.process(ctx, route, Event(Msg(value=_valid()))) == "dead_lettered"
    assert _no_real_sleep[: len(runner.OUTAGE_BACKOFF)] == list(runner.OUTAGE_BACKOFF)
    [(_, letter, _)] = pub.sent
    assert letter["error_code"] == "E_DEPENDENCY_UNAVAILABLE"


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self, assigned: set[TP]) -> None:
        self._assigned = assigned

    def assignment(self) -> set[TP]:
        return self._assigned


@dataclass
class FakeApp:
    consumer: FakeConsumer
    rebalancing: bool
    rebalancing_count: int


@pytest.mark.parametrize(
    ("rebalancing", "count", "assigned", "ready"),
    [
        (False, 1, {TP("t.backfill", 0)}, True),
        (True, 1, {TP("t.backfill", 0)}, False),  # a rebalance is running
        (False, 0, set(), False),  # never assigned yet
        (False, 2, set(), False),  # assigned nothing
    ],
)
def test_readiness(rebalancing: bool, count: int, assigned: set[TP], ready: bool) -> None:
    ctx = AgentContext.create(Settings(topic_prefix="t."))
    ok, body = views.readiness(FakeApp(FakeConsumer(assigned), rebalancing, count), ctx)
    assert ok is ready and body["ready"] is ready


@pytest.mark.parametrize(("draining", "stalled"), [(True, None), (False, "loop blocked")])
def test_not_ready_while_draining_or_stalled(draining: bool, stalled: str | None) -> None:
    ctx = AgentContext.create(Settings(topic_prefix="t."))
    ctx.draining, ctx.stall_reason = draining, stalled
    ok, body = views.readiness(FakeApp(FakeConsumer({TP("t.backfill", 0)}), False, 1), ctx)
    assert not ok and (body["draining"], body["stalled"]) == (draining, stalled)
