"""Signed webhooks end to end (SPEC §10): API + agents + real broker + real receivers.

Events come from the pipeline itself: requeue messages on the `backfill-requeue` topic
(for jobs that do not exist) make the requeue agent write `backfill.requeue.result`
events through the outbox onto `<prefix>events`; the events agent records deliveries and
the leader's timer sends them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.operators.service import create_key
from tests.support.kafka import produce, read_until
from tests.support.operators import operator_headers
from tests.support.processes import Child, poll, start_agents, start_api
from tests.support.running import running
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e
EVENTS = 5
MAX_ATTEMPTS = 3
# Deliveries retried and given up within seconds, not minutes.
FAST_WEBHOOKS = {
    "webhook_max_attempts": MAX_ATTEMPTS,
    "webhook_backoff_base_seconds": 0.3,
    "webhook_backoff_max_seconds": 1.0,
    "webhook_interval_seconds": 0.3,
    "webhook_timeout_seconds": 3.0,
}


@pytest.fixture
def stack_settings(stack_settings: Settings) -> Settings:
    return stack_settings.model_copy(update=FAST_WEBHOOKS)


@pytest_asyncio.fixture
async def stack(stack_settings: Settings, logs_dir: Path) -> AsyncIterator[Settings]:
    """Only the API: the test starts (and restarts) the agents itself."""
    async with running(start_api(stack_settings, logs_dir)):
        yield stack_settings


def _headers(token: str) -> dict[str, str]:
    return operator_headers(token)


async def _requeue_events(settings: Settings) -> set[str]:
    """Requeue messages with their own ids: a message the restarted worker sees again is
    recognised and announced once (so one event per message)."""
    topic = Topics.from_settings(settings).backfill_requeue
    sent = set()
    for _ in range(EVENTS):
        ids = {k: str(uuid.uuid4()) for k in ("default_library_id", "source_library_id", "user_id")}
        message_id = str(uuid.uuid4())
        value = json.dumps({**ids, "requested_by": "e2e", "message_id": message_id}).encode()
        await produce(settings.kafka_bootstrap, topic, value, ids["default_library_id"].encode())
        sent.add(message_id)
    return sent


async def test_deliveries_are_signed_retried_across_a_restart_and_dead_lettered(
    stack: Settings, sessionmaker: async_sessionmaker[AsyncSession], logs_dir: Path
) -> None:
    settings = stack
    async with transaction(sessionmaker) as s:
        admin = (await create_key(s, name="hooks-admin", role="admin")).token
        viewer = (await create_key(s, name="hooks-viewer", role="viewer")).token
    with Receiver("x") as gone:
        down_url = gone.url
    # `gone` is closed now: its URL refuses connections for the rest of the test.
    # Its two failures ask for 3 s (Retry-After): the retries come from the new worker.
    with Receiver("set-below", fail_first=2, retry_after="3") as flaky:
        base = f"http://127.0.0.1:{settings.api_port}"
        async with httpx.AsyncClient(base_url=base, headers=_headers(admin)) as client:
            created = await client.post(
                "/internal/webhooks",
                json={"url": flaky.url, "event_types": ["backfill.requeue.result"]},
            )
            assert created.status_code == 201, created.text
            flaky.secret = created.json()["data"]["secret"]
            down = await client.post(
                "/internal/webhooks", json={"url": down_url, "event_types": ["*"]}
            )
            assert down.status_code == 201, down.text
            down_id = down.json()["data"]["id"]
            listed = (await client.get("/internal/webhooks")).json()["data"]
            assert len(listed) == 2 and all("secret" not in item for item in listed)
            private = await client.post(
                "/internal/webhooks", json={"url": "http://10.1.2.3/x", "event_types": ["*"]}
            )
            assert private.status_code == 400 and private.json()["error"]["code"] == "E_INVALID_URL"

        agents: Child = await start_agents(settings, logs_dir)
        try:
            requeues = await _requeue_events(settings)
            # The first two deliveries fail; restart the worker while retries are pending.
            await poll(_at_least(flaky, 2), deadline_s=60, what="first failed deliveries")
            agents.kill()
            before_restart = len(set(flaky.received))
            agents = await start_agents(settings, logs_dir, name="agents-2")
            await poll(_all_received(flaky), deadline_s=90, what="every event id received")
            dead = await poll(
                _dead(base, viewer, down_id), deadline_s=90, what="dead deliveries visible"
            )
            async with httpx.AsyncClient() as client:
                scrape = await client.get(f"http://127.0.0.1:{settings.agents_web_port}/metrics")
            metrics = scrape.text
        finally:
            agents.stop()
    assert flaky.rejected == 0
    assert before_restart < EVENTS  # the rest arrived through the restarted worker
    delivered = re.search(r'nexus_webhook_deliveries_total\{outcome="delivered"\} (\S+)', metrics)
    assert delivered and float(delivered[1]) >= EVENTS - before_restart
    assert len(set(flaky.received)) == EVENTS
    assert {e["data"]["message_id"] for e in flaky.events.values()} == requeues
    assert all(e["event"] == "backfill.requeue.result" for e in flaky.events.values())
    assert len(dead) == EVENTS
    assert all(d["attempts"] == MAX_ATTEMPTS and d["last_error"] for d in dead)
    letter = await read_until(
        settings.kafka_bootstrap,
        Topics.from_settings(settings).dead_letter,
        lambda v: v.get("original_topic") == Topics.from_settings(settings).events,
        deadline_s=30,
    )
    assert letter["error_code"] == "E_WEBHOOK_DEAD" and letter["id"] is None
    assert letter["key"] in {d["event_id"] for d in dead}


def _at_least(receiver: Receiver, requests: int) -> Any:
    async def check() -> bool:
        return receiver.requests >= requests

    return check


def _all_received(receiver: Receiver) -> Any:
    async def check() -> bool:
        return len(set(receiver.received)) >= EVENTS

    return check


def _dead(base: str, token: str, subscription_id: str) -> Any:
    async def check() -> list[dict[str, Any]] | None:
        async with httpx.AsyncClient(base_url=base, headers=_headers(token)) as client:
            r = await client.get(
                "/internal/webhook-deliveries",
                params={"status": "dead", "subscription_id": subscription_id},
            )
        rows: list[dict[str, Any]] = r.json()["data"]
        return rows if len(rows) >= EVENTS else None

    return check
