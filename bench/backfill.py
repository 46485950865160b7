"""Backfill benchmark: one big library materialised through the whole pipeline vs raw SQL.

A source library of N media (default 100,000; BENCH_BACKFILL_MEDIA) is shared with a new
member who accepts the invite through the real path: `accept_invite` (membership + pending
job + outbox row, one transaction) → publish after commit (the API's path) → broker →
Faust worker → claim → chunked materialisation → completion. `pipeline_seconds` runs from
the accept transaction to the completion transaction, both read from the database clock
(`job_events.at`), so polling does not blur it.

The baseline, in the same run and database: one `INSERT ... SELECT` of the same edges and
the same default rows into another user's fresh default library, one transaction, timed on
the client (commit included). It runs once before and once after the pipeline; the mean
is `raw_insert_seconds` (both are printed).

Prints ONE JSON object: {media, pipeline_seconds, raw_insert_seconds, ratio, chunk_size,
...details}. Run: `python bench/backfill.py` (chunk size: NEXUS_BACKFILL_CHUNK_SIZE).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench._common import Stack, analyze, stack
from nexus.db.tx import transaction
from nexus.jobs import outbox
from nexus.libraries import invites
from nexus.libraries.states import LibraryRole
from nexus.messaging.topics import Topics
from runtime.kafka import KafkaPublisher
from tests.support import backfill_jobs as jobs
from tests.support import factories as f

SM = async_sessionmaker[AsyncSession]


async def _account(sm: SM) -> tuple[uuid.UUID, uuid.UUID]:
    async with transaction(sm) as s:
        return await f.account(s)


async def _raw_insert(sm: SM, source: uuid.UUID) -> float:
    """The same rows materialise writes, in one statement each, one transaction."""
    _, d = await _account(sm)
    started = time.perf_counter()
    async with transaction(sm) as s:
        await s.execute(
            text(
                "INSERT INTO default_library_closure_edges "
                "(default_library_id, media_id, source_library_id) "
                "SELECT :d, media_id, :s FROM library_media WHERE library_id = :s "
                "ON CONFLICT DO NOTHING"
            ),
            {"d": d, "s": source},
        )
        await s.execute(
            text(
                "INSERT INTO library_media (library_id, media_id) "
                "SELECT :d, media_id FROM library_media WHERE library_id = :s "
                "ON CONFLICT DO NOTHING"
            ),
            {"d": d, "s": source},
        )
    return time.perf_counter() - started


async def _pipeline(st: Stack, owner: uuid.UUID, lib: uuid.UUID) -> dict[str, Any]:
    sm, topics = st.sm, Topics.from_settings(st.settings)
    user, d = await _account(sm)
    async with transaction(sm) as s:
        invite = await invites.create_invite(s, owner, lib, user, LibraryRole.MEMBER)
    publisher = KafkaPublisher(st.settings.kafka_bootstrap, timeout_seconds=10)
    try:
        # Warm the producer so the measured path does not include its first connection.
        await publisher.publish(topics.events, None, b"{}", {})
        async with transaction(sm) as s:
            await invites.accept_invite(
                s, user, invite.id, topics, request_id="bench", correlation_id="bench"
            )
            ids = outbox.enqueued_ids(s)
        await outbox.publish_rows(sm, publisher, ids)
    finally:
        await publisher.close()
    deadline = time.monotonic() + 900
    while True:
        async with sm() as s:
            status = await s.scalar(
                text("SELECT status FROM default_library_backfill_jobs WHERE user_id = :u"),
                {"u": user},
            )
        if status in ("completed", "failed"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("backfill did not finish")
        await asyncio.sleep(0.05)
    async with sm() as s:
        events = (
            await s.execute(
                text(
                    "SELECT to_status, error_code, extract(epoch FROM at) AS at FROM job_events "
                    "WHERE job_key->>'user_id' = :u ORDER BY id"
                ),
                {"u": str(user)},
            )
        ).all()
        edges = await s.scalar(
            text(
                "SELECT count(*) FROM default_library_closure_edges WHERE default_library_id = :d"
            ),
            {"d": d},
        )
    if status != "completed":
        raise RuntimeError(f"backfill ended {status}: {events}")
    accepted, claimed, done = events[0].at, events[1].at, events[-1].at
    return {
        "pipeline_seconds": float(done - accepted),
        "accept_to_claim_seconds": float(claimed - accepted),
        "claim_to_completed_seconds": float(done - claimed),
        "transitions": [e.to_status for e in events],
        "edges": int(edges or 0),
    }


async def main() -> dict[str, Any]:
    n = int(os.environ.get("BENCH_BACKFILL_MEDIA", "100000"))
    overrides: dict[str, Any] = {}
    if os.environ.get("NEXUS_BACKFILL_CHUNK_SIZE"):
        overrides["backfill_chunk_size"] = int(os.environ["NEXUS_BACKFILL_CHUNK_SIZE"])
    async with stack(**overrides) as st:
        owner, lib = await jobs.shared_library(st.sm, n)
        await analyze(st.dsn)
        await st.start_worker()
        raw_before = await _raw_insert(st.sm, lib)
        pipe = await _pipeline(st, owner, lib)
        raw_after = await _raw_insert(st.sm, lib)
    if pipe["edges"] != n:
        raise RuntimeError(f"materialised {pipe['edges']} of {n}")
    raw = (raw_before + raw_after) / 2
    return {
        "media": n,
        "pipeline_seconds": round(pipe["pipeline_seconds"], 3),
        "raw_insert_seconds": round(raw, 3),
        "ratio": round(pipe["pipeline_seconds"] / raw, 3),
        "chunk_size": st.settings.backfill_chunk_size,
        "raw_insert_runs_seconds": [round(raw_before, 3), round(raw_after, 3)],
        "accept_to_claim_seconds": round(pipe["accept_to_claim_seconds"], 3),
        "claim_to_completed_seconds": round(pipe["claim_to_completed_seconds"], 3),
        "transitions": pipe["transitions"],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
