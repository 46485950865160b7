"""`/nexus/stats` of a real Faust worker (broker and Postgres real too) after real work.

Every outcome is produced honestly: a backfill that completes; one that fails (its tuple
is invalid); one that is retried (the database has a `lock_timeout`, as a DBA would set,
and the test holds the membership row the job needs until its first attempt gave up); one
whose lease expired under a dead worker and that the leader rescues; and a message no
agent can decode (dead-lettered).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents import routes
from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.agent_stats import stats as agent_stats
from tests.support.kafka import produce
from tests.support.locks import membership_locked
from tests.support.processes import Child, poll

SM = async_sessionmaker[AsyncSession]


@pytest.fixture
def agents_settings(pipeline_settings: Settings, short_lock_timeout: None) -> Settings:
    return pipeline_settings.model_copy(
        update={
            "backfill_retry_delays": (0.5, 1.0),
            "scheduler_interval_seconds": 0.2,
            "rescue_interval_seconds": 0.5,
            "metrics_db_cache_seconds": 0.5,
        }
    )


async def test_stats_report_lag_rates_dead_letters_retries_rescues_backlog_and_workers(
    agents_settings: Settings, sessionmaker: SM, agents: Child
) -> None:
    topics = Topics.from_settings(agents_settings)
    sc, (retried_source, rescued_source) = await jobs.more_sources(sessionmaker, n_media=2, more=2)
    viewer, d = sc["viewer"], sc["d"]
    completed = backfill.BackfillKey(d, sc["s"], viewer)
    invalid = backfill.BackfillKey(sc["s"], retried_source, viewer)
    retried = backfill.BackfillKey(d, retried_source, viewer)
    rescued = backfill.BackfillKey(d, rescued_source, viewer)

    await jobs.requeue_failed(sessionmaker, topics, completed)
    await jobs.requeue_failed(sessionmaker, topics, invalid)
    async with membership_locked(sessionmaker, retried_source, viewer):
        await jobs.requeue_failed(sessionmaker, topics, retried)

        async def retried_once() -> bool:
            # Any job of that source: the invalid tuple's job needs the same row.
            of_source = {"source_library_id": retried_source}
            events = await jobs.events(sessionmaker, of_source, "to_status, error_code")
            return any(to == "pending" and code for to, code in events)

        await poll(retried_once, what="a retry of the blocked job", deadline_s=60)
    # As if a worker claimed it and died: running, with a lease that has expired.
    async with transaction(sessionmaker) as s:
        await f.backfill_job(
            s,
            *rescued.as_dict().values(),
            status="running",
            attempts=1,
            lease_token=uuid.uuid4(),
            lease_owner="dead-worker",
            lease_expires_at=datetime.now(UTC) - timedelta(seconds=1),
        )
    await produce(agents_settings.kafka_bootstrap, topics.backfill, b"{not json")

    async def settled() -> dict[str, Any] | None:
        stats = await agent_stats(agents_settings)
        done = stats["jobs"]["backfill"] == {"completed": 3, "failed": 1}
        activity = stats["activity"]["backfill"]
        # The last hour's counts are re-read every 12 cache periods (6 s here).
        counted = (activity["failed_last_hour"], activity["completed_last_minute"]) == (1, 3)
        return stats if done and counted and stats["dead_letters"]["total"] == 1 else None

    stats = await poll(settled, what="every backfill finished", deadline_s=90)

    activity = dict(stats["activity"]["backfill"])
    assert activity.pop("last_hour_age_seconds") >= 0
    assert activity == {
        "retries_last_hour": 1,
        "rescues_last_hour": 1,
        "failed_last_hour": 1,
        "completed_last_minute": 3,
        "completed_per_second": 3 / 60,
    }
    assert stats["activity"]["ingest"]["completed_last_minute"] == 0
    assert (stats["retries_last_hour"], stats["rescues_last_hour"]) == (1, 1)
    assert set(stats["backlog"]) == {"backfill", "ingest", "operation"}
    assert stats["backlog"]["backfill"]["pending_count"] == 0
    assert stats["degraded"] is False and stats["alerting"] is False
    assert stats["dead_letters"] == {
        "total": 1,
        "unreplayed": 1,
        "last_hour": 1,
        "this_worker": 1,
        "this_worker_by_topic": {topics.backfill: 1},
    }

    # completed, invalid, the retried job twice, the rescued one, the undecodable message
    # (a scheduler re-delivery may add a duplicate, which counts too).
    assert set(stats["rates"]) == {route.name for _, route in routes.consumed(topics)}
    assert stats["rates"]["backfill"]["messages_last_minute"] >= 6
    assert stats["rates"]["backfill"]["messages_per_second"] > 0
    assert stats["rates"]["ingest"] == {"messages_last_minute": 0, "messages_per_second": 0}

    assert stats["leader"] is True
    (me,) = stats["workers"]
    assert (me["id"], me["alive"], me["this_worker"], me["status"]) == (
        stats["worker_id"],
        True,
        True,
        "running",
    )

    async def heartbeat_names_partitions() -> bool:
        (w,) = (await agent_stats(agents_settings))["workers"]
        return any(p.startswith(f"{topics.backfill}:") for p in w["assigned"])

    await poll(heartbeat_names_partitions, what="assignment in the workers row", deadline_s=30)

    backfill_lag = [p for p in stats["lag"] if p["topic"] == topics.backfill]
    assert sorted(p["partition"] for p in backfill_lag) == [0, 1, 2, 3]
    assert max(p["highwater"] or 0 for p in backfill_lag) >= 1

    async def caught_up() -> bool:
        lag = (await agent_stats(agents_settings))["lag"]
        return all(p["lag"] == 0 for p in lag if p["topic"] == topics.backfill)

    await poll(caught_up, what="the consumer caught up", deadline_s=30)
