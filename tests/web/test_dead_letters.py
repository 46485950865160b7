"""SPEC §10 "Dead letters" over HTTP: list (viewer), show, replay (admin, dry run by
default, only to our work topics, through the outbox, audited)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.deadletters import service as deadletters
from nexus.messaging.messages import BackfillRequested
from nexus.messaging.topics import Topics
from tests.support.operators import operator_token
from tests.support.webapp import Api, FakePublisher


async def _letter(
    sm: async_sessionmaker[AsyncSession],
    topic: str,
    value: bytes,
    *,
    code: str = deadletters.HANDLER_FAILED,
    offset: int | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    async with transaction(sm) as s:
        return await deadletters.record(
            s,
            deadletters.Captured(
                original_topic=topic,
                partition=0,
                offset=offset if offset is not None else uuid.uuid4().int % 10**9,
                key="k1",
                value=value,
                headers=headers or {"message_type": "backfill.requested"},
                error_code=code,
                error_message=f"{code} happened",
                worker_id="w-1",
            ),
        )


def _backfill_value() -> bytes:
    return BackfillRequested(
        default_library_id=uuid.uuid4(), source_library_id=uuid.uuid4(), user_id=uuid.uuid4()
    ).to_bytes()


async def _json(response: Any) -> Any:
    return await response.get_json()


async def test_list_filters_pages_and_show(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    topics = Topics.from_settings(settings)
    a = await _letter(sessionmaker, topics.backfill, b"{bad", code=deadletters.MESSAGE_INVALID)
    b = await _letter(sessionmaker, topics.ingest, _backfill_value())
    c = await _letter(sessionmaker, topics.backfill, _backfill_value())
    async with sessionmaker() as s, s.begin():
        await s.execute(
            text("UPDATE dead_letters SET replayed_at = now(), replay_count = 1 WHERE id = :i"),
            {"i": c},
        )
    viewer = await operator_token(sessionmaker, "viewer")

    first = await _json(await api.get("/internal/dead-letters?limit=2", token=viewer))
    assert [r["id"] for r in first["data"]] == [c, b] and first["page"]["has_more"]
    cursor = first["page"]["next_cursor"]
    second = await _json(
        await api.get(f"/internal/dead-letters?limit=2&cursor={cursor}", token=viewer)
    )
    assert [r["id"] for r in second["data"]] == [a] and not second["page"]["has_more"]
    row = second["data"][0]
    assert row["original_topic"] == topics.backfill and row["value_bytes"] == 4
    assert (row["error_code"], row["worker_id"], row["key"]) == ("E_MESSAGE_INVALID", "w-1", "k1")

    async def ids(query: str) -> list[int]:
        r = await api.get(f"/internal/dead-letters?{query}", token=viewer)
        assert r.status_code == 200, await r.get_data()
        return [row["id"] for row in (await _json(r))["data"]]

    assert await ids("topic=backfill") == [c, a]  # short name
    assert await ids(f"topic={topics.ingest}") == [b]  # full name
    assert await ids("error_code=E_MESSAGE_INVALID") == [a]
    assert await ids("replayed=false") == [b, a]
    assert await ids("replayed=true") == [c]

    for bad in ("error_code=E_MADE_UP", "replayed=perhaps", "limit=0", "cursor=nope"):
        r = await api.get(f"/internal/dead-letters?{bad}", token=viewer)
        assert r.status_code == 400, bad
        assert (await _json(r))["error"]["code"] in ("E_INVALID_REQUEST", "E_INVALID_CURSOR")

    shown = await _json(await api.get(f"/internal/dead-letters/{a}", token=viewer))
    assert base64.b64decode(shown["data"]["value"]) == b"{bad"
    assert shown["data"]["headers"] == {"message_type": "backfill.requested"}
    missing = await api.get("/internal/dead-letters/999999999", token=viewer)
    assert missing.status_code == 404
    assert (await _json(missing))["error"]["code"] == "E_NOT_FOUND"
    assert (await api.get("/internal/dead-letters/abc", token=viewer)).status_code == 400


async def test_roles(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession], tokens: dict[str, str]
) -> None:
    viewer, operator = tokens["viewer"], tokens["operator"]
    assert (await api.get("/internal/dead-letters")).status_code == 401
    assert (await api.get("/internal/dead-letters", token="nxop_unknown")).status_code == 401
    for token in (viewer, operator):
        r = await api.post("/internal/dead-letters/replay", token=token, json={})
        assert r.status_code == 403
        assert (await _json(r))["error"]["code"] == "E_FORBIDDEN"
    assert (await api.get("/internal/dead-letters", token=viewer)).status_code == 200


async def test_dry_run_writes_nothing_and_replay_goes_through_the_outbox(
    api: Api,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    publisher: FakePublisher,
) -> None:
    topics = Topics.from_settings(settings)
    value = _backfill_value()
    good = await _letter(
        sessionmaker,
        topics.backfill,
        value,
        headers={"message_type": "backfill.requested", "traceparent": "00-old-trace-01"},
    )
    not_json = await _letter(sessionmaker, topics.ingest, b"\xff\xfe not json")
    foreign = await _letter(sessionmaker, topics.events, value)
    other = await _letter(sessionmaker, topics.ingest, value, code=deadletters.MESSAGE_UNKNOWN)
    admin = await operator_token(sessionmaker, "admin")

    dry = await api.post(
        "/internal/dead-letters/replay", token=admin, json={"error_code": "E_HANDLER_FAILED"}
    )
    assert dry.status_code == 200
    body = (await _json(dry))["data"]
    assert body["dry_run"] is True and body["count"] == 1
    assert body["skipped"] == {"not_json": 1, "not_a_work_topic": 1}
    assert [x["id"] for x in body["letters"]] == [good] and body["letters"][0]["outbox_id"] is None
    async with sessionmaker() as s:
        assert await s.scalar(text("SELECT count(*) FROM outbox")) == 0
        assert await s.scalar(text("SELECT count(*) FROM operator_actions")) == 0
        assert await s.scalar(text("SELECT count(*) FROM dead_letters WHERE replay_count > 0")) == 0

    real = await api.post(
        "/internal/dead-letters/replay",
        token=admin,
        json={"error_code": "E_HANDLER_FAILED", "dry_run": False},
    )
    body = (await _json(real))["data"]
    assert body["dry_run"] is False and body["count"] == 1
    [sent] = body["letters"]
    assert sent["id"] == good and sent["outbox_id"]
    # Published right after commit with the original bytes and key, marked as a replay.
    [(topic, key, raw, headers)] = publisher.sent
    assert (topic, key, raw) == (topics.backfill, "k1", value)
    assert headers["replayed_from"] == f"dead-letter:{good}"
    assert headers["message_type"] == "backfill.requested" and "traceparent" not in headers
    async with sessionmaker() as s:
        marks = dict(
            (
                await s.execute(
                    text("SELECT id, replay_count FROM dead_letters WHERE replayed_at IS NOT NULL")
                )
            ).all()
        )
        actions = (
            await s.execute(
                text(
                    "SELECT target->>'dead_letter_id' AS letter, outcome, details "
                    "FROM operator_actions WHERE action = 'dead_letter.replay' ORDER BY id"
                )
            )
        ).all()
        outbox_topic = await s.scalar(
            text("SELECT topic FROM outbox WHERE id = :i"), {"i": sent["outbox_id"]}
        )
    assert marks == {good: 1}
    assert [(a.letter, a.outcome) for a in actions] == [
        (str(good), "replayed"),
        (str(not_json), "skipped_not_json"),
        (str(foreign), "skipped_not_a_work_topic"),
    ]
    assert actions[0].details["outbox_id"] == sent["outbox_id"]
    assert outbox_topic == topics.backfill

    # Replayed letters are left alone unless asked for; then they go again.
    again = await api.post(
        "/internal/dead-letters/replay", token=admin, json={"ids": [good], "dry_run": False}
    )
    assert (await _json(again))["data"]["count"] == 0
    forced = await api.post(
        "/internal/dead-letters/replay",
        token=admin,
        json={"ids": [good, other], "replayed": None, "dry_run": False},
    )
    assert sorted(x["id"] for x in (await _json(forced))["data"]["letters"]) == [good, other]
    async with sessionmaker() as s:
        count = await s.scalar(
            text("SELECT replay_count FROM dead_letters WHERE id = :i"), {"i": good}
        )
    assert count == 2 and len(publisher.sent) == 3


async def test_replay_body_is_validated(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    admin = await operator_token(sessionmaker, "admin")
    for body in (
        {"topci": "backfill"},  # a misspelt filter never widens the selection
        {"limit": 0},
        {"limit": 100000},
        {"ids": []},
        {"ids": ["x"]},
        {"ids": [2**70]},
        {"ids": [0]},
        {"dry_run": "maybe"},
        {"error_code": "E_MADE_UP"},
    ):
        r = await api.post("/internal/dead-letters/replay", token=admin, json=body)
        assert r.status_code == 400, body
        assert (await _json(r))["error"]["code"] == "E_INVALID_REQUEST"
    r = await api.post(
        "/internal/dead-letters/replay",
        token=admin,
        data=json.dumps([1, 2]),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400


async def test_a_topic_filter_that_cannot_be_a_topic_is_400_not_500(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # Found by schemathesis: a NUL in the filter reached PostgreSQL and failed as a 500.
    viewer = await operator_token(sessionmaker, "viewer")
    r = await api.get("/internal/dead-letters?topic=%C2%98%00", token=viewer)
    assert r.status_code == 400
    assert (await r.get_json())["error"]["code"] == "E_INVALID_REQUEST"
