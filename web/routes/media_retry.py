"""Retrying a failed media: `POST /media/{id}/retry` (creator or library admin) and
`POST /internal/media/{id}/retry` (operator key, audited). SPEC §4, §8."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from quart import Blueprint, g
from quart_schema import validate_response

from nexus.db.tx import transaction
from nexus.errors import NexusError
from nexus.ingest import retry
from nexus.ingest.storage import LocalStorage
from nexus.messaging.topics import Topics
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity, record_action
from web.auth import current_user, operator_required, user_required
from web.envelope import Data
from web.state import nexus_state
from web.uow import unit_of_work

bp = Blueprint("media_retry", __name__)


class RetryOut(BaseModel):
    media_id: uuid.UUID
    processing_status: str


class OperatorRetryOut(RetryOut):
    enqueue_dispatched: bool


@bp.post("/media/<uuid:media_id>/retry")
@validate_response(Data[RetryOut], 202)
@user_required
async def retry_media(media_id: uuid.UUID) -> tuple[Data[RetryOut], int]:
    """Reset a failed media per its failure stage and re-enqueue it → 202.

    Order: 400 id → merges followed → 404 E_MEDIA_NOT_FOUND unless readable → 403
    E_FORBIDDEN unless creator or admin of a library containing it → 409
    E_MEDIA_NOT_RETRYABLE unless failed → 400 E_STORAGE_MISSING (upload stage, file gone).
    """
    state = nexus_state()
    user = current_user().user_id
    async with unit_of_work() as uow:
        result = await retry.retry_media(
            uow.session,
            media_id,
            Topics.from_settings(state.settings),
            LocalStorage(state.settings.storage_dir),
            viewer=user,
            actor=f"user:{user}",
            request_id=g.request_id,
            correlation_id=g.correlation_id,
        )
    return Data(data=RetryOut(media_id=result.media_id, processing_status="pending")), 202


@bp.post("/internal/media/<uuid:media_id>/retry")
@validate_response(Data[OperatorRetryOut], 202)
@operator_required(Role.OPERATOR)
async def operator_retry_media(
    media_id: uuid.UUID, operator: OperatorIdentity
) -> tuple[Data[OperatorRetryOut], int]:
    """The same reset without the ownership check. Order: operator key (401/403) → 404
    E_MEDIA_NOT_FOUND → 409 E_MEDIA_NOT_RETRYABLE → 400 E_STORAGE_MISSING. Every call,
    refused ones included, is written to `operator_actions` (action `media.retry`)."""
    audit: dict[str, Any] = {
        "actor": operator.name,
        "action": "media.retry",
        "target": {"media_id": media_id},
        "operator_key_id": operator.key_id,
        "request_id": g.request_id,
    }
    state = nexus_state()
    try:
        async with unit_of_work() as uow:
            result = await retry.retry_media(
                uow.session,
                media_id,
                Topics.from_settings(state.settings),
                LocalStorage(state.settings.storage_dir),
                viewer=None,
                actor=f"operator:{operator.name}",
                request_id=g.request_id,
                correlation_id=g.correlation_id,
            )
            await record_action(
                uow.session,
                outcome="requeued",
                details={"failure_stage": result.failure_stage},
                **audit,
            )
    except NexusError as exc:
        async with transaction(state.sessionmaker) as session:
            await record_action(session, outcome=exc.code, **audit)
        raise
    out = OperatorRetryOut(
        media_id=result.media_id,
        processing_status="pending",
        enqueue_dispatched=uow.enqueue_dispatched,
    )
    return Data(data=out), 202
