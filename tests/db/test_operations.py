"""Requeue-by-message service and backlog health on a real database (rolled back)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.messaging.messages import BackfillRequeueRequested
from nexus.messaging.topics import Topics
from nexus.sharing.health import Thresholds, backlog_health, evaluate
from nexus.sharing.requeue_service import requeue_from_message
from tests.conftest import make_settings
from tests.support import factories as f

TOPICS = Topics.from_settings(make_settings(topic_prefix="ops."))
NOW = datetime.now(UTC)


async def _scenario(session: AsyncSession, **job: object) -> dict[str, uuid.UUID]:
    sc = await f.sharing_scenario(session, n_media=1)
    return await f.backfill_job(session, sc["d"], sc["s"], sc["viewer"], **job)


def _msg(key: dict[str, uuid.UUID], **extra: object) -> BackfillRequeueRequested:
    return BackfillRequeueRequested(**key, requested_by="alice@host", reason="why", **extra)  # type: ignore[arg-type]


async def _outbox(session: AsyncSession) -> list[tuple[str, dict]]:
    rows = await session.execute(text("SELECT topic, payload FROM outbox ORDER BY id"))
    return [(r.topic, r.payload) for r in rows]


async def _actions(session: AsyncSession) -> list[tuple[str, str, dict]]:
    rows = await session.execute(
        text("SELECT actor, outcome, details FROM operator_actions ORDER BY id")
    )
    return [(r.actor, r.outcome, r.details) for r in rows]


async def test_requeue_message_resets_audits_and_announces(session: AsyncSession) -> None:
    key = await _scenario(session, status="failed", attempts=6, finished_at=NOW)
    msg = _msg(key)
    result = await requeue_from_message(session, msg, TOPICS)
    assert result.outcome == "requeued"
    status = await session.scalar(
        text("SELECT status FROM default_library_backfill_jobs WHERE user_id = :u"),
        {"u": key["user_id"]},
    )
    assert status == "pending"
    (t1, backfill_msg), (t2, event) = await _outbox(session)
    assert (t1, t2) == (TOPICS.backfill, TOPICS.events)
    assert backfill_msg["user_id"] == str(key["user_id"])
    assert event["event"] == "backfill.requeue.result"
    assert event["entity_id"] == str(key["default_library_id"])
    assert event["data"]["message_id"] == str(msg.message_id)
    assert event["data"]["outcome"] == "requeued" and event["data"]["status"] == "pending"
    assert event["data"]["attempts"] == 0 and event["data"]["idempotent"] is False
    assert await _actions(session) == [
        (
            "alice@host",
            "requeued",
            {
                "reason": "why",
                "message_id": str(msg.message_id),
                "via": "topic",
                # The requester is whatever the producer wrote (issue #11.7).
                "requested_by": "claimed",
            },
        )
    ]
    # The same message delivered again changes nothing and announces nothing.
    again = await requeue_from_message(session, msg, TOPICS)
    assert again.outcome == "duplicate" and again.event is None
    assert len(await _outbox(session)) == 2 and len(await _actions(session)) == 1


async def test_requeue_message_for_running_and_missing_jobs(session: AsyncSession) -> None:
    key = await _scenario(
        session,
        status="running",
        attempts=1,
        lease_token=uuid.uuid4(),
        lease_owner="w",
        lease_expires_at=NOW + timedelta(minutes=5),
    )
    running = await requeue_from_message(session, _msg(key), TOPICS)
    assert running.outcome == "noop_running" and running.event is not None
    assert running.event.data["idempotent"] is True and running.event.data["status"] == "running"
    missing_key = {k: uuid.uuid4() for k in key}
    missing = await requeue_from_message(session, _msg(missing_key), TOPICS)
    assert missing.outcome == "not_found" and missing.event is not None
    assert missing.event.data["status"] is None
    assert [o for _, o, _ in await _actions(session)] == ["noop_running", "not_found"]
    assert [t for t, _ in await _outbox(session)] == [TOPICS.events, TOPICS.events]


def test_health_rule() -> None:
    th = Thresholds(pending_count=10, p95_seconds=100, alert_after_seconds=60)

    def numbers(count: int, p95: float | None, oldest: float | None) -> dict:
        return {
            "pending_count": count,
            "pending_age_p95_seconds": p95,
            "oldest_pending_age_seconds": oldest,
        }

    ok = evaluate(numbers(10, 99, 500), 10, th)
    assert not ok.degraded and not ok.alerting
    fresh = evaluate(numbers(11, 5, 50), 0, th)  # over the count, but only just now
    assert fresh.degraded and not fresh.alerting
    sustained = evaluate(numbers(30, 5, 500), 11, th)
    assert sustained.degraded and sustained.alerting
    spike = evaluate(numbers(3, 120, 150), 0, th)  # old jobs, but not for long enough
    assert spike.degraded and not spike.alerting
    old = evaluate(numbers(3, 120, 161), 2, th)
    assert old.degraded and old.alerting
    empty = evaluate(numbers(0, None, None), 0, th)
    assert not empty.degraded and empty.pending_age_p95_seconds is None


async def test_backlog_health_on_crafted_rows(session: AsyncSession) -> None:
    th = Thresholds(pending_count=3, p95_seconds=1800, alert_after_seconds=900)
    now = await session.scalar(text("SELECT now()"))  # the instant the queries measure from
    ages_min = [1, 2, 3, 20, 40]
    for minutes in ages_min:
        await _scenario(session, status="pending", next_attempt_at=now - timedelta(minutes=minutes))
    await _scenario(
        session, status="pending", next_attempt_at=now + timedelta(minutes=5)
    )  # not due
    await _scenario(session, status="completed", finished_at=NOW)
    health = await backlog_health(session, th)
    assert health.pending_count == 5 and health.sustained_pending_count == 2
    assert health.degraded and not health.alerting
    assert 39 * 60 < (health.oldest_pending_age_seconds or 0) < 41 * 60
    assert 20 * 60 < (health.pending_age_p95_seconds or 0) < 40 * 60
    for minutes in (30, 31):
        await _scenario(session, status="pending", next_attempt_at=now - timedelta(minutes=minutes))
    health = await backlog_health(session, th)
    assert health.sustained_pending_count == 4 and health.alerting
    calm = await backlog_health(session, Thresholds(pending_count=500, p95_seconds=3600))
    assert not calm.degraded and not calm.alerting
