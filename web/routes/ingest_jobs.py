"""Operator routes for ingest jobs (SPEC §7, §8): the job list (keyed by media_id, same
shapes and order as the backfill list) and the operator retry of a failed media.

Guards: viewer reads, operator retries; the guard runs before query validation."""

from __future__ import annotations

import uuid
from datetime import datetime

from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from nexus.errors import NexusError
from nexus.ingest.jobs import JOB as INGEST_JOB
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from web.audit import Audit
from web.auth import operator_required
from web.envelope import Data
from web.openapi import links, raises
from web.pagination import ListQuery, Paged
from web.routes.backfill_jobs import JobFieldsOut, JobFilterFields, job_page
from web.routes.media import RetryOut, reset_media
from web.uow import unit_of_work

bp = Blueprint("ingest_jobs", __name__, url_prefix="/internal")

INGEST_SCOPE = "ingest-jobs"
INGEST_KEY_TYPES = (datetime, uuid.UUID)


class IngestJobsQuery(JobFilterFields, ListQuery):
    KEY_FIELDS = INGEST_JOB.key_columns

    media_id: uuid.UUID | None = None


class IngestJobOut(JobFieldsOut):
    media_id: uuid.UUID


class OperatorRetryOut(RetryOut):
    enqueue_dispatched: bool


@bp.get("/ingest-jobs")
@raises()
@links(200, operator_retry_media={"media_id": "$response.body#/data/0/media_id"})
@validate_response(Paged[IngestJobOut])
@operator_required(Role.VIEWER)
@validate_querystring(IngestJobsQuery)
async def list_ingest_jobs(
    query_args: IngestJobsQuery, operator: OperatorIdentity
) -> Paged[IngestJobOut]:
    """Ingest jobs (keyed by media_id), same shapes and order as the backfill list."""
    del operator
    items, page = await job_page(
        INGEST_JOB, query_args, query_args.filters(), INGEST_SCOPE, INGEST_KEY_TYPES
    )
    return Paged(data=[IngestJobOut.model_validate(i) for i in items], page=page)


@bp.post("/media/<uuid:media_id>/retry")
@raises("E_MEDIA_NOT_FOUND", "E_MEDIA_NOT_RETRYABLE", "E_STORAGE_MISSING")
@validate_response(Data[OperatorRetryOut], 202)
@operator_required(Role.OPERATOR)
async def operator_retry_media(
    media_id: uuid.UUID, operator: OperatorIdentity
) -> tuple[Data[OperatorRetryOut], int]:
    """The same reset without the ownership check. Order: operator key (401/403) → 404
    E_MEDIA_NOT_FOUND → 409 E_MEDIA_NOT_RETRYABLE → 400 E_STORAGE_MISSING. Every call,
    refused ones included, is written to `operator_actions` (action `media.retry`)."""
    audit = Audit(operator, "media.retry", {"media_id": media_id})
    async with audit.refusals(NexusError, lambda exc: exc.code), unit_of_work() as uow:
        result = await reset_media(
            uow.session, media_id, viewer=None, actor=f"operator:{operator.name}"
        )
        await audit.record(uow.session, "requeued", {"failure_stage": result.failure_stage})
    out = OperatorRetryOut(
        media_id=result.media_id,
        processing_status="pending",
        enqueue_dispatched=uow.enqueue_dispatched,
    )
    return Data(data=out), 202
