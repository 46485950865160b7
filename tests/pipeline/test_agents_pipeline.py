"""Real broker + real Faust worker process + real Postgres."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.agent_stats import stats as agent_stats
from tests.support.db import rows, scalar
from tests.support.kafka import produce, read_until
from tests.support.processes import Child


async def test_relay_publishes_outbox_rows_and_worker_completes_the_job(
    pipeline_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], agents: Child
) -> None:
    topics = Topics.from_settings(pipeline_settings)
    async with transaction(sessionmaker) as s:
        sc = await f.sharing_scenario(s, n_media=7)
    key = backfill.BackfillKey(sc["d"], sc["s"], sc["viewer"])
    await jobs.requeue_failed(
        sessionmaker, topics, key, request_id="req-relay", correlation_id="corr-relay"
    )
    # Nobody publishes after this commit: only the agents' leader relay can deliver it.
    await jobs.wait_for_status(
        sessionmaker, key, "completed", deadline_s=30, what="backfill job completed via relay"
    )
    assert await jobs.edge_count(sessionmaker, sc["d"]) == 7
    assert await jobs.library_row_count(sessionmaker, sc["d"]) == 7
    events = await rows(
        sessionmaker,
        "SELECT from_status, to_status, correlation_id FROM job_events "
        "WHERE job_type = 'backfill' ORDER BY id",
    )
    assert [tuple(e) for e in events] == [
        ("failed", "pending", "corr-relay"),
        ("pending", "running", "corr-relay"),
        ("running", "completed", "corr-relay"),
    ]
    published = await scalar(
        sessionmaker,
        "SELECT published_at IS NOT NULL FROM outbox WHERE topic = :t",
        t=topics.backfill,
    )
    assert published is True
    done = await read_until(
        pipeline_settings.kafka_bootstrap,
        topics.events,
        lambda v: (
            v.get("event") == "backfill.completed"
            and v.get("data", {}).get("user_id") == str(sc["viewer"])
        ),
    )
    assert done["correlation_id"] == "corr-relay"


async def test_undecodable_messages_go_to_the_dead_letter_topic(
    pipeline_settings: Settings, agents: Child
) -> None:
    topics = Topics.from_settings(pipeline_settings)
    marker = uuid.uuid4().hex
    await produce(
        pipeline_settings.kafka_bootstrap, topics.backfill, b"{not json " + marker.encode()
    )
    await produce(
        pipeline_settings.kafka_bootstrap,
        topics.backfill,
        json.dumps({"default_library_id": "nope", "marker": marker}).encode(),
    )
    letters = []
    for needle in (marker, "nope"):
        letters.append(
            await read_until(
                pipeline_settings.kafka_bootstrap,
                topics.dead_letter,
                lambda v, n=needle: n.encode() in base64.b64decode(v.get("value", "")),
            )
        )
    assert all(letter["original_topic"] == topics.backfill for letter in letters)
    assert all(letter["error_code"] == "E_MESSAGE_INVALID" for letter in letters)
    assert all("invalid backfill message" in letter["error_message"] for letter in letters)
    stats = await agent_stats(pipeline_settings)
    assert stats["counters"][f"dead_letter:{topics.backfill}"] == 2
    assert stats["leader"] is True
    assert set(stats["outbox"]) >= {"unpublished", "parked", "oldest_age_seconds"}


async def test_ready_view_reports_assignment(pipeline_settings: Settings, agents: Child) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://127.0.0.1:{pipeline_settings.agents_web_port}/nexus/ready")
    body = resp.json()
    topics = Topics.from_settings(pipeline_settings)
    assert resp.status_code == 200 and body["rebalancing"] is False
    assert any(p.startswith(f"{topics.backfill}:") for p in body["assigned_partitions"])
