"""Operator reads and bulk selection over job tables (SPEC §7 "Operator shapes").

Read-only helpers: listing with filters and keyset pagination (newest `updated_at` first),
the timeline of one backfill tuple (job_events + outbox + operator_actions, in time order)
and the selection behind the bulk requeue. State changes go through
`nexus.sharing.backfill.requeue` (guarded reset) so every path shares one rule.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table, and_, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression

from nexus.db.types import Record, ResultRow
from nexus.jobs.ledger import json_key
from nexus.jobs.machine import JobType
from nexus.jobs.states import JobStatus
from nexus.sharing.backfill import JOB as BACKFILL_JOB
from nexus.sharing.backfill import BackfillKey

TIMELINE_CAP = 1000  # rows per source; a tuple with more history is an anomaly anyway


class FilterFields(Protocol):
    """Where job filters come from: an operator query, or a bulk operation's params."""

    @property
    def status(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def updated_before(self) -> datetime | None: ...
    @property
    def updated_after(self) -> datetime | None: ...


@dataclass(frozen=True)
class JobFilters:
    """Filters of the operator job views; `keys` holds key-column equality filters."""

    keys: Mapping[str, uuid.UUID]
    status: str | None = None
    error_code: str | None = None
    updated_before: datetime | None = None
    updated_after: datetime | None = None

    @classmethod
    def of(cls, fields: FilterFields, key_names: Sequence[str]) -> JobFilters:
        """`fields`' filters; its attributes `key_names` that are set filter by key."""
        keys = {n: value for n in key_names if (value := getattr(fields, n)) is not None}
        return cls(
            keys=keys,
            status=fields.status,
            error_code=fields.error_code,
            updated_before=fields.updated_before,
            updated_after=fields.updated_after,
        )


class JobItemFields(Record):
    """The fields of a job item (SPEC §7) after its key columns, for any job type."""

    status: str
    attempts: int
    last_error_code: str | None
    last_error_message: str | None
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


ITEM_FIELDS = tuple(JobItemFields.model_fields)


class JobRow(JobItemFields):
    """A row of any job table: the item fields and its key (by column)."""

    key: dict[str, uuid.UUID]

    @classmethod
    def of(cls, job: JobType, row: ResultRow) -> JobRow:
        columns = row._mapping
        return cls(key=job.key_of(row), **{name: columns[name] for name in ITEM_FIELDS})


def job_item(job: JobType, row: JobRow) -> dict[str, object]:
    """The SPEC §7 job item: the key columns, then ITEM_FIELDS."""
    return {
        **{name: row.key[name] for name in job.key_columns},
        **{name: getattr(row, name) for name in ITEM_FIELDS},
    }


def sort_key(job: JobType, row: JobRow) -> tuple[datetime | uuid.UUID, ...]:
    return (row.updated_at, *(row.key[name] for name in job.key_columns))


def _conditions(job: JobType, filters: JobFilters) -> list[ColumnElement[bool]]:
    t = job.table
    conds: list[ColumnElement[bool]] = [t.c[name] == value for name, value in filters.keys.items()]
    if filters.status is not None:
        conds.append(t.c.status == filters.status)
    if filters.error_code is not None:
        conds.append(t.c.last_error_code == filters.error_code)
    if filters.updated_before is not None:
        conds.append(t.c.updated_at < filters.updated_before)
    if filters.updated_after is not None:
        conds.append(t.c.updated_at > filters.updated_after)
    return conds


def _order(t: Table, job: JobType) -> list[UnaryExpression[Any]]:
    return [t.c.updated_at.desc(), *(t.c[k].desc() for k in job.key_columns)]


async def list_jobs(
    session: AsyncSession,
    job: JobType,
    filters: JobFilters,
    *,
    limit: int,
    after: Sequence[datetime | uuid.UUID] | None = None,
) -> list[JobRow]:
    """Up to `limit + 1` rows, newest `updated_at` first (ties by key, descending);
    `after` is the sort key of the last row already served (see `sort_key`)."""
    t = job.table
    conds = _conditions(job, filters)
    if after is not None:
        cols = [t.c.updated_at, *(t.c[k] for k in job.key_columns)]
        conds.append(tuple_(*cols) < tuple_(*after))
    query = select(t).where(and_(True, *conds)).order_by(*_order(t, job)).limit(limit + 1)
    return [JobRow.of(job, row) for row in await session.execute(query)]


@dataclass(frozen=True)
class BulkSelection:
    """What a bulk requeue would touch: keys to requeue (non-running), running matches."""

    keys: list[BackfillKey]
    sample: list[dict[str, object]]
    running: int


async def select_for_requeue(
    session: AsyncSession, filters: JobFilters, *, limit: int, sample_size: int = 20
) -> BulkSelection:
    """Non-running backfill jobs matching `filters` (newest first, at most `limit`), a
    sample of their items, and how many running jobs match (never requeued)."""
    t = BACKFILL_JOB.table
    conds = _conditions(BACKFILL_JOB, filters)
    rows = (
        await session.execute(
            select(t)
            .where(and_(True, *conds), t.c.status != JobStatus.RUNNING.value)
            .order_by(*_order(t, BACKFILL_JOB))
            .limit(limit)
        )
    ).all()
    running = await session.scalar(
        select(func.count())
        .select_from(t)
        .where(and_(True, *conds), t.c.status == JobStatus.RUNNING.value)
    )
    keys = [BackfillKey(r.default_library_id, r.source_library_id, r.user_id) for r in rows]
    sample = [job_item(BACKFILL_JOB, JobRow.of(BACKFILL_JOB, r)) for r in rows[:sample_size]]
    return BulkSelection(keys=keys, sample=sample, running=int(running or 0))


async def requeue_counts(
    session: AsyncSession, filters: JobFilters, *, cutoff: datetime, limit: int
) -> tuple[int, int]:
    """(selected, running) for a bulk requeue requested at `cutoff`: non-running jobs
    matching `filters` last changed at or before `cutoff` (at most `limit`), and the
    running jobs matching `filters` (never requeued)."""
    t = BACKFILL_JOB.table
    conds = _conditions(BACKFILL_JOB, filters)
    selected = (
        select(t.c.status)
        .where(*conds, t.c.status != JobStatus.RUNNING.value, t.c.updated_at <= cutoff)
        .limit(limit)
        .subquery()
    )
    total = await session.scalar(select(func.count()).select_from(selected))
    running = await session.scalar(
        select(func.count())
        .select_from(t)
        .where(and_(True, *conds), t.c.status == JobStatus.RUNNING.value)
    )
    return int(total or 0), int(running or 0)


async def requeue_chunk(
    session: AsyncSession,
    filters: JobFilters,
    *,
    cutoff: datetime,
    after: Sequence[Any] | None,
    limit: int,
) -> Sequence[Any]:
    """The next `limit` jobs of a bulk requeue requested at `cutoff`, locked for update.

    Same selection and order as `select_for_requeue`, restricted to jobs last changed at or
    before `cutoff` and, with `after` (a `sort_key`), to jobs after it. A job that was
    requeued (or changed by anyone) since `cutoff` has a later `updated_at` and is never
    selected again, so repeating a step after a crash cannot requeue a job twice. A row
    that changes while this waits for its lock is re-checked and dropped if it no longer
    matches: a chunk may come back short; only an empty one ends the selection."""
    t = BACKFILL_JOB.table
    conds = [
        *_conditions(BACKFILL_JOB, filters),
        t.c.status != JobStatus.RUNNING.value,
        t.c.updated_at <= cutoff,
    ]
    if after is not None:
        cols = [t.c.updated_at, *(t.c[k] for k in BACKFILL_JOB.key_columns)]
        conds.append(tuple_(*cols) < tuple_(*after))
    query = (
        select(t.c.updated_at, *(t.c[k] for k in BACKFILL_JOB.key_columns))
        .where(*conds)
        .order_by(*_order(t, BACKFILL_JOB))
        .limit(limit)
        .with_for_update()
    )
    return (await session.execute(query)).all()


# ------------------------------------------------------------------------ timeline

_JOB_EVENTS = text(
    "SELECT id, at, from_status, to_status, attempt, actor, error_code, error_message, "
    "request_id, correlation_id FROM job_events "
    "WHERE job_type = :job_type AND job_key = CAST(:job_key AS jsonb) ORDER BY at, id LIMIT :cap"
)
# Backfill messages carry the tuple at the top level; domain events in `data`. Both are
# keyed by the default library, which the index on `key` narrows to first.
_OUTBOX = text(
    "SELECT id, created_at AS at, topic, key, payload, headers, published_at, "
    "publish_attempts, last_error FROM outbox "
    "WHERE key = :default_library_key AND (payload @> CAST(:job_key AS jsonb) OR payload -> "
    "'data' @> CAST(:job_key AS jsonb)) "
    "ORDER BY created_at, id LIMIT :cap"
)
_ACTIONS = text(
    "SELECT id, at, actor, action, outcome, details, request_id, operator_key_id "
    "FROM operator_actions WHERE target @> CAST(:job_key AS jsonb) ORDER BY at, id LIMIT :cap"
)
_KIND_ORDER = {"operator_action": 0, "job_event": 1, "outbox": 2}


async def timeline(session: AsyncSession, key: BackfillKey) -> list[dict[str, Any]]:
    """Every recorded step of one backfill tuple, oldest first: job transitions, outbox
    messages naming it and operator actions on it (each source capped at TIMELINE_CAP).
    Ties at the same instant: the operator action, then the transition, then the message
    (the order in which one requeue writes them)."""
    k = json.dumps(json_key(key.as_dict()))
    params = {
        "job_type": BACKFILL_JOB.name,
        "job_key": k,
        "default_library_key": str(key.default_library_id),
        "cap": TIMELINE_CAP,
    }
    entries: list[dict[str, Any]] = []
    for kind, query in (
        ("job_event", _JOB_EVENTS),
        ("outbox", _OUTBOX),
        ("operator_action", _ACTIONS),
    ):
        for row in (await session.execute(query, params)).mappings():
            entries.append({"kind": kind, **row})
    entries.sort(key=lambda e: (e["at"], _KIND_ORDER[e["kind"]], e["id"]))
    return entries


async def get_job_item(session: AsyncSession, key: BackfillKey) -> dict[str, object] | None:
    t = BACKFILL_JOB.table
    row = (
        await session.execute(select(t).where(BACKFILL_JOB.where_key(key.as_dict())))
    ).one_or_none()
    return None if row is None else job_item(BACKFILL_JOB, JobRow.of(BACKFILL_JOB, row))


def filters_summary(filters: JobFilters) -> dict[str, str]:
    """The filters as strings, for the audit row of a bulk action."""
    out = {k: str(v) for k, v in filters.keys.items()}
    for name in ("status", "error_code", "updated_before", "updated_after"):
        value = getattr(filters, name)
        if value is not None:
            out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return out
