"""Operator routes under `/internal` (internal header + operator key; see web/auth.py)."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.ingest.models import IngestJob
from nexus.jobs import relay
from nexus.operations.models import Operation
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from nexus.sharing.health import BacklogHealth, Thresholds, backlog_health
from nexus.sharing.models import BackfillJob
from web.auth import operator_required
from web.envelope import Data
from web.openapi import raises
from web.state import nexus_state
from web.uow import unit_of_work

bp = Blueprint("stats", __name__, url_prefix="/internal")


class OutboxStatsOut(BaseModel):
    unpublished: int
    parked: int
    oldest_age_seconds: float | None


class JobsStatsOut(BaseModel):
    backfill: dict[str, int]
    ingest: dict[str, int]
    operation: dict[str, int]


# The API's schema name for the service's row (nexus.db.types.Record).
class BacklogOut(BacklogHealth):
    pass


class StatsOut(BaseModel):
    outbox: OutboxStatsOut
    jobs: JobsStatsOut
    backfill_backlog: BacklogOut


async def _count_by_status(
    session: AsyncSession, model: type[BackfillJob] | type[IngestJob] | type[Operation]
) -> dict[str, int]:
    rows = await session.execute(select(model.status, func.count()).group_by(model.status))
    return {str(status): int(count) for status, count in rows}


@bp.get("/stats")
@raises()
@validate_response(Data[StatsOut])
@operator_required(Role.VIEWER)
async def stats(operator: OperatorIdentity) -> Data[StatsOut]:
    """Outbox backlog, job counts by status and backfill backlog health (read-only)."""
    del operator
    thresholds = Thresholds.from_settings(nexus_state().settings)
    async with unit_of_work() as uow:
        ob = await relay.stats(uow.session)
        health = await backlog_health(uow.session, thresholds)
        backfill = await _count_by_status(uow.session, BackfillJob)
        ingest = await _count_by_status(uow.session, IngestJob)
        operation = await _count_by_status(uow.session, Operation)
    return Data(
        data=StatsOut(
            outbox=OutboxStatsOut(
                unpublished=ob.unpublished,
                parked=ob.parked,
                oldest_age_seconds=ob.oldest_age_seconds,
            ),
            jobs=JobsStatsOut(backfill=backfill, ingest=ingest, operation=operation),
            backfill_backlog=BacklogOut(**health.as_dict()),
        )
    )
