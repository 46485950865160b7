"""The SREs' views on the agents' web port (SPEC §10; docs/operations.md "Dashboard and
stats"), all read-only and unauthenticated like the rest of that port, which binds to
loopback unless NEXUS_AGENTS_WEB_HOST opens it:

- `GET /nexus/stats`: this worker's live numbers and the database's (cached);
- `GET /nexus/jobs/failed`: the most recently failed jobs with links to their timelines;
- `GET /nexus/jobs/timeline?job_type=&<key columns>=[&format=json]`: one job's history;
- `GET /nexus/dashboard`: the self-contained page that charts the two JSON views.

A failure answers the error envelope `{"error": {code, message, request_id}}`: 400
`E_INVALID_REQUEST` for a bad query, 404 `E_NOT_FOUND` for an unknown job, 503
`E_DEPENDENCY_UNAVAILABLE` when the database does not answer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from agents import pages, views
from agents.context import AgentContext
from agents.stats import StatsCache
from nexus.errors import NexusError

log = logging.getLogger(__name__)

# The statuses of the codes these views answer (the API's table is web/statuses.py, which
# the agents may not import).
_STATUS = {"E_INVALID_REQUEST": 400, "E_NOT_FOUND": 404, "E_DEPENDENCY_UNAVAILABLE": 503}


def register(app: Any, ctx: AgentContext) -> None:
    cache = StatsCache(ctx, max_age_seconds=ctx.settings.metrics_db_cache_seconds)

    @app.page("/nexus/stats")
    async def stats_view(web: Any, request: Any) -> Any:
        return await _answer(web, views.stats(ctx, app, cache))

    @app.page("/nexus/jobs/failed")
    async def failed_jobs_view(web: Any, request: Any) -> Any:
        return await _answer(web, views.failed_jobs(cache))

    @app.page(views.TIMELINE_PATH)
    async def timeline_view(web: Any, request: Any) -> Any:
        query = {str(k): str(v) for k, v in request.query.items()}
        render = None if query.get("format") == "json" else pages.timeline_html
        return await _answer(web, views.job_timeline(ctx, query), render=render)

    @app.page("/nexus/dashboard")
    async def dashboard_view(web: Any, request: Any) -> Any:
        return web.html(pages.dashboard_html())


async def _answer(
    web: Any,
    body: Awaitable[dict[str, Any]],
    *,
    render: Callable[[dict[str, Any]], str] | None = None,
) -> Any:
    """`body` as JSON (or HTML through `render`), or its failure as the error envelope."""
    try:
        value = await body
    except NexusError as exc:
        return _error(web, exc.code, exc.message)
    except Exception as exc:  # the database did not answer (or answered too late)
        log.warning("monitoring view unavailable: %s", type(exc).__name__)
        return _error(web, "E_DEPENDENCY_UNAVAILABLE", "the database did not answer")
    return web.html(render(value)) if render is not None else web.json(value)


def _error(web: Any, code: str, message: str) -> Any:
    return web.json(
        {"error": {"code": code, "message": message, "request_id": uuid.uuid4().hex}},
        status=_STATUS.get(code, 500),
    )
