"""Retention on the real database (SPEC §10 "Cancel and retention", nexus/jobs/retention.py).

Rows written before a cutoff and rows written after it, in committed transactions; the
prune removes exactly the old published outbox rows, the whole ledger chains of finished
(or deleted) jobs, the old replayed dead letters and the silent workers, and keeps the
rest: unpublished rows, the ledger of unfinished jobs and any chain with a recent row.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nexus.audit import chain as audit_chain
from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.ingest import jobs as ingest_jobs
from nexus.jobs import machine, retention
from nexus.jobs.machine import JobType
from nexus.messaging.topics import Topics
from nexus.operations import jobs as operation_jobs
from nexus.sharing.backfill import JOB
from tests.support import factories as f

SM = async_sessionmaker[AsyncSession]
JOB_TYPES: list[JobType] = [JOB, ingest_jobs.JOB, operation_jobs.JOB]


async def _backfill(sm: SM, *, finish: bool) -> dict[str, uuid.UUID]:
    """A backfill job and its chain: created, and completed when `finish`."""
    async with transaction(sm) as s:
        sc = await f.sharing_scenario(s, n_media=0)
        key = await f.backfill_job(s, sc["d"], sc["s"], sc["viewer"])
        await s.execute(
            text(
                "INSERT INTO job_events (job_type, job_key, from_status, to_status, actor) "
                "VALUES ('backfill', CAST(:k AS jsonb), NULL, 'pending', 'test')"
            ),
            {"k": _json_key(key)},
        )
    if finish:
        async with transaction(sm) as s:
            claim = await machine.claim(s, JOB, key, owner="w1", lease_seconds=30)
            assert claim is not None
            await machine.complete(s, JOB, claim, actor="w1")
    return key


def _json_key(key: dict[str, uuid.UUID]) -> str:
    return json.dumps({k: str(v) for k, v in sorted(key.items())})


async def _chain(sm: SM, job_type: str, key: dict[str, uuid.UUID]) -> list[str]:
    async with sm() as s:
        rows = await s.execute(
            text(
                "SELECT to_status FROM job_events WHERE job_type = :t "
                "AND job_key = CAST(:k AS jsonb) ORDER BY id"
            ),
            {"t": job_type, "k": _json_key(key)},
        )
        return [r[0] for r in rows]


async def _clock(sm: SM) -> datetime:
    async with sm() as s:
        now = await s.scalar(text("SELECT clock_timestamp()"))
    assert isinstance(now, datetime)
    return now


async def _outbox(sm: SM, topic: str, *, published: bool) -> int:
    async with transaction(sm) as s:
        return int(
            await s.scalar(
                text(
                    "INSERT INTO outbox (topic, key, payload, published_at) VALUES "
                    "(:t, 'k', '{}', CASE WHEN :p THEN clock_timestamp() END) RETURNING id"
                ),
                {"t": topic, "p": published},
            )
        )


async def _dead_letter(sm: SM, offset: int, *, replayed: bool) -> int:
    async with transaction(sm) as s:
        return int(
            await s.scalar(
                text(
                    'INSERT INTO dead_letters (original_topic, partition, "offset", value, '
                    "error_code, error_message, replayed_at, replay_count) VALUES "
                    "('nexus.ingest', 0, :o, '\\x00', 'E_X', 'x', "
                    "CASE WHEN :r THEN clock_timestamp() END, CASE WHEN :r THEN 1 ELSE 0 END) "
                    "RETURNING id"
                ),
                {"o": offset, "r": replayed},
            )
        )


async def _worker(sm: SM, worker_id: str, status: str) -> None:
    async with transaction(sm) as s:
        await s.execute(
            text(
                "INSERT INTO workers (id, host, pid, status, assigned, version) "
                "VALUES (:id, 'h', 1, :s, '[]', 'v')"
            ),
            {"id": worker_id, "s": status},
        )


async def _ids(sm: SM, table: str) -> set[Any]:
    async with sm() as s:
        return set((await s.execute(text(f"SELECT id FROM {table}"))).scalars())


async def _prune_all(sm: SM, before: datetime, batch: int) -> dict[str, int]:
    counts = {"outbox": 0, "job_events": 0, "dead_letters": 0, "workers": 0}
    while True:
        async with transaction(sm) as s:
            n = await retention.prune_outbox(s, before=before, batch=batch)
        counts["outbox"] += n
        if n < batch:
            break
    after: int | None = 0
    while after is not None:
        async with transaction(sm) as s:
            page = await retention.prune_ledger_page(
                s, JOB_TYPES, before=before, after=after, batch=batch
            )
        counts["job_events"] += page.deleted
        after = page.next_after
    async with transaction(sm) as s:
        counts["dead_letters"] = await retention.prune_dead_letters(s, before=before, batch=batch)
        counts["workers"] = await retention.prune_workers(s, before=before)
    return counts


async def _verify(engine: AsyncEngine) -> audit_chain.Report:
    async with engine.connect() as conn:
        return await audit_chain.verify(conn)


async def test_prune_removes_old_finished_state_and_keeps_the_rest(
    sessionmaker: SM, settings: Settings, engine: AsyncEngine
) -> None:
    sm = sessionmaker
    topics = Topics.from_settings(settings)
    # ---- before the cutoff
    finished = await _backfill(sm, finish=True)
    unfinished = await _backfill(sm, finish=False)
    requeued_later = await _backfill(sm, finish=True)
    orphan = await _backfill(sm, finish=True)
    async with transaction(sm) as s:  # a job row deleted (membership removed): chain orphaned
        await s.execute(
            text("DELETE FROM default_library_backfill_jobs WHERE user_id = :u"),
            {"u": orphan["user_id"]},
        )
    async with transaction(sm) as s:
        (media_id,) = await f.media(s)
        await ingest_jobs.enqueue(
            s, media_id, topics, actor="t", request_id=None, correlation_id=None
        )
    ingest_key = {"media_id": media_id}
    async with transaction(sm) as s:
        claim = await machine.claim(s, ingest_jobs.JOB, ingest_key, owner="w1", lease_seconds=30)
        assert claim is not None
        await machine.cancel(
            s,
            ingest_jobs.JOB,
            ingest_key,
            actor="op",
            message="stop",
            request_id=None,
            correlation_id=None,
        )
    old_published = await _outbox(sm, "nexus.events", published=True)
    old_unpublished = await _outbox(sm, "nexus.events", published=False)
    old_replayed = await _dead_letter(sm, 1, replayed=True)
    old_unreplayed = await _dead_letter(sm, 2, replayed=False)
    await _worker(sm, "gone-worker", "stopped")

    cutoff = await _clock(sm)

    # ---- after the cutoff
    recent = await _backfill(sm, finish=True)
    async with transaction(sm) as s:
        await machine.reset_to_pending(
            s, JOB, requeued_later, actor="op", request_id=None, correlation_id=None
        )
        await s.execute(  # it ran again and completed, inside the window
            text(
                "UPDATE default_library_backfill_jobs SET status = 'completed', "
                "finished_at = now() WHERE user_id = :u"
            ),
            {"u": requeued_later["user_id"]},
        )
    recent_published = await _outbox(sm, "nexus.events", published=True)
    await _worker(sm, "live-worker", "running")
    unfinished_before = await _chain(sm, "backfill", unfinished)
    recent_before = await _chain(sm, "backfill", recent)
    requeued_before = await _chain(sm, "backfill", requeued_later)

    counts = await _prune_all(sm, cutoff, batch=2)  # small pages: the cursor is exercised

    assert await _chain(sm, "backfill", finished) == []
    assert await _chain(sm, "backfill", orphan) == []
    assert await _chain(sm, "ingest", ingest_key) == []
    assert await _chain(sm, "backfill", unfinished) == unfinished_before == ["pending"]
    assert await _chain(sm, "backfill", recent) == recent_before
    assert await _chain(sm, "backfill", requeued_later) == requeued_before
    assert requeued_before[-1] == "pending" and len(requeued_before) == 4
    outbox_left = await _ids(sm, "outbox")
    assert old_published not in outbox_left
    assert {old_unpublished, recent_published} <= outbox_left
    assert await _ids(sm, "dead_letters") == {old_unreplayed}
    assert old_replayed not in await _ids(sm, "dead_letters")
    assert await _ids(sm, "workers") == {"live-worker"}
    assert counts["job_events"] == 3 + 3 + 3  # finished, orphan, ingest (create, run, cancel)
    assert counts["dead_letters"] == 1 and counts["workers"] == 1
    # Jobs themselves are never pruned: only their ledger.
    async with sm() as s:
        status = await s.scalar(
            text("SELECT status FROM default_library_backfill_jobs WHERE user_id = :u"),
            {"u": finished["user_id"]},
        )
    assert status == "completed"

    # The audit chains (SPEC §10 "Audit") still verify: whole chains went, none was cut.
    report = await _verify(engine)
    assert report.clean, [str(p) for p in report.problems]
    assert report.rows["job_events"] > 0
    # A job whose chain was pruned moves again: its new ledger is a fresh, valid chain.
    async with transaction(sm) as s:
        assert await machine.reset_to_pending(
            s, JOB, finished, actor="op", request_id=None, correlation_id=None
        )
    assert await _chain(sm, "backfill", finished) == ["pending"]
    report = await _verify(engine)
    assert report.clean, [str(p) for p in report.problems]

    # A second pass finds nothing more.
    assert await _prune_all(sm, cutoff, batch=2) == {
        "outbox": 0,
        "job_events": 0,
        "dead_letters": 0,
        "workers": 0,
    }


async def test_a_chain_being_written_is_skipped_until_its_writer_commits(sessionmaker: SM) -> None:
    # The ledger's insert trigger (audit chains) holds this advisory lock while it appends
    # to the chain: the prune must neither wait for it nor delete under it.
    key = await _backfill(sessionmaker, finish=True)
    cutoff = await _clock(sessionmaker)
    writer = sessionmaker()
    await writer.begin()
    try:
        await writer.execute(
            text(
                "SELECT pg_advisory_xact_lock(hashtextextended("
                "'nexus.job_events|backfill|' || CAST(:k AS jsonb)::text, 0))"
            ),
            {"k": _json_key(key)},
        )
        assert (await _prune_all(sessionmaker, cutoff, batch=10))["job_events"] == 0
        assert await _chain(sessionmaker, "backfill", key) == ["pending", "running", "completed"]
    finally:
        await writer.rollback()
        await writer.close()
    assert (await _prune_all(sessionmaker, cutoff, batch=10))["job_events"] == 3
    assert await _chain(sessionmaker, "backfill", key) == []
