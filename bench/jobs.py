"""Job throughput benchmark: no-op backfill jobs through the pipeline vs a raw asyncpg loop.

N jobs (default 10,000; BENCH_JOBS), each for a different user and an EMPTY shared library
(so the work itself is nothing: validate, lock the membership, renew the lease, one empty
chunk). They are inserted as pending jobs with their outbox rows in one transaction while
one Faust worker is running; the leader's outbox relay publishes them and the worker runs
every attempt (claim → work → complete, each step with its `job_events` row).

- `pipeline_jobs_per_s`: N / (last completion - commit of the jobs), database clock.
- `worker_jobs_per_s`: N / (last completion - first claim): the consumer side alone.
- `raw_jobs_per_s`: the same jobs reset to pending, then one asyncpg connection doing, per
  job, the claim UPDATE + its job_events INSERT in one transaction and the complete
  UPDATE + its job_events INSERT in another (the minimum a fenced, audited job needs).

Prints ONE JSON object. Run: `python bench/jobs.py`.
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

import asyncpg

from bench._common import Stack, analyze, stack
from nexus.messaging.messages import BackfillRequested
from nexus.messaging.topics import Topics

SEED = """
WITH owner AS (INSERT INTO users (id) VALUES (gen_random_uuid()) RETURNING id),
     u AS (SELECT gen_random_uuid() AS id, gen_random_uuid() AS d, gen_random_uuid() AS s
           FROM generate_series(1, $1)),
     users_ AS (INSERT INTO users (id) SELECT id FROM u),
     libs AS (
        INSERT INTO libraries (id, owner_user_id, name, is_default)
        SELECT d, id, 'My Library', true FROM u
        UNION ALL
        SELECT u.s, owner.id, 'Empty shared', false FROM u, owner),
     members AS (
        INSERT INTO memberships (library_id, user_id, role)
        SELECT d, id, 'admin' FROM u
        UNION ALL
        SELECT s, id, 'member' FROM u
        UNION ALL
        SELECT u.s, owner.id, 'admin' FROM u, owner)
SELECT id, d, s FROM u
"""

RAW_CLAIM = """
WITH c AS (
    UPDATE default_library_backfill_jobs
    SET status = 'running', attempts = attempts + 1, lease_token = $4,
        lease_owner = 'raw', lease_expires_at = now() + interval '300 seconds',
        updated_at = now()
    WHERE default_library_id = $1 AND source_library_id = $2 AND user_id = $3
      AND status = 'pending' AND next_attempt_at <= now()
    RETURNING attempts)
INSERT INTO job_events (job_type, job_key, from_status, to_status, attempt, actor)
SELECT 'backfill', $5::jsonb, 'pending', 'running', attempts, 'raw' FROM c
RETURNING attempt
"""

RAW_COMPLETE = """
WITH c AS (
    UPDATE default_library_backfill_jobs
    SET status = 'completed', lease_token = NULL, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE default_library_id = $1 AND source_library_id = $2 AND user_id = $3
      AND status = 'running' AND lease_token = $4
    RETURNING attempts)
INSERT INTO job_events (job_type, job_key, from_status, to_status, attempt, actor)
SELECT 'backfill', $5::jsonb, 'running', 'completed', attempts, 'raw' FROM c
RETURNING attempt
"""


async def _seed(conn: asyncpg.Connection, n: int) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    rows = await conn.fetch(SEED, n)
    return [(r["d"], r["s"], r["id"]) for r in rows]


async def _enqueue(
    conn: asyncpg.Connection, topics: Topics, keys: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]
) -> float:
    """Pending jobs + their outbox rows, one transaction (as accept does, in bulk)."""
    payloads = []
    for d, s, u in keys:
        msg = BackfillRequested(default_library_id=d, source_library_id=s, user_id=u)
        payloads.append(
            (topics.backfill, msg.key, msg.model_dump_json(), json.dumps(msg.trace_headers()))
        )
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO default_library_backfill_jobs "
            "(default_library_id, source_library_id, user_id, dispatched_at) "
            "VALUES ($1, $2, $3, now())",
            keys,
        )
        await conn.executemany(
            "INSERT INTO outbox (topic, key, payload, headers) "
            "VALUES ($1, $2, $3::jsonb, $4::jsonb)",
            payloads,
        )
        committed = await conn.fetchval("SELECT extract(epoch FROM now())")
    return float(committed)


async def _wait_all_done(conn: asyncpg.Connection, n: int) -> None:
    deadline = time.monotonic() + 1800
    while True:
        done = await conn.fetchval(
            "SELECT count(*) FROM default_library_backfill_jobs "
            "WHERE status IN ('completed', 'failed')"
        )
        if done >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {n} jobs finished")
        await asyncio.sleep(0.2)


async def _pipeline(st: Stack, conn: asyncpg.Connection, keys: list[Any]) -> dict[str, float]:
    committed = await _enqueue(conn, Topics.from_settings(st.settings), keys)
    await _wait_all_done(conn, len(keys))
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'completed') AS completed, "
        "extract(epoch FROM max(finished_at)) AS last FROM default_library_backfill_jobs"
    )
    first_claim = await conn.fetchval(
        "SELECT extract(epoch FROM min(at)) FROM job_events WHERE to_status = 'running'"
    )
    if row["completed"] != len(keys):
        raise RuntimeError(f"{len(keys) - row['completed']} jobs did not complete")
    n = len(keys)
    return {
        "pipeline_seconds": float(row["last"]) - committed,
        "worker_seconds": float(row["last"]) - float(first_claim),
        "n": n,
    }


async def _raw(conn: asyncpg.Connection, keys: list[Any]) -> float:
    await conn.execute(
        "UPDATE default_library_backfill_jobs SET status = 'pending', attempts = 0, "
        "finished_at = NULL, next_attempt_at = now(), lease_owner = NULL"
    )
    claim = await conn.prepare(RAW_CLAIM)
    complete = await conn.prepare(RAW_COMPLETE)
    started = time.perf_counter()
    for d, s, u in keys:
        token = uuid.uuid4()
        key = json.dumps(
            {"default_library_id": str(d), "source_library_id": str(s), "user_id": str(u)}
        )
        async with conn.transaction():
            assert await claim.fetchval(d, s, u, token, key) is not None
        async with conn.transaction():
            assert await complete.fetchval(d, s, u, token, key) is not None
    return time.perf_counter() - started


async def main() -> dict[str, Any]:
    n = int(os.environ.get("BENCH_JOBS", "10000"))
    async with stack(outbox_relay_after_seconds=0.0, outbox_relay_interval_seconds=0.2) as st:
        conn = await asyncpg.connect(st.dsn)
        try:
            keys = await _seed(conn, n)
            await analyze(st.dsn)
            worker = await st.start_worker()
            pipe = await _pipeline(st, conn, keys)
            worker.stop()  # its scheduler would re-dispatch the jobs the raw loop resets
            raw_seconds = await _raw(conn, keys)
        finally:
            await conn.close()
    pipeline_rate = n / pipe["pipeline_seconds"]
    raw_rate = n / raw_seconds
    return {
        "jobs": n,
        "pipeline_jobs_per_s": round(pipeline_rate, 1),
        "worker_jobs_per_s": round(n / pipe["worker_seconds"], 1),
        "raw_jobs_per_s": round(raw_rate, 1),
        "ratio": round(raw_rate / pipeline_rate, 2),
        "pipeline_seconds": round(pipe["pipeline_seconds"], 2),
        "raw_seconds": round(raw_seconds, 2),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
