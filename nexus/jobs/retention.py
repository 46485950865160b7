"""Retention (SPEC §10 "Cancel and retention"): what the leader's prune timer deletes once it
is older than `NEXUS_RETENTION_DAYS` (the cutoff `before`).

- published outbox rows (`published_at < before`); unpublished and parked rows never;
- the `job_events` ledger of finished jobs, a **whole chain at a time**: a job key's chain
  (`job_type`, `job_key`) goes when its newest row is older than the cutoff and its job is
  finished (completed, failed, cancelled) or gone; the ledger of an unfinished job is
  never pruned, and neither is any row of a chain that has a row inside the window (a job
  requeued recently keeps its whole history until it finishes again and ages out);
- dead letters replayed before the cutoff (unreplayed ones stay: they still need a person);
- workers not heard of since the cutoff (stopped or long dead: their leases were rescued).

Why whole chains: `job_events` is hash-chained per job key (SPEC §10 "Audit"; `nexus ops
audit verify`). Removing a chain's oldest rows would leave a first row that links to a
missing one, which verify reports as tampering; removing every row of a chain leaves
nothing to check. Each pruned chain is first locked with the same transaction-level
advisory lock the ledger's insert trigger takes per chain, and the chain is deleted by a
later statement (a fresh snapshot): an insert racing with the prune either committed
before (its row is inside the window, so the chain stays) or waits and then starts a new
chain (`prev_hash` NULL). Nothing else is ever deleted from `job_events`.

Every step is bounded (`batch` rows) and runs in the caller's transaction; the timer runs
each batch in its own short transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.jobs.machine import JobType
from nexus.jobs.states import TERMINAL

_OUTBOX = text(
    """
    DELETE FROM outbox WHERE id IN (
        SELECT id FROM outbox WHERE published_at < :before ORDER BY id LIMIT :batch
    )
    """
)

_DEAD_LETTERS = text(
    """
    DELETE FROM dead_letters WHERE id IN (
        SELECT id FROM dead_letters WHERE replayed_at < :before ORDER BY id LIMIT :batch
    )
    """
)

_WORKERS = text("DELETE FROM workers WHERE last_heartbeat_at < :before")


async def prune_outbox(session: AsyncSession, *, before: datetime, batch: int) -> int:
    """Delete up to `batch` outbox rows published before the cutoff; returns how many."""
    result = await session.execute(_OUTBOX, {"before": before, "batch": batch})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def prune_dead_letters(session: AsyncSession, *, before: datetime, batch: int) -> int:
    """Delete up to `batch` dead letters replayed before the cutoff; returns how many."""
    result = await session.execute(_DEAD_LETTERS, {"before": before, "batch": batch})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def prune_workers(session: AsyncSession, *, before: datetime) -> int:
    """Forget workers whose last heartbeat is older than the cutoff."""
    result = await session.execute(_WORKERS, {"before": before})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- ledger

# A page of old ledger rows, oldest id first, after the caller's cursor.
_OLD_ROWS = text(
    """
    SELECT id, job_type, job_key FROM job_events
    WHERE at < :before AND id > :after ORDER BY id LIMIT :batch
    """
)

# The chains of the page this transaction could lock (skipping chains being written).
_LOCK_CHAINS = text(
    """
    SELECT c.job_type, c.job_key
    FROM jsonb_to_recordset(CAST(:chains AS jsonb)) AS c(job_type text, job_key jsonb)
    WHERE pg_try_advisory_xact_lock(
        hashtextextended('nexus.job_events|' || c.job_type || '|' || c.job_key::text, 0))
    """
)

_TERMINAL_SQL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL))


def _delete_chains_sql(job: JobType) -> str:
    """Delete the listed chains of `job` whose every row is older than the cutoff and
    whose job is finished or gone."""
    joined = " AND ".join(
        f"t.{name} = CAST(c.job_key ->> '{name}' AS uuid)" for name in job.key_columns
    )
    return f"""
        WITH chains AS (
            SELECT c.job_key
            FROM jsonb_to_recordset(CAST(:chains AS jsonb)) AS c(job_type text, job_key jsonb)
            WHERE c.job_type = :job_type
              AND NOT EXISTS (
                  SELECT 1 FROM job_events r
                  WHERE r.job_type = :job_type AND r.job_key = c.job_key AND r.at >= :before)
              AND NOT EXISTS (
                  SELECT 1 FROM {job.table.name} t
                  WHERE {joined} AND t.status NOT IN ({_TERMINAL_SQL}))
        )
        DELETE FROM job_events e USING chains
        WHERE e.job_type = :job_type AND e.job_key = chains.job_key
    """


@dataclass(frozen=True)
class LedgerPage:
    deleted: int  # job_events rows deleted
    next_after: int | None  # the cursor of the next page; None: no more old rows


async def prune_ledger_page(
    session: AsyncSession,
    job_types: Sequence[JobType],
    *,
    before: datetime,
    after: int = 0,
    batch: int = 1000,
) -> LedgerPage:
    """One page of old ledger rows (id > `after`): delete the whole chains among them that
    may go (see the module docstring). Chains of job types not in `job_types` stay."""
    page = (
        await session.execute(_OLD_ROWS, {"before": before, "after": after, "batch": batch})
    ).all()
    if not page:
        return LedgerPage(0, None)
    known = {job.name: job for job in job_types}
    seen: dict[tuple[str, str], dict[str, object]] = {}
    for row in page:
        if row.job_type in known:
            encoded = json.dumps(row.job_key, sort_keys=True)
            seen.setdefault(
                (row.job_type, encoded), {"job_type": row.job_type, "job_key": row.job_key}
            )
    deleted = 0
    if seen:
        chains = json.dumps(list(seen.values()))
        locked = (await session.execute(_LOCK_CHAINS, {"chains": chains})).all()
        by_type: dict[str, list[dict[str, object]]] = {}
        for row in locked:
            by_type.setdefault(row.job_type, []).append(
                {"job_type": row.job_type, "job_key": row.job_key}
            )
        # A new statement per type, after the locks: its snapshot sees every row that
        # committed before them.
        for job_type, listed in by_type.items():
            result = await session.execute(
                text(_delete_chains_sql(known[job_type])),
                {"chains": json.dumps(listed), "job_type": job_type, "before": before},
            )
            deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
    next_after = int(page[-1].id) if len(page) == batch else None
    return LedgerPage(deleted, next_after)
