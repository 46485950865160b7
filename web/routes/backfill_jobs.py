"""Operator routes for backfill jobs (SPEC §7): requeue (single and bulk), the job list
and the timeline of one backfill tuple.

Guards: viewer reads, operator requeues or cancels one job, admin runs bulk requeues. The operator
guard runs before query/body validation (no key, no schema hints).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, Field
from quart import Blueprint, g
from quart_schema import validate_request, validate_response

from nexus.errors import NotFound
from nexus.jobs.machine import JobType
from nexus.messaging.topics import Topics
from nexus.operations import service as operations_service
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from nexus.sharing import backfill, operations
from nexus.sharing import requeue_bulk as requeue_bulk_kind
from nexus.sharing.operations import JobFilters
from nexus.sharing.requeue_bulk import BulkRequeueParams
from web.audit import Audit, audited_cancel
from web.auth import operator_required
from web.envelope import Data
from web.openapi import links, raises
from web.pagination import Keyset, ListQuery, Paged, list_page
from web.querystring import validate_querystring
from web.state import nexus_state
from web.uow import unit_of_work

bp = Blueprint("backfill_jobs", __name__, url_prefix="/internal")
T = TypeVar("T")


class RequeueIn(BaseModel):
    default_library_id: uuid.UUID
    source_library_id: uuid.UUID
    user_id: uuid.UUID
    reason: str | None = Field(default=None, max_length=1000)


class RequeueOut(backfill.BackfillJobState):
    idempotent: bool
    enqueue_dispatched: bool


@bp.post("/libraries/backfill-jobs/requeue")
@raises("E_NOT_FOUND")
@validate_response(Data[RequeueOut])
@operator_required(Role.OPERATOR)  # before body validation: no key, no schema hints
@validate_request(RequeueIn)
async def requeue(data: RequeueIn, operator: OperatorIdentity) -> Data[RequeueOut]:
    """Reset a finished or pending job to pending and enqueue it.

    Order: operator key (401/403) → job exists (404 E_NOT_FOUND) → running: 200 unchanged
    with `idempotent: true` → otherwise reset (attempts 0, error cleared) + outbox message.
    `enqueue_dispatched` says whether the message reached the broker before we answered.
    Every call, including a 404, is written to `operator_actions`.
    """
    state = nexus_state()
    key = backfill.BackfillKey(data.default_library_id, data.source_library_id, data.user_id)
    details = {"reason": data.reason} if data.reason else None
    audit = Audit(operator, "backfill.requeue", key.as_dict(), details)
    async with audit.refusals(NotFound, lambda exc: "not_found"), unit_of_work() as uow:
        result = await backfill.requeue(
            uow.session,
            key,
            Topics.from_settings(state.settings),
            actor=f"operator:{operator.name}",
            request_id=g.request_id,
            correlation_id=g.correlation_id,
        )
        await audit.record(uow.session, "noop_running" if result.idempotent else "requeued")
    return Data(
        data=RequeueOut(
            **result.job.model_dump(),
            idempotent=result.idempotent,
            enqueue_dispatched=uow.enqueue_dispatched,
        )
    )


class CancelIn(BaseModel):
    default_library_id: uuid.UUID
    source_library_id: uuid.UUID
    user_id: uuid.UUID
    reason: str | None = Field(default=None, max_length=1000)


class CancelOut(backfill.BackfillJobState):
    # The job's status before the cancel, and the worker fenced out when it was running.
    previous_status: str
    lease_owner: str | None


@bp.post("/libraries/backfill-jobs/cancel")
@raises("E_NOT_FOUND", "E_JOB_NOT_CANCELLABLE")
@validate_response(Data[CancelOut])
@operator_required(Role.OPERATOR)  # before body validation: no key, no schema hints
@validate_request(CancelIn)
async def cancel(data: CancelIn, operator: OperatorIdentity) -> Data[CancelOut]:
    """Cancel a pending or running job (SPEC §10): terminal `cancelled`, `E_CANCELLED`;
    a running worker stops at its next chunk. A requeue brings it back.

    Order: operator key (401/403) → body (400) → job exists (404 E_NOT_FOUND) → pending
    or running, else 409 E_JOB_NOT_CANCELLABLE. Every call, refused ones included, is
    written to `operator_actions` (action `backfill.cancel`)."""
    state = nexus_state()
    key = backfill.BackfillKey(data.default_library_id, data.source_library_id, data.user_id)
    topics = Topics.from_settings(state.settings)
    result = await audited_cancel(
        Audit(operator, "backfill.cancel", key.as_dict()),
        data.reason,
        lambda session, request: backfill.cancel(session, key, topics, **request),
    )
    return Data(
        data=CancelOut(
            **result.job.model_dump(),
            previous_status=result.from_status,
            lease_owner=result.lease_owner,
        )
    )


# ------------------------------------------------------------------- job lists

Status = Literal["pending", "running", "completed", "failed", "cancelled"]
BACKFILL_SCOPE = "backfill-jobs"
BACKFILL_KEY_TYPES = (datetime, uuid.UUID, uuid.UUID, uuid.UUID)


class JobFilterFields(BaseModel):
    status: Status | None = None
    # A registered code's shape: anything else (NUL included, which PostgreSQL cannot
    # compare) is 400 E_INVALID_REQUEST rather than a failed statement.
    error_code: str | None = Field(default=None, max_length=64, pattern=r"^E_[A-Z0-9_]+$")
    updated_before: AwareDatetime | None = None
    updated_after: AwareDatetime | None = None
    # The job type's key columns a subclass declares as optional filter fields.
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ()

    def filters(self) -> JobFilters:
        return JobFilters.of(self, self.KEY_FIELDS)


class BackfillFilterFields(JobFilterFields):
    KEY_FIELDS = operations.BACKFILL_JOB.key_columns

    default_library_id: uuid.UUID | None = None
    source_library_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


class BackfillJobsQuery(BackfillFilterFields, ListQuery):
    pass


class BackfillJobOut(operations.JobItemFields):
    default_library_id: uuid.UUID
    source_library_id: uuid.UUID
    user_id: uuid.UUID


@bp.get("/backfill-jobs")
@raises()
@validate_response(Paged[BackfillJobOut])
@operator_required(Role.VIEWER)
@validate_querystring(BackfillJobsQuery)
async def list_backfill_jobs(
    query_args: BackfillJobsQuery, operator: OperatorIdentity
) -> Paged[BackfillJobOut]:
    """Backfill jobs, newest `updated_at` first, filtered; cursor pagination (SPEC §2).
    Order: 401/403 key → 400 query/limit/cursor."""
    del operator
    return await job_page(
        operations.BACKFILL_JOB,
        query_args,
        query_args.filters(),
        BACKFILL_SCOPE,
        BACKFILL_KEY_TYPES,
        BackfillJobOut.model_validate,
    )


async def job_page(
    job: JobType,
    query_args: ListQuery,
    filters: JobFilters,
    scope: str,
    key_types: tuple[type, ...],
    out: Callable[[dict[str, object]], T],
) -> Paged[T]:
    """One page of `job`'s rows as list items, newest `updated_at` first (the backfill
    and ingest job lists share it)."""
    return await list_page(
        query_args,
        scope,
        Keyset(key_types, lambda row: operations.sort_key(job, row)),
        lambda session, after: operations.list_jobs(
            session, job, filters, limit=query_args.limit, after=after
        ),
        lambda row: out(operations.job_item(job, row)),
    )


# -------------------------------------------------------------------- timeline


class TimelineQuery(BaseModel):
    default_library_id: uuid.UUID
    source_library_id: uuid.UUID
    user_id: uuid.UUID


class TimelineOut(BaseModel):
    """`data`: entries `{at, kind, ...row}` oldest first; `job`: the job row now (or null)."""

    data: list[dict[str, Any]]
    job: BackfillJobOut | None


@bp.get("/backfill-jobs/timeline")
@raises("E_NOT_FOUND")
@validate_response(TimelineOut)
@operator_required(Role.VIEWER)
@validate_querystring(TimelineQuery)
async def backfill_timeline(query_args: TimelineQuery, operator: OperatorIdentity) -> TimelineOut:
    """Everything recorded about one tuple: `job_events`, outbox messages naming it and
    operator actions on it, in time order. 404 E_NOT_FOUND when there is nothing at all."""
    del operator
    key = backfill.BackfillKey(
        query_args.default_library_id, query_args.source_library_id, query_args.user_id
    )
    async with unit_of_work() as uow:
        entries = await operations.timeline(uow.session, key)
        job = await operations.get_job_item(uow.session, key)
    if not entries and job is None:
        raise NotFound("nothing recorded for this backfill tuple")
    return TimelineOut(
        data=entries, job=BackfillJobOut.model_validate(job) if job is not None else None
    )


# ----------------------------------------------------------------- bulk requeue

SAMPLE_SIZE = 20


class BulkRequeueIn(BulkRequeueParams):
    # extra="forbid" (inherited): a misspelt filter must not widen the selection.
    dry_run: bool = True


class BulkDryRunOut(BaseModel):
    dry_run: Literal[True] = True
    count: int
    skipped_running: int
    sample: list[BackfillJobOut]


class BulkAcceptedOut(BaseModel):
    dry_run: Literal[False] = False
    operation_id: uuid.UUID
    status: str
    # Where progress and result are read (also sent as the Location header).
    location: str


@bp.post("/libraries/backfill-jobs/requeue-bulk")
@raises()
@links(202, get_operation={"operation_id": "$response.body#/data/operation_id"})
@validate_response(Data[BulkDryRunOut], 200)
@validate_response(Data[BulkAcceptedOut], 202)
@operator_required(Role.ADMIN)
@validate_request(BulkRequeueIn)
async def requeue_bulk(
    data: BulkRequeueIn, operator: OperatorIdentity
) -> tuple[Data[BulkDryRunOut], int] | tuple[Data[BulkAcceptedOut], int, dict[str, str]]:
    """Requeue every non-running backfill job matching the filters (newest first, at most
    `limit`, at most `rate_per_second`), in the background.

    Order: admin key (401/403) → body (400). `dry_run` (the default) answers 200 with the
    count, the running matches (never requeued) and a sample, and writes nothing. A real
    run records an operation (kind `backfill.requeue_bulk`, `GET /internal/operations/{id}`)
    and an `operator_actions` row (outcome `accepted`) in one transaction and answers 202
    with the operation id; the agents run it (nexus.sharing.requeue_bulk), writing one
    audit row per job and a summary row when it ends."""
    filters = data.filters()
    if data.dry_run:
        async with unit_of_work() as uow:
            selection = await operations.select_for_requeue(
                uow.session, filters, limit=data.limit, sample_size=SAMPLE_SIZE
            )
        out = BulkDryRunOut(
            count=len(selection.keys),
            skipped_running=selection.running,
            sample=[BackfillJobOut.model_validate(item) for item in selection.sample],
        )
        return Data(data=out), 200
    params = data.model_dump(mode="json", exclude={"dry_run"})
    async with unit_of_work() as uow:
        operation = await operations_service.create(
            uow.session,
            kind=requeue_bulk_kind.NAME,
            params=params,
            requested_by=operator.name,
            operator_key_id=operator.key_id,
            topics=Topics.from_settings(nexus_state().settings),
            request_id=g.request_id,
            correlation_id=g.correlation_id,
        )
        audit = Audit(operator, requeue_bulk_kind.NAME, operations.filters_summary(filters))
        await audit.record(
            uow.session, "accepted", details={"operation_id": str(operation.id), **params}
        )
    location = f"/internal/operations/{operation.id}"
    accepted = BulkAcceptedOut(
        operation_id=operation.id, status=operation.status, location=location
    )
    return Data(data=accepted), 202, {"Location": location}
