"""Dead letters end to end (issue #13.5, SPEC §10) with a real broker, a real Faust worker
and the API as a process: a poison message lands in `dead_letters` and on the dead-letter
topic in the SPEC shape; after the fix, a replay over HTTP completes the job."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.operators.service import create_key
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.db import rows
from tests.support.kafka import produce, read_until
from tests.support.operators import operator_headers
from tests.support.processes import Child, poll, start_api

pytestmark = pytest.mark.pipeline

SPEC_FIELDS = {
    "original_topic",
    "partition",
    "offset",
    "key",
    "value",
    "headers",
    "error_code",
    "error_message",
    "worker_id",
    "at",
}

# The fault: the database refuses to move this tuple's job out of `failed` (as a check
# the data violates would), so the requeue handler raises outside any job's failure path.
_REFUSE = """
CREATE FUNCTION refuse_requeue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.source_library_id = '{source}' AND NEW.status = 'pending' THEN
    RAISE EXCEPTION 'source library {source} is quarantined' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
--
CREATE TRIGGER refuse_requeue BEFORE UPDATE ON default_library_backfill_jobs
  FOR EACH ROW EXECUTE FUNCTION refuse_requeue();
"""


async def _letters(sm: async_sessionmaker[AsyncSession], topic: str) -> list[Any]:
    return await rows(
        sm,
        'SELECT id, original_topic, partition, "offset", key, value, headers, '
        "error_code, error_message, worker_id, replayed_at, replay_count "
        "FROM dead_letters WHERE original_topic = :t ORDER BY id",
        t=topic,
    )


async def test_poison_message_then_fix_then_replay_over_http_completes_the_job(
    pipeline_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    agents: Child,
    logs_dir: Path,
) -> None:
    topics = Topics.from_settings(pipeline_settings)
    async with transaction(sessionmaker) as s:
        sc = await f.sharing_scenario(s, n_media=3)
        key = await f.backfill_job(
            s,
            sc["d"],
            sc["s"],
            sc["viewer"],
            status="failed",
            attempts=5,
            finished_at=datetime.now(UTC),
            last_error_code="E_INTERNAL",
        )
        admin = (await create_key(s, name="admin-dl", role="admin")).token
        viewer = (await create_key(s, name="viewer-dl", role="viewer")).token
        for statement in _REFUSE.format(source=sc["s"]).split("--"):
            await s.execute(text(statement))

    # The poison: a well-formed requeue message whose handler fails; and a malformed one.
    requeue = {k: str(v) for k, v in key.items()} | {"requested_by": "ops", "reason": "fix"}
    value = json.dumps(requeue).encode()
    await produce(
        pipeline_settings.kafka_bootstrap,
        topics.backfill_requeue,
        value,
        key=str(key["default_library_id"]).encode(),
    )
    garbage = b"\x00\xffnot json " + uuid.uuid4().hex.encode()
    await produce(pipeline_settings.kafka_bootstrap, topics.backfill, garbage)

    poisoned = await poll(
        lambda: _letters(sessionmaker, topics.backfill_requeue),
        deadline_s=45,
        what="the requeue message recorded as a dead letter",
    )
    [row] = poisoned
    assert row.error_code == "E_HANDLER_FAILED" and "quarantined" in row.error_message
    assert bytes(row.value) == value and row.key == str(key["default_library_id"])
    assert row.partition is not None and row.offset is not None and row.worker_id
    [bad] = await poll(
        lambda: _letters(sessionmaker, topics.backfill), deadline_s=45, what="malformed letter"
    )
    assert bad.error_code == "E_MESSAGE_INVALID" and bytes(bad.value) == garbage

    # On the topic: the SPEC §10 shape, the same bytes, the row's id.
    letter = await read_until(
        pipeline_settings.kafka_bootstrap,
        topics.dead_letter,
        lambda v: v.get("id") == row.id,
        deadline_s=30,
    )
    assert set(letter) >= SPEC_FIELDS
    assert base64.b64decode(letter["value"]) == value
    assert (letter["original_topic"], letter["partition"], letter["offset"]) == (
        topics.backfill_requeue,
        row.partition,
        row.offset,
    )
    assert letter["error_code"] == "E_HANDLER_FAILED" and letter["worker_id"] == row.worker_id
    assert await jobs.status(sessionmaker, key) == "failed"

    api = await start_api(pipeline_settings, logs_dir)
    try:
        base = f"http://127.0.0.1:{pipeline_settings.api_port}"

        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            listed = await client.get("/internal/dead-letters", headers=operator_headers(viewer))
            assert listed.status_code == 200
            assert {x["id"] for x in listed.json()["data"]} == {row.id, bad.id}
            denied = await client.post(
                "/internal/dead-letters/replay",
                headers=operator_headers(viewer),
                json={"dry_run": False},
            )
            assert denied.status_code == 403

            # The fix.
            async with transaction(sessionmaker) as s:
                await s.execute(
                    text("DROP TRIGGER refuse_requeue ON default_library_backfill_jobs")
                )

            dry = await client.post(
                "/internal/dead-letters/replay", headers=operator_headers(admin), json={}
            )
            assert dry.status_code == 200
            assert dry.json()["data"]["count"] == 1
            assert dry.json()["data"]["skipped"] == {"not_json": 1}
            assert await jobs.status(sessionmaker, key) == "failed"  # a dry run sends nothing

            replayed = await client.post(
                "/internal/dead-letters/replay",
                headers=operator_headers(admin),
                json={"topic": "backfill-requeue", "dry_run": False},
            )
            assert replayed.status_code == 200, replayed.text
            assert [x["id"] for x in replayed.json()["data"]["letters"]] == [row.id]
    finally:
        api.stop()

    await jobs.wait_for_status(
        sessionmaker, key, "completed", deadline_s=60, what="the requeued job after the replay"
    )
    [after] = await _letters(sessionmaker, topics.backfill_requeue)
    assert after.replayed_at is not None and after.replay_count == 1
    assert await jobs.edge_count(sessionmaker, key["default_library_id"]) == 3
    audit = await rows(
        sessionmaker,
        "SELECT actor, action, outcome FROM operator_actions "
        "WHERE action IN ('dead_letter.replay', 'backfill.requeue') ORDER BY id",
    )
    assert [(a.actor, a.action, a.outcome) for a in audit] == [
        ("admin-dl", "dead_letter.replay", "replayed"),
        ("ops", "backfill.requeue", "requeued"),
    ]
