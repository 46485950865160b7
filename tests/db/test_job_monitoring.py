"""The SREs' job numbers and histories (nexus/jobs/monitoring.py) on the real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.ingest.jobs import JOB as INGEST_JOB
from nexus.jobs import machine, monitoring, outbox
from nexus.jobs.monitoring import HourActivity
from nexus.messaging.messages import DomainEvent, IngestRequested
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from nexus.sharing.backfill import JOB
from tests.conftest import make_settings
from tests.support import backfill_jobs as jobs
from tests.support import factories as f

DELAYS = (10.0, 20.0)
TOPICS = Topics.from_settings(make_settings())


async def _claimed(session: AsyncSession) -> machine.Claim:
    sc = await f.sharing_scenario(session, n_media=1)
    key = await f.backfill_job(session, sc["d"], sc["s"], sc["viewer"])
    claim = await machine.claim(session, JOB, key, owner="w1", lease_seconds=30)
    assert claim is not None
    return claim


async def _fail(session: AsyncSession, claim: machine.Claim, *, terminal: bool) -> None:
    await machine.fail(
        session, JOB, claim, code="E_X", message="no", delays=DELAYS, terminal=terminal, actor="w"
    )


async def test_activity_tells_retries_rescues_failures_and_completions_apart(
    session: AsyncSession,
) -> None:
    await _fail(session, await _claimed(session), terminal=False)  # a retry
    await _fail(session, await _claimed(session), terminal=True)  # a failure
    await machine.complete(session, JOB, await _claimed(session), actor="w1")  # completed
    released = await _claimed(session)
    await session.execute(
        text("UPDATE default_library_backfill_jobs SET lease_owner = 'leaving' WHERE user_id = :u"),
        {"u": released.key["user_id"]},
    )
    await machine.release_held(session, JOB, owner="leaving")  # a drain: neither
    rescued = await _claimed(session)
    await session.execute(
        text(
            "UPDATE default_library_backfill_jobs SET lease_expires_at = now() - interval '1 s' "
            "WHERE user_id = :u"
        ),
        {"u": rescued.key["user_id"]},
    )
    assert len(await machine.rescue_expired(session, JOB, delays=DELAYS, actor="leader")) == 1

    assert (await monitoring.hour_activity(session))["backfill"] == HourActivity(
        retries_last_hour=1, rescues_last_hour=1, failed_last_hour=1
    )
    assert await monitoring.completed_last_minute(session) == {"backfill": 1}
    # Age the ledger: a completion of two minutes ago is no longer "last minute"; nothing
    # of two hours ago counts at all.
    await session.execute(text("UPDATE job_events SET at = now() - interval '2 minutes'"))
    assert await monitoring.completed_last_minute(session) == {}
    assert (await monitoring.hour_activity(session))["backfill"] == HourActivity(
        retries_last_hour=1, rescues_last_hour=1, failed_last_hour=1
    )
    await session.execute(text("UPDATE job_events SET at = now() - interval '2 hours'"))
    assert await monitoring.hour_activity(session) == {}


async def test_recent_failures_are_the_newest_failed_jobs_of_every_type(
    session: AsyncSession,
) -> None:
    now = datetime.now(UTC)
    keys = []
    for age_minutes in (30, 10):
        failed = await jobs.seed(
            session,
            n_media=1,
            status="failed",
            attempts=3,
            last_error_code="E_BACKFILL_TUPLE_INVALID",
            last_error_message="source library missing",
            next_attempt_at=now - timedelta(minutes=age_minutes, seconds=1),
            finished_at=now - timedelta(minutes=age_minutes),
        )
        keys.append(failed)
    await jobs.seed(session, n_media=1, status="pending")
    (media_id,) = await f.media(session)
    await session.execute(
        text(
            "INSERT INTO ingest_jobs (media_id, status, next_attempt_at, finished_at, "
            "last_error_code, last_error_message) VALUES (:m, 'failed', :at, :at, "
            "'E_FETCH_FAILED', 'HTTP 404')"
        ),
        {"m": media_id, "at": now - timedelta(minutes=20)},
    )

    failed = await monitoring.recent_failures(session, [JOB, INGEST_JOB], limit=10)
    assert [(j.job_type, j.last_error_code) for j in failed] == [
        ("backfill", "E_BACKFILL_TUPLE_INVALID"),
        ("ingest", "E_FETCH_FAILED"),
        ("backfill", "E_BACKFILL_TUPLE_INVALID"),
    ]
    assert failed[0].key == {k: str(v) for k, v in keys[1].items()}
    assert failed[0].attempts == 3 and failed[0].last_error_message == "source library missing"
    assert failed[1].key == {"media_id": str(media_id)}
    newest_two = await monitoring.recent_failures(session, [JOB, INGEST_JOB], limit=2)
    assert [j.job_type for j in newest_two] == ["backfill", "ingest"]


async def test_timeline_of_a_backfill_job_keeps_to_its_own_tuple(session: AsyncSession) -> None:
    sc = await f.sharing_scenario(session, n_media=1)
    other_source = await f.library(session, sc["owner"])
    await f.member(session, other_source, sc["viewer"])
    mine = backfill.BackfillKey(sc["d"], sc["s"], sc["viewer"])
    theirs = backfill.BackfillKey(sc["d"], other_source, sc["viewer"])  # same message key
    for key in (mine, theirs):
        await f.backfill_job(session, *key.as_dict().values(), status="failed", finished_at=now())
        await backfill.requeue(session, key, TOPICS, actor="op", request_id="r", correlation_id="c")
    event = DomainEvent(
        event="backfill.completed",
        entity_id=str(sc["d"]),
        data={k: str(v) for k, v in mine.as_dict().items()},
    )
    await outbox.enqueue(session, TOPICS.events, event.key, event)

    entries = await monitoring.timeline(
        session, JOB, mine.as_dict(), message_key=str(mine.default_library_id)
    )
    assert [(e["kind"], e.get("to_status"), e.get("topic")) for e in entries] == [
        ("job_event", "pending", None),
        ("outbox", None, TOPICS.backfill),
        ("outbox", None, TOPICS.events),
    ]
    assert entries[1]["payload"]["source_library_id"] == str(sc["s"])
    without_messages = await monitoring.timeline(session, JOB, mine.as_dict(), message_key=None)
    assert [e["kind"] for e in without_messages] == ["job_event"]


async def test_timeline_of_a_one_column_key_takes_every_message_with_that_key(
    session: AsyncSession,
) -> None:
    media_id, other = await f.media(session, n=2)
    for m in (media_id, other):
        message = IngestRequested(media_id=m)
        await outbox.enqueue(session, TOPICS.ingest, message.key, message)
    event = DomainEvent(event="media.failed", entity_id=str(media_id), data={"error_code": "E"})
    await outbox.enqueue(session, TOPICS.events, event.key, event)

    entries = await monitoring.timeline(
        session, INGEST_JOB, {"media_id": media_id}, message_key=str(media_id)
    )
    assert [(e["kind"], e["topic"]) for e in entries] == [
        ("outbox", TOPICS.ingest),
        ("outbox", TOPICS.events),
    ]


def now() -> datetime:
    return datetime.now(UTC)


async def test_get_job_is_none_for_an_unknown_key(session: AsyncSession) -> None:
    key = {"default_library_id": uuid.uuid4(), "source_library_id": uuid.uuid4()}
    assert await monitoring.get_job(session, JOB, {**key, "user_id": uuid.uuid4()}) is None
