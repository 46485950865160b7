"""Requeue over the `backfill-requeue` topic with a real Faust worker, and `nexus ops
requeue --wait` as a subprocess against the real broker."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.messaging.topics import Topics
from tests.support import backfill_jobs as jobs
from tests.support.agent_stats import counters
from tests.support.cli import run_ops
from tests.support.db import count, rows
from tests.support.kafka import produce, read_until
from tests.support.processes import Child, poll

pytestmark = pytest.mark.pipeline
NOW = datetime.now(UTC)


async def _seed(
    sm: async_sessionmaker[AsyncSession], status: str, n_media: int = 4
) -> dict[str, uuid.UUID]:
    error = {"last_error_code": "E_INTERNAL"} if status == "failed" else {}
    values = jobs.values_for(status, now=NOW, attempts=2, **error)
    return await jobs.seed(sm, n_media=n_media, **values)


def _value(key: dict[str, uuid.UUID], **extra: Any) -> dict[str, Any]:
    return {k: str(v) for k, v in key.items()} | extra


async def _send(settings: Settings, value: dict[str, Any] | bytes) -> None:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    await produce(settings.kafka_bootstrap, Topics.from_settings(settings).backfill_requeue, raw)


async def _result(settings: Settings, message_id: str) -> dict[str, Any]:
    return await read_until(
        settings.kafka_bootstrap,
        Topics.from_settings(settings).events,
        lambda v: (
            v.get("event") == "backfill.requeue.result"
            and v.get("data", {}).get("message_id") == message_id
        ),
        deadline_s=45,
    )


async def _job(sm: async_sessionmaker[AsyncSession], key: dict[str, uuid.UUID]) -> Any:
    return await jobs.job(sm, key, "status, attempts, lease_owner")


async def test_topic_requeue_outcomes(
    pipeline_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], agents: Child
) -> None:
    failed = await _seed(sessionmaker, "failed")
    running = await _seed(sessionmaker, "running")
    missing = {k: uuid.uuid4() for k in failed}
    ids = {name: str(uuid.uuid4()) for name in ("failed", "running", "missing")}
    await _send(
        pipeline_settings,
        _value(failed, requested_by="kcat-user", reason="fix", message_id=ids["failed"]),
    )
    await _send(pipeline_settings, _value(running, requested_by="ops", message_id=ids["running"]))
    await _send(pipeline_settings, _value(missing, requested_by="ops", message_id=ids["missing"]))

    done = await _result(pipeline_settings, ids["failed"])
    assert done["entity_id"] == str(failed["default_library_id"])
    assert done["data"]["outcome"] == "requeued" and done["data"]["idempotent"] is False
    assert done["data"]["status"] == "pending" and done["data"]["attempts"] == 0

    await jobs.wait_for_status(
        sessionmaker, failed, "completed", deadline_s=45, what="requeued job completed"
    )
    assert await jobs.edge_count(sessionmaker, failed["default_library_id"]) == 4

    async def audited() -> dict[str, Any] | None:
        # Each message is handled and audited on its own: the later two may still be in
        # flight when the first one's job completes (seen on a slow, loaded machine).
        actions = await rows(
            sessionmaker,
            "SELECT actor, action, outcome, details, target FROM operator_actions ORDER BY id",
        )
        found = {a.details["message_id"]: a for a in actions}
        return found if set(found) >= set(ids.values()) else None

    by_id: dict[str, Any] = await poll(audited, deadline_s=30, what="the three audit rows")
    assert set(by_id) == set(ids.values())
    first = by_id[ids["failed"]]
    assert (first.actor, first.action, first.outcome) == (
        "kcat-user",
        "backfill.requeue",
        "requeued",
    )
    assert first.details == {
        "reason": "fix",
        "message_id": ids["failed"],
        "via": "topic",
        "requested_by": "claimed",
    }
    assert first.target["user_id"] == str(failed["user_id"])

    noop = await _result(pipeline_settings, ids["running"])
    assert noop["data"]["outcome"] == "noop_running" and noop["data"]["idempotent"] is True
    row = await _job(sessionmaker, running)
    assert (row.status, row.attempts, row.lease_owner) == ("running", 2, "elsewhere")
    assert by_id[ids["running"]].outcome == "noop_running"

    gone = await _result(pipeline_settings, ids["missing"])
    assert gone["data"]["outcome"] == "not_found" and gone["data"]["status"] is None
    assert by_id[ids["missing"]].outcome == "not_found"

    # A redelivered message (same message_id) is recognised and changes nothing.
    await _send(
        pipeline_settings, _value(failed, requested_by="kcat-user", message_id=ids["failed"])
    )
    marker = str(uuid.uuid4())
    await _send(pipeline_settings, _value(missing, requested_by="ops", message_id=marker))
    await _result(pipeline_settings, marker)  # processed after the duplicate (same partition)
    row = await _job(sessionmaker, failed)
    assert row.status == "completed"
    assert (
        await count(
            sessionmaker,
            "SELECT count(*) FROM operator_actions WHERE details->>'message_id' = :m",
            m=ids["failed"],
        )
        == 1
    )


async def test_invalid_requeue_messages_are_dead_lettered(
    pipeline_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], agents: Child
) -> None:
    topics = Topics.from_settings(pipeline_settings)
    key = await _seed(sessionmaker, "failed")
    marker = uuid.uuid4().hex
    cases = {
        "json": b"{not json " + marker.encode(),
        "uuid": json.dumps(
            _value(key, requested_by="ops", marker=marker) | {"user_id": f"bad-{marker}"}
        ).encode(),
        "requested_by": json.dumps(_value(key, reason=f"no requester {marker}")).encode(),
        "empty_requested_by": json.dumps(
            _value(key, requested_by="", reason=f"empty {marker}")
        ).encode(),
    }
    for raw in cases.values():
        await _send(pipeline_settings, raw)
    needles = {
        "json": marker,
        "uuid": f"bad-{marker}",
        "requested_by": f"no requester {marker}",
        "empty_requested_by": f"empty {marker}",
    }
    for name, needle in needles.items():
        letter = await read_until(
            pipeline_settings.kafka_bootstrap,
            topics.dead_letter,
            lambda v, n=needle: n.encode() in base64.b64decode(v.get("value", "")),
            deadline_s=45,
        )
        assert letter["original_topic"] == topics.backfill_requeue, name
        assert letter["error_code"] == "E_MESSAGE_INVALID", name
        assert letter["error_message"].startswith("invalid backfill-requeue message"), name
    assert "requested_by" in letter["error_message"]
    row = await _job(sessionmaker, key)
    assert row.status == "failed"
    assert await count(sessionmaker, "SELECT count(*) FROM operator_actions") == 0


def _cli_key(key: dict[str, uuid.UUID]) -> list[str]:
    return [
        "--default-library",
        str(key["default_library_id"]),
        "--source-library",
        str(key["source_library_id"]),
        "--user",
        str(key["user_id"]),
    ]


async def test_ops_requeue_wait_prints_the_outcome(
    pipeline_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], agents: Child
) -> None:
    key = await _seed(sessionmaker, "completed", n_media=2)
    code, lines, stderr = await run_ops(
        pipeline_settings,
        "requeue",
        *_cli_key(key),
        "--reason",
        "cli test",
        "--requested-by",
        "bob@laptop",
        "--wait",
        "--timeout",
        "45",
    )
    assert code == 0, stderr
    message_id = lines[0]
    uuid.UUID(message_id)
    event = json.loads(lines[1])
    assert event["event"] == "backfill.requeue.result"
    assert event["data"]["message_id"] == message_id and event["data"]["outcome"] == "requeued"
    assert event["data"]["requested_by"] == "bob@laptop"

    async def completed() -> bool:
        row = await _job(sessionmaker, key)
        return row.status == "completed" and row.attempts == 1

    await poll(completed, deadline_s=45, what="job completed after CLI requeue")

    missing = {k: uuid.uuid4() for k in key}
    code, lines, _ = await run_ops(
        pipeline_settings, "requeue", *_cli_key(missing), "--wait", "--timeout", "45"
    )
    assert code == 1
    assert json.loads(lines[1])["data"]["outcome"] == "not_found"

    # Without --wait: prints the message id and returns at once.
    code, lines, _ = await run_ops(pipeline_settings, "requeue", *_cli_key(key))
    assert code == 0 and len(lines) == 1
    uuid.UUID(lines[0])
    await _result(pipeline_settings, lines[0])

    code, lines, _ = await run_ops(
        pipeline_settings, "jobs", "--user", str(key["user_id"]), "--json"
    )
    assert code == 0 and json.loads(lines[0])[0]["user_id"] == str(key["user_id"])

    code, _, stderr = await run_ops(pipeline_settings, "requeue", "--default-library", "nope")
    assert code == 2


async def test_replay_dead_letter_reproduces_the_original_value(
    pipeline_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], agents: Child
) -> None:
    """Round trip: dead-letter → dry run (produces nothing) → replay of the same bytes to
    the original topic, where the agent sees it again (still invalid: dead-lettered again).
    The agents' stats and metrics carry the backlog health."""
    topics = Topics.from_settings(pipeline_settings)
    marker = uuid.uuid4().hex
    await _send(pipeline_settings, f"{{broken {marker}".encode())
    await read_until(
        pipeline_settings.kafka_bootstrap,
        topics.dead_letter,
        lambda v: marker.encode() in base64.b64decode(v.get("value", "")),
    )
    code, lines, stderr = await run_ops(
        pipeline_settings, "replay-dead-letter", "--topic", "backfill-requeue", "--dry-run"
    )
    assert code == 0, stderr
    dry = [json.loads(line) for line in lines]
    assert dry[-1]["summary"] == "would replay" and dry[-1]["replayed"] == 1
    assert dry[0]["topic"] == topics.backfill_requeue and dry[0]["dry_run"] is True

    code, lines, stderr = await run_ops(pipeline_settings, "replay-dead-letter", "--limit", "1")
    assert code == 0, stderr
    assert json.loads(lines[-1])["replayed"] == 1

    async def dead_twice() -> bool:
        counted = await counters(pipeline_settings)
        return counted.get(f"dead_letter:{topics.backfill_requeue}") == 2

    await poll(dead_twice, deadline_s=30, what="replayed letter dead-lettered again")

    base = f"http://127.0.0.1:{pipeline_settings.agents_web_port}"
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{base}/nexus/stats")).json()
        metrics = (await client.get(f"{base}/metrics")).text
    assert stats["backfill_backlog"]["degraded"] is False
    assert set(stats["backfill_backlog"]) >= {
        "pending_count",
        "pending_age_p95_seconds",
        "oldest_pending_age_seconds",
        "degraded",
        "alerting",
    }
    assert "nexus_backfill_backlog_pending 0.0" in metrics
    assert "nexus_db_gauges_up 1.0" in metrics
