"""Ops routes: liveness, readiness, metrics. None needs the internal header or a token."""

from __future__ import annotations

import asyncio

import structlog
from pydantic import BaseModel
from quart import Blueprint, Response
from quart_schema import validate_response
from sqlalchemy import text

from nexus.sharing.health import Thresholds
from web.auth import internal_exempt
from web.envelope import Data, error_response
from web.openapi import raises, responds
from web.state import nexus_state

log = structlog.get_logger("nexus.web.ops")

bp = Blueprint("ops", __name__)

READY_TIMEOUT_SECONDS = 2.0


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    database: str
    broker: str


@bp.get("/health")
@raises()
@internal_exempt
@validate_response(Data[HealthOut])
async def health() -> Data[HealthOut]:
    """The process is alive (no I/O)."""
    return Data(data=HealthOut(status="ok"))


async def _database_ok() -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with nexus_state().sessionmaker() as session:
                await session.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness: database check failed", error=type(exc).__name__)
        return False


async def _broker_ok() -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS + 1):
            return await nexus_state().publisher.ping()
    except Exception as exc:
        log.warning("readiness: broker check failed", error=type(exc).__name__)
        return False


@bp.get("/ready")
@raises("E_DEPENDENCY_UNAVAILABLE")
@internal_exempt
@validate_response(Data[ReadyOut], 200)
async def ready() -> Data[ReadyOut] | Response:
    """200 when the database and the broker answer, else 503 naming what is down."""
    database, broker = await asyncio.gather(_database_ok(), _broker_ok())
    checks = {
        "database": "ok" if database else "unavailable",
        "broker": "ok" if broker else "unavailable",
    }
    if database and broker:
        return Data(data=ReadyOut(**checks))
    down = [name for name, ok in (("database", database), ("broker", broker)) if not ok]
    return error_response(
        "E_DEPENDENCY_UNAVAILABLE", f"unavailable: {', '.join(down)}", 503, details=checks
    )


@bp.get("/metrics")
@raises()
@responds(200, "Prometheus text exposition.", {"text/plain": {"type": "string"}})
@internal_exempt
async def metrics() -> Response:
    """Prometheus text exposition of this process's metrics (database gauges refreshed at
    most once per `NEXUS_METRICS_DB_CACHE_SECONDS`)."""
    state = nexus_state()
    await state.metrics.db.refresh(state.sessionmaker, Thresholds.from_settings(state.settings))
    return Response(state.metrics.render(), content_type=state.metrics.content_type)
