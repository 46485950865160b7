"""Operator routes for ingest jobs (SPEC §7, §8): the job list (keyed by media_id, same
shapes and order as the backfill list) and the operator retry of a failed media.

Guards: viewer reads, operator retries and cancels; the guard runs before query or body
validation."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, request
from quart_schema import validate_response

from nexus.errors import InvalidRequest, NexusError
from nexus.ingest import cancel
from nexus.ingest.jobs import JOB as INGEST_JOB
from nexus.messaging.topics import Topics
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from nexus.sharing.operations import JobItemFields
from web.audit import Audit, audited_cancel
from web.auth import operator_required
from web.envelope import Data
from web.openapi import links, raises
from web.pagination import ListQuery, Paged
from web.querystring import validate_querystring
from web.routes.backfill_jobs import JobFilterFields, job_page
from web.routes.media import RetryOut, reset_media
from web.state import nexus_state
from web.uow import unit_of_work

bp = Blueprint("ingest_jobs", __name__, url_prefix="/internal")

INGEST_SCOPE = "ingest-jobs"
INGEST_KEY_TYPES = (datetime, uuid.UUID)


class IngestJobsQuery(JobFilterFields, ListQuery):
    KEY_FIELDS = INGEST_JOB.key_columns

    media_id: uuid.UUID | None = None


class IngestJobOut(JobItemFields):
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
    return await job_page(
        INGEST_JOB,
        query_args,
        query_args.filters(),
        INGEST_SCOPE,
        INGEST_KEY_TYPES,
        IngestJobOut.model_validate,
    )


class CancelIngestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=1000)


class IngestCancelOut(BaseModel):
    media_id: uuid.UUID
    status: str  # the job's: "cancelled"
    previous_status: str
    lease_owner: str | None
    processing_status: str | None  # the media's, afterwards
    failure_stage: str | None


async def _cancel_body() -> CancelIngestIn:
    """The optional body: none (or an empty one) means no reason."""
    body = await request.get_json(silent=True)
    if body is None and (await request.get_data()):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return CancelIngestIn.model_validate(body or {})
    except ValidationError as exc:
        raise InvalidRequest(
            "invalid body", details=exc.errors(include_url=False, include_context=False)
        ) from None


@bp.post("/ingest-jobs/<uuid:media_id>/cancel")
# E_INVALID_REQUEST: the optional body (read by the view, so not in the document's schema).
@raises("E_NOT_FOUND", "E_JOB_NOT_CANCELLABLE", "E_INVALID_REQUEST")
@validate_response(Data[IngestCancelOut])
@operator_required(Role.OPERATOR)
async def cancel_ingest_job(
    media_id: uuid.UUID, operator: OperatorIdentity
) -> Data[IngestCancelOut]:
    """Cancel a media's pending or running ingest job (SPEC §10): the job becomes
    `cancelled`, the media `failed` with `E_CANCELLED`; a running worker's next fenced
    write is refused. `POST /internal/media/{id}/retry` brings it back. Body (optional):
    `{"reason": "..."}`.

    Order: operator key (401/403) → body (400) → job exists (404 E_NOT_FOUND) → pending
    or running, else 409 E_JOB_NOT_CANCELLABLE. Every call, refused ones included, is
    written to `operator_actions` (action `ingest.cancel`)."""
    state = nexus_state()

    async def reason() -> str | None:
        return (await _cancel_body()).reason

    topics = Topics.from_settings(state.settings)
    result = await audited_cancel(
        Audit(operator, "ingest.cancel", {"media_id": media_id}),
        reason,
        lambda session, request: cancel.cancel_ingest(session, media_id, topics, **request),
    )
    out = IngestCancelOut(
        media_id=result.media_id,
        status=result.job_status,
        previous_status=result.from_status,
        lease_owner=result.lease_owner,
        processing_status=result.processing_status,
        failure_stage=result.failure_stage,
    )
    return Data(data=out)


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
