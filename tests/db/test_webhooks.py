"""Webhook subscriptions and deliveries on the real database, sent to a real receiver."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.errors import NexusError
from nexus.fetching.fetch import FetchPolicy
from nexus.messaging.messages import DomainEvent
from nexus.webhooks import delivery, policy, service
from tests.support.webhook_receiver import Receiver

LOCAL = ("127.0.0.1",)
FAST = policy.Backoff(max_attempts=3, base_seconds=0.05, max_seconds=0.2)
OPEN = FetchPolicy(allow_hosts=LOCAL, timeout=3.0)


async def _subscribe(
    sm: async_sessionmaker[AsyncSession], url: str, types: list[str] | None = None
) -> tuple[service.Subscription, str]:
    async with transaction(sm) as s:
        return await service.create_subscription(
            s, url=url, event_types=types or ["*"], allow_hosts=LOCAL
        )


async def _publish(sm: async_sessionmaker[AsyncSession], event: DomainEvent) -> int:
    async with transaction(sm) as s:
        return await service.record_event(s, event)


async def _rounds_until(sm, predicate, *, fetch_policy=OPEN, deadline_s=20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        await delivery.deliver_due(sm, fetch_policy=fetch_policy, backoff=FAST, batch=50)
        async with sm() as s:
            rows = await service.list_deliveries(s, limit=100)
        if predicate(rows):
            return rows
    raise TimeoutError(f"deliveries never matched: {rows}")


async def test_a_subscription_url_obeys_the_fetcher_rules(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    for url in ("http://127.0.0.1/x", "http://localhost/x", "ftp://a.example/", "http://10.0.0.1/"):
        with pytest.raises(NexusError) as caught:
            async with transaction(sessionmaker) as s:
                await service.create_subscription(s, url=url, event_types=["*"])
        assert caught.value.code == "E_INVALID_URL"
    sub, secret = await _subscribe(sessionmaker, "http://127.0.0.1:9/x")
    assert secret.startswith("whsec_") and len(secret) > 40
    with pytest.raises(NexusError) as weak:
        async with transaction(sessionmaker) as s:
            await service.create_subscription(
                s, url="https://a.example.org/", event_types=["*"], secret="short"
            )
    assert weak.value.code == "E_INVALID_REQUEST"
    assert not hasattr(sub, "secret")


async def test_one_delivery_per_matching_subscription_and_none_for_a_redelivered_event(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _subscribe(sessionmaker, "http://127.0.0.1:9/all")
    await _subscribe(sessionmaker, "http://127.0.0.1:9/ready", ["media.ready"])
    await _subscribe(sessionmaker, "http://127.0.0.1:9/failed", ["media.failed"])
    ready = DomainEvent(event="media.ready", entity_id="m1")
    assert await _publish(sessionmaker, ready) == 2
    assert await _publish(sessionmaker, ready) == 0  # the topic redelivered it
    async with sessionmaker() as s:
        rows = await service.list_deliveries(s, limit=10)
    assert {r.event_id for r in rows} == {ready.message_id} and len(rows) == 2


async def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sub, secret = await _subscribe(sessionmaker, "http://placeholder.invalid/")
    with Receiver(secret, fail_first=2) as receiver:
        async with transaction(sessionmaker) as s:
            await s.execute(
                text("UPDATE webhook_subscriptions SET url = :url WHERE id = :id"),
                {"url": receiver.url, "id": sub.id},
            )
        event = DomainEvent(event="media.ready", entity_id="m1", data={"x": 1})
        await _publish(sessionmaker, event)
        rows = await _rounds_until(sessionmaker, lambda rows: rows[0].status != "pending")
    assert rows[0].status == "delivered" and rows[0].attempts == 3
    assert rows[0].last_status_code == 204 and rows[0].delivered_at is not None
    assert receiver.received == [str(event.message_id)] and receiver.rejected == 0
    assert receiver.events[str(event.message_id)]["data"] == {"x": 1}


async def test_retry_after_sets_the_next_attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    slow = policy.Backoff(max_attempts=3, base_seconds=1, max_seconds=3600)
    with Receiver("unused") as receiver:
        _sub, secret = await _subscribe(sessionmaker, receiver.url)
        receiver.secret, receiver.fail_first, receiver.retry_after = secret, 1, "600"
        await _publish(sessionmaker, DomainEvent(event="e", entity_id="x"))
        sent = await delivery.deliver_due(sessionmaker, fetch_policy=OPEN, backoff=slow, batch=5)
    assert [s.outcome.kind for s in sent] == ["retry"]
    async with sessionmaker() as s:
        wait = await s.scalar(
            text("SELECT extract(epoch FROM next_attempt_at - now()) FROM webhook_deliveries")
        )
    assert 590 < float(wait) <= 600


async def test_a_receiver_that_stays_down_ends_dead_after_the_last_attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with Receiver("x") as receiver:
        url = receiver.url  # then it goes away: connection refused from now on
    await _subscribe(sessionmaker, url)
    await _publish(sessionmaker, DomainEvent(event="e", entity_id="x"))
    rows = await _rounds_until(sessionmaker, lambda rows: rows[0].status == "dead")
    assert rows[0].attempts == FAST.max_attempts
    assert "E_FETCH_FAILED" in (rows[0].last_error or "")
    async with sessionmaker() as s:
        dead = await service.list_deliveries(s, limit=10, status="dead")
    assert [d.id for d in dead] == [rows[0].id]


async def test_the_address_rules_apply_again_at_delivery_time(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with Receiver("x") as receiver:
        _sub, secret = await _subscribe(sessionmaker, receiver.url)  # allowed when created
        receiver.secret = secret
        await _publish(sessionmaker, DomainEvent(event="e", entity_id="x"))
        strict = FetchPolicy(allow_hosts=(), timeout=3.0)  # ... but not any more
        rows = await _rounds_until(
            sessionmaker, lambda rows: rows[0].status != "pending", fetch_policy=strict
        )
    assert rows[0].status == "dead" and "E_SSRF_BLOCKED" in (rows[0].last_error or "")
    assert receiver.requests == 0


async def test_deactivating_stops_pending_deliveries(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sub, _secret = await _subscribe(sessionmaker, "http://127.0.0.1:9/x")
    await _publish(sessionmaker, DomainEvent(event="e", entity_id="x"))
    async with transaction(sessionmaker) as s:
        after, stopped = await service.deactivate_subscription(s, sub.id)
    assert stopped == 1 and not after.active and after.deactivated_at is not None
    assert await delivery.deliver_due(sessionmaker, fetch_policy=OPEN, backoff=FAST, batch=5) == []
    assert await _publish(sessionmaker, DomainEvent(event="e", entity_id="y")) == 0
