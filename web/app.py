"""The API's composition root: `create_app()` wires settings, database, broker and routes.

Only here is `load_settings()` called. Tests pass their own settings, sessionmaker and a
fake publisher; in production `web.asgi:app` builds everything from the environment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import structlog
from quart import Quart, Request, Response, g
from quart.ctx import RequestContext
from quart.globals import request_ctx
from quart.typing import ResponseReturnValue, ResponseTypes
from quart_schema import QuartSchema
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from werkzeug.exceptions import HTTPException

from nexus.config import Settings, load_settings
from nexus.db.engine import make_engine, make_sessionmaker
from nexus.db.readpool import ReadPool, asyncpg_dsn
from nexus.jobs.outbox import PublishedMarks
from nexus.messaging.publisher import Publisher
from runtime.kafka import KafkaPublisher
from runtime.logs import configure_logging
from runtime.metrics import engine_of
from runtime.tracing import configure_tracing
from web import docs_ui, frame, http_spans, request_ids
from web.auth import check_internal_header
from web.converters import IdConverter, UUIDConverter, reject_invalid_path_params
from web.deadline import DeadlineQuart
from web.errors import register_error_handlers
from web.frame import RequestFrame
from web.json import install_strict_json
from web.metrics import HttpMetrics, ReadPoolCollector
from web.openapi_doc import NexusOpenAPIProvider
from web.routes import (
    backfill_jobs,
    dead_letters,
    ingest_jobs,
    invites,
    libraries,
    me,
    media,
    media_events,
    operations,
    ops,
    outbox,
    stats,
    uploads,
    webhooks,
    workers,
)
from web.state import EXTENSION_KEY, NexusState, nexus_state
from web.tokens import TokenVerifier

log = structlog.get_logger("nexus.web.access")
_ACCESS_LOGGER = logging.getLogger("nexus.web.access")

# quart-schema's endpoints: the OpenAPI document and the docs page (with its assets) are
# public.
_SCHEMA_ENDPOINTS = {"openapi", "swagger_ui", docs_ui.ASSET_ENDPOINT}


def create_app(
    settings: Settings | None = None,
    *,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    publisher: Publisher | None = None,
) -> Quart:
    """Build the API. Resources created here (engine, Kafka producer) are closed on shutdown;
    resources passed in belong to the caller."""
    settings = settings or load_settings()
    configure_logging(settings)
    tracing_on = configure_tracing(settings, "nexus-api") is not None

    app = NexusQuart("nexus", static_folder=None)
    app.request_timeout_seconds = settings.request_timeout_seconds
    app.url_map.converters["uuid"] = UUIDConverter
    app.url_map.converters["id"] = IdConverter
    app.url_map.strict_slashes = False
    docs_ui.configure(app)  # before QuartSchema: /docs loads Swagger UI from our assets
    QuartSchema(
        app,
        info={
            "title": "Nexus API",
            "version": "0.1.0",
            "description": "Generate a client from this document: docs/web.md.",
        },
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=NexusOpenAPIProvider,
    )
    install_strict_json(app)  # after QuartSchema, which installs its own provider
    _responses_skip_schema_conversion(app)  # after QuartSchema, which wraps make_response

    engine: AsyncEngine | None = None
    if sessionmaker is None:
        engine = make_engine(settings)
        sessionmaker = make_sessionmaker(engine)
    owns_publisher = publisher is None
    if publisher is None:
        publisher = KafkaPublisher.from_settings(
            settings, timeout_seconds=settings.publish_timeout_seconds
        )

    read_pool = ReadPool(asyncpg_dsn(sessionmaker.kw["bind"].url), size=settings.database_pool_size)
    state = NexusState(
        settings=settings,
        sessionmaker=sessionmaker,
        publisher=publisher,
        verifier=TokenVerifier(settings),
        metrics=HttpMetrics(
            db_cache_seconds=settings.metrics_db_cache_seconds,
            heartbeat_seconds=settings.worker_heartbeat_seconds,
            engine=lambda: engine_of(sessionmaker),
        ),
        marks=PublishedMarks(sessionmaker),
        internal_exempt_endpoints=set(_SCHEMA_ENDPOINTS),
        read_pool=read_pool,
    )
    state.metrics.add(ReadPoolCollector(read_pool))
    app.extensions[EXTENSION_KEY] = state

    if tracing_on:
        http_spans.install(app)
    register_error_handlers(app)
    app.register_blueprint(ops.bp)
    app.register_blueprint(me.bp)
    app.register_blueprint(stats.bp)
    app.register_blueprint(outbox.bp)
    app.register_blueprint(dead_letters.bp)
    app.register_blueprint(workers.bp)
    app.register_blueprint(backfill_jobs.bp)
    app.register_blueprint(invites.bp)
    app.register_blueprint(libraries.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(ingest_jobs.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(media_events.bp)
    app.register_blueprint(uploads.bp)
    app.register_blueprint(webhooks.bp)

    warm_up: list[asyncio.Future[bool]] = []

    @app.before_serving
    async def _start() -> None:
        # In the background: the API serves (and reports the broker in /ready) whether or
        # not Kafka answers yet; the first request then finds the producer started. No
        # topic metadata: the agents create the topics (with their partition count), and
        # asking a broker that auto-creates before they did would create them wrong.
        if owns_publisher and isinstance(publisher, KafkaPublisher):
            warm_up.append(asyncio.ensure_future(publisher.warm_up()))
        await _open_read_pool(read_pool, ours=engine is not None)

    @app.after_serving
    async def _shutdown() -> None:
        for task in warm_up:
            task.cancel()
        if state.marks is not None:
            await state.marks.close()
        await state.verifier.aclose()
        if owns_publisher:
            close = getattr(state.publisher, "close", None)
            if close is not None:
                await close()
        await read_pool.close()
        if engine is not None:
            await engine.dispose()

    return app


async def _open_read_pool(read_pool: ReadPool, *, ours: bool) -> None:
    # On a caller's engine (tests) its connections are opened as reads need them.
    if not ours:
        return
    try:
        await read_pool.open()
    except Exception as exc:
        # The API serves without the database too (503s, /ready says so); the first read
        # opens the pool once the database answers.
        log.warning("read pool not opened at start", error=type(exc).__name__)


def _responses_skip_schema_conversion(app: Quart) -> None:
    """quart-schema wraps `make_response` to turn models into JSON; a view that answers a
    `Response` (the hot reads, serialised once by `json_response`) has nothing to convert
    and goes to Quart's own `make_response` directly (quart-schema would hand it on
    unchanged after a dozen type checks)."""
    converting = app.make_response
    plain = Quart.make_response.__get__(app)

    async def make_response(result: ResponseReturnValue | HTTPException) -> ResponseTypes:
        if isinstance(result, Response):
            return await plain(result)
        return await converting(result)

    app.make_response = make_response  # type: ignore[method-assign]


class NexusQuart(DeadlineQuart):
    """The API's Quart: its own work at the start and end of every request is done here,
    not in `before_request`/`after_request` hooks (each hook costs an `ensure_async` and
    an await per request), on the request's `web.frame` instead of context proxies. Hooks
    registered by others (`web.http_spans`) still run, first, as they did."""

    async def preprocess_request(
        self, request_context: RequestContext | None = None
    ) -> ResponseReturnValue | None:
        if _any_hook(self.before_request_funcs) or _any_hook(self.url_value_preprocessors):
            result = await super().preprocess_request(request_context)
            if result is not None:
                return result
        req = (request_context or request_ctx).request
        # Order matters: ids first (every later failure carries them), then the internal
        # header (403 before anything else is revealed), then path parameter validation.
        current = _begin(self, req)
        check_internal_header(self, current)
        reject_invalid_path_params(req.view_args)
        return None

    async def process_response(
        self, response: ResponseTypes, request_context: RequestContext | None = None
    ) -> ResponseTypes:
        ctx = request_context or request_ctx
        if (
            ctx._after_request_functions
            or _any_hook(self.after_request_funcs)
            or not self.session_interface.is_null_session(ctx.session)
        ):
            response = await super().process_response(response, ctx)
        _end(self, ctx.request, response)
        return response


def _any_hook(funcs: Mapping[Any, list[Any]]) -> bool:
    return any(funcs.values())


def _begin(app: Quart, req: Request) -> RequestFrame:
    current = frame.begin(req, nexus_state(app))
    # Code beyond the hot path reads the ids from `g` (error envelopes, write routes).
    globals_ = g._get_current_object()
    globals_.request_id = current.request_id
    globals_.correlation_id = current.correlation_id
    return current


def _end(app: Quart, req: Request, response: ResponseTypes) -> None:
    current = frame.current()
    if current is None or current.request is not req:  # failed before preprocessing
        current = _begin(app, req)
    response.headers[request_ids.REQUEST_ID_HEADER] = current.request_id
    response.headers[request_ids.CORRELATION_ID_HEADER] = current.correlation_id
    rule = req.url_rule.rule if req.url_rule is not None else None
    elapsed = time.perf_counter() - current.started
    current.state.metrics.observe(req.method, rule, response.status_code, elapsed)
    # The access line is built (processors, context) only when it will be written.
    if _ACCESS_LOGGER.isEnabledFor(logging.INFO):
        log.info(
            "http request",
            method=req.method,
            route=rule,
            status=response.status_code,
            duration_ms=round(elapsed * 1000, 2),
        )
