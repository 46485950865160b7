"""Operator route for agents workers (SPEC §10 "Workers"): who is consuming, and since when.

Guard: viewer. Live workers (running or draining, heard from within three heartbeats) by
default; `include_gone=true` adds stopped and dead ones (until they are pruned), each with
`alive` saying which it is.
"""

from __future__ import annotations

from datetime import datetime

from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from nexus.workers import service as workers
from web.auth import operator_required
from web.openapi import raises
from web.pagination import Keyset, ListQuery, Paged, list_page
from web.state import nexus_state

bp = Blueprint("workers", __name__, url_prefix="/internal")


class WorkersQuery(ListQuery):
    include_gone: bool = False


# The API's schema name for the service's row (nexus.db.types.Record).
class WorkerOut(workers.WorkerInfo):
    pass


@bp.get("/workers")
@raises()
@validate_response(Paged[WorkerOut])
@operator_required(Role.VIEWER)
@validate_querystring(WorkersQuery)
async def list_workers(query_args: WorkersQuery, operator: OperatorIdentity) -> Paged[WorkerOut]:
    """Workers newest first. Order: 401/403 key → 400 query/limit/cursor."""
    del operator
    return await list_page(
        query_args,
        "workers:all" if query_args.include_gone else "workers:live",
        Keyset((datetime, str), lambda r: (r.started_at, r.id)),
        lambda session, after: workers.list_workers(
            session,
            heartbeat_seconds=nexus_state().settings.worker_heartbeat_seconds,
            include_gone=query_args.include_gone,
            limit=query_args.limit + 1,
            after=(after[0], after[1]) if after else None,
        ),
        WorkerOut.model_validate,
    )
