"""Operator routes for backfill jobs (SPEC §7)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field
from quart import Blueprint, g
from quart_schema import validate_request, validate_response

from nexus.db.tx import transaction
from nexus.errors import NotFound
from nexus.messaging.topics import Topics
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity, record_action
from nexus.sharing import backfill
from web.auth import operator_required
from web.envelope import Data
from web.state import nexus_state
from web.uow import unit_of_work

bp = Blueprint("backfill_jobs", __name__, url_prefix="/internal")


class RequeueIn(BaseModel):
    default_library_id: uuid.UUID
    source_library_id: uuid.UUID
    user_id: uuid.UUID
    reason: str | None = Field(default=None, max_length=1000)


class RequeueOut(BaseModel):
    default_library_id: uuid.UUID
    source_library_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    attempts: int
    last_error_code: str | None
    updated_at: datetime
    finished_at: datetime | None
    idempotent: bool
    enqueue_dispatched: bool


@bp.post("/libraries/backfill-jobs/requeue")
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
    audit = {
        "actor": operator.name,
        "action": "backfill.requeue",
        "target": key.as_dict(),
        "operator_key_id": operator.key_id,
        "details": {"reason": data.reason} if data.reason else None,
        "request_id": g.request_id,
    }
    try:
        async with unit_of_work() as uow:
            result = await backfill.requeue(
                uow.session,
                key,
                Topics.from_settings(state.settings),
                actor=f"operator:{operator.name}",
                request_id=g.request_id,
                correlation_id=g.correlation_id,
            )
            outcome = "noop_running" if result.idempotent else "requeued"
            await record_action(uow.session, outcome=outcome, **audit)
    except NotFound:
        async with transaction(state.sessionmaker) as session:
            await record_action(session, outcome="not_found", **audit)
        raise
    return Data(
        data=RequeueOut(
            **result.job,
            idempotent=result.idempotent,
            enqueue_dispatched=uow.enqueue_dispatched,
        )
    )
