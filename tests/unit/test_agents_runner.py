"""The message runner's decisions (decode, dead-letter, classify, back off) on fakes.

The broker and database paths are covered by tests/pipeline; here the handler and the
publisher are stand-ins so each branch can be forced.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from agents import runner, views
from agents.context import AgentContext
from nexus.config import Settings
from nexus.errors import DependencyUnavailable
from nexus.messaging.messages import BackfillRequested
from nexus.messaging.publisher import PublishError


@dataclass
class Msg:
    topic: str = "t.backfill"
    partition: int = 0
    offset: int = 7
    key: bytes | None = b"k"
    value: bytes = b""


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
    assert letter["value"] == "{oops" and letter["offset"] == 7 and letter["topic"] == "t.backfill"
    assert headers["original_topic"] == "t.backfill"
    assert ctx.counters["dead_letter:t.backfill"] == 1


async def test_handler_errors_are_contained_and_counted() -> None:
    ctx = _ctx(FakePublisher())

    async def boom(ctx: AgentContext, msg: Any) -> str:
        raise KeyError("bug")

    route = runner.Route("backfill", BackfillRequested, boom)
    assert await runner.process(ctx, route, Event(Msg(value=_valid()))) == "error"
    assert ctx.counters["backfill:error"] == 1


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

    route = runner.Route("backfill", BackfillRequested, down)
    assert await runner.process(ctx, route, Event(Msg(value=_valid()))) == "error"
    assert _no_real_sleep == list(runner.OUTAGE_BACKOFF)


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
