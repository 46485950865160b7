"""Bulk requeue of backfill jobs (SPEC §7), run in the background as an operation.

The route validates the request and records an `operations` row of kind
`backfill.requeue_bulk` whose `params` are `BulkRequeueParams`; the agents run it here in
steps. The selection is the non-running jobs matching the filters whose state last
changed before the operation was requested (its `created_at`), newest first, at most
`limit`; running jobs are never requeued. Each step, one transaction: lock the next chunk
after the checkpoint, reset every job with the one requeue rule (`backfill.requeue`:
guarded reset + backfill message in the outbox), one `operator_actions` row per job,
then progress and checkpoint. Steps are spaced so at most `rate_per_second` jobs are
requeued per second.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import NotFound, TerminalError
from nexus.operations.steps import Kind, OperationRow, RunContext, Step
from nexus.operators.service import record_action
from nexus.sharing import backfill, operations
from nexus.sharing.operations import JobFilters

NAME = "backfill.requeue_bulk"
MAX_BULK = 10_000
_KEY_NAMES = ("default_library_id", "source_library_id", "user_id")
COUNTERS = ("total", "processed", "requeued", "skipped_running", "not_found")


class BulkRequeueParams(BaseModel):
    """What a bulk requeue was asked to do (stored in `operations.params`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_library_id: uuid.UUID | None = None
    source_library_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = None
    error_code: str | None = Field(default=None, max_length=64)
    updated_before: AwareDatetime | None = None
    updated_after: AwareDatetime | None = None
    limit: int = Field(default=MAX_BULK, ge=1, le=MAX_BULK)
    rate_per_second: float = Field(default=50.0, gt=0, le=10_000)
    reason: str | None = Field(default=None, max_length=1000)

    def filters(self) -> JobFilters:
        return JobFilters.of(self, _KEY_NAMES)


def audit_target(params: Mapping[str, Any]) -> dict[str, Any]:
    """The filters as strings: the target of the operation's summary audit rows (none
    when the params are invalid: the failure being audited is that)."""
    try:
        filters = BulkRequeueParams.model_validate(params).filters()
    except ValidationError:
        return {}
    return operations.filters_summary(filters)


def _after(checkpoint: Mapping[str, Any]) -> tuple[Any, ...] | None:
    raw = checkpoint.get("after")
    if raw is None:
        return None
    return (datetime.fromisoformat(raw[0]), *(uuid.UUID(v) for v in raw[1:]))


def _checkpoint(last: Any) -> dict[str, Any]:
    return {"after": [last.updated_at.isoformat(), *(str(getattr(last, k)) for k in _KEY_NAMES)]}


async def _requeue_one(
    session: AsyncSession, context: RunContext, params: BulkRequeueParams, row: Any
) -> str:
    """Reset one job and write its audit row; returns the outcome counter to bump."""
    operation = context.operation
    key = backfill.BackfillKey(*(getattr(row, k) for k in _KEY_NAMES))
    try:
        result = await backfill.requeue(
            session,
            key,
            context.topics,
            actor=f"operator:{operation.requested_by}",
            request_id=operation.request_id,
            correlation_id=operation.correlation_id,
        )
        outcome = "noop_running" if result.idempotent else "requeued"
    except NotFound:  # cannot happen to a row this step holds locked; counted if it does
        outcome = "not_found"
    await record_action(
        session,
        actor=operation.requested_by,
        action="backfill.requeue",
        target=key.as_dict(),
        outcome=outcome,
        operator_key_id=operation.operator_key_id,
        details={"via": "bulk", "operation_id": str(operation.id), "reason": params.reason},
        request_id=operation.request_id,
    )
    return "skipped_running" if outcome == "noop_running" else outcome


async def _step(
    context: RunContext, params: BulkRequeueParams, size: int
) -> tuple[dict[str, Any], int]:
    """One transaction: the next chunk requeued and saved. Returns (progress, jobs done)."""
    filters = params.filters()
    async with context.unit_of_work() as session:
        operation: OperationRow = await context.begin_step(session)
        progress = {name: int(operation.progress.get(name, 0)) for name in COUNTERS}
        if "total" not in operation.progress:  # the first step sizes the selection
            progress["total"], progress["skipped_running"] = await operations.requeue_counts(
                session, filters, cutoff=operation.created_at, limit=params.limit
            )
        remaining = params.limit - progress["processed"]
        rows = (
            await operations.requeue_chunk(
                session,
                filters,
                cutoff=operation.created_at,
                after=_after(operation.checkpoint),
                limit=min(size, remaining),
            )
            if remaining > 0
            else []
        )
        for row in rows:
            progress[await _requeue_one(session, context, params, row)] += 1
        progress["processed"] += len(rows)
        checkpoint = _checkpoint(rows[-1]) if rows else dict(operation.checkpoint)
        await context.save_step(session, Step(progress=progress, checkpoint=checkpoint))
    return progress, len(rows)


async def run(context: RunContext) -> dict[str, Any]:
    """Requeue the selection step by step; returns the result (the final counters)."""
    try:
        params = BulkRequeueParams.model_validate(context.operation.params)
    except ValidationError as exc:
        raise TerminalError("E_INVALID_REQUEST", f"invalid bulk requeue params: {exc}") from exc
    # A step is at most one second of the rate, so the spacing below stays even.
    size = max(1, min(context.chunk_size, math.floor(params.rate_per_second)))
    started, done = time.monotonic(), 0
    while True:
        progress, n = await _step(context, params, size)
        if n == 0 or progress["processed"] >= params.limit:
            return progress
        done += n
        # Always awaited (0 when behind the rate): other work of the worker runs between steps.
        await context.wait(started + done / params.rate_per_second - time.monotonic())


KIND = Kind(name=NAME, run=run, audit_target=audit_target)
