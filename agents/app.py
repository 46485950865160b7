"""The Faust app: `faust -A agents.app worker` (or `nexus agents`).

This module is a composition root: it loads Settings at import because Faust needs a
module-level app. Processing is `at_least_once`; no Faust tables, no Kafka transactions:
all state lives in Postgres and every job write is guarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agents import faults, lifecycle, routes, views
from agents.context import AgentContext
from agents.runner import Route, process
from agents.timers import (
    prune_expired_state,
    relay_outbox,
    rescue_expired_leases,
    schedule_due_jobs,
)
from agents.transport import Transport
from agents.watchdog import Watchdog
from agents.worker import NexusWorker
from nexus.config import Settings, load_settings
from nexus.sharing.health import Thresholds
from runtime.db_gauges import DatabaseGauges
from runtime.kafka import ensure_topics
from runtime.logs import configure_logging
from runtime.tracing import configure_tracing

log = logging.getLogger(__name__)
_METRICS_CONTENT_TYPE = "; ".join(
    p.strip() for p in CONTENT_TYPE_LATEST.split(";") if not p.strip().startswith("charset")
)


def _configure_logging(ctx: AgentContext) -> None:
    configure_logging(ctx.settings, fields={"worker_id": ctx.worker_id})


class NexusApp(faust.App):
    """Faust app that opens the agent context and creates topics before consuming."""

    nexus: AgentContext

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        Path(self.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()

    watchdog: Watchdog | None = None

    async def on_start(self) -> None:
        await _create_topics(self.nexus)
        await self.nexus.open()
        await lifecycle.heartbeat(self.nexus, self)
        self.watchdog = Watchdog(self, self.nexus, stall_seconds=self.nexus.settings.stall_seconds)
        self.watchdog.start()
        await super().on_start()

    async def on_stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        await super().on_stop()
        await lifecycle.heartbeat(self.nexus, self, status="stopped")
        await self.nexus.close()


async def _create_topics(ctx: AgentContext, *, patience_seconds: float = 120.0) -> None:
    """Create our topics before Faust subscribes; wait for a broker that is still starting."""
    deadline = time.monotonic() + patience_seconds
    while True:
        try:
            await ensure_topics(ctx.settings.kafka_bootstrap, ctx.topics.specs())
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("broker not answering (%s); retrying topic creation", type(exc).__name__)
            await asyncio.sleep(1.0)


def build_app(settings: Settings) -> NexusApp:
    ctx = AgentContext.create(settings)
    app = NexusApp(
        settings.faust_app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        processing_guarantee="at_least_once",
        store="memory://",
        # Faust keeps only scratch files here (no tables); keep them out of the work tree.
        datadir=f"var/faust/{settings.faust_app_id}",
        web_port=settings.agents_web_port,
        # Stats, dashboard and metrics: loopback unless NEXUS_AGENTS_WEB_HOST opens them.
        web_host=settings.agents_web_host,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,
        producer_acks=-1,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=settings.kafka_heartbeat_seconds,
        consumer_auto_offset_reset="earliest",
        web_in_thread=False,
        autodiscover=False,
        # SIGTERM drains before stopping; Faust logs through our set-up (agents/worker.py).
        Worker=NexusWorker,
    )
    app.nexus = ctx
    fault = faults.armed(settings)
    if fault is not None:
        faults.connect(fault, app, settings)
    topics = ctx.topics

    def work_topic(name: str) -> Any:
        return app.topic(
            name,
            partitions=settings.topic_partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    def consume(topic: str, route: Route) -> None:
        @app.agent(work_topic(topic), name=f"{topic}-agent", concurrency=route.concurrency)
        async def agent(stream: Any) -> None:
            async for event in stream.events():
                await process(ctx, route, event)

    for topic, route in routes.consumed(topics, ingest_concurrency=settings.ingest_concurrency):
        consume(topic, route)

    _register_timers(app, ctx)
    _register_views(app, ctx)
    return app


def _register_timers(app: NexusApp, ctx: AgentContext) -> None:
    """Leader-only timers: exactly one worker of the group runs each."""
    settings = ctx.settings

    @app.timer(settings.outbox_relay_interval_seconds, on_leader=True)
    async def outbox_relay() -> None:
        await relay_outbox(ctx)

    @app.timer(settings.scheduler_interval_seconds, on_leader=True)
    async def scheduler() -> None:
        await schedule_due_jobs(ctx)

    @app.timer(settings.rescue_interval_seconds, on_leader=True)
    async def rescue() -> None:
        await rescue_expired_leases(ctx)

    @app.timer(settings.prune_interval_seconds, on_leader=True)
    async def prune() -> None:
        await prune_expired_state(ctx)

    @app.timer(settings.worker_heartbeat_seconds)
    async def worker_heartbeat() -> None:
        await lifecycle.heartbeat(ctx, app)


def _register_views(app: NexusApp, ctx: AgentContext) -> None:
    """Monitoring views on the Faust web port."""

    @app.page("/nexus/ready")
    async def ready_view(web: Any, request: Any) -> Any:
        ok, body = views.readiness(app, ctx)
        return web.json(body, status=200 if ok else 503)

    @app.page("/nexus/stats")
    async def stats_view(web: Any, request: Any) -> Any:
        try:
            return web.json(await views.stats(ctx, app))
        except Exception as exc:
            log.warning("stats unavailable: %s", type(exc).__name__)
            return web.json(
                {"error": {"code": "E_DEPENDENCY_UNAVAILABLE", "message": "stats unavailable"}},
                status=503,
            )

    backlog_registry = CollectorRegistry()
    backlog = DatabaseGauges(backlog_registry, max_age_seconds=settings.metrics_db_cache_seconds)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        if ctx.sessionmaker is not None:
            await backlog.refresh(ctx.sessionmaker, Thresholds.from_settings(ctx.settings))
        body = generate_latest() + generate_latest(backlog_registry)
        # aiohttp refuses a charset inside content_type (the exposition is UTF-8 anyway).
        return web.bytes(body, content_type=_METRICS_CONTENT_TYPE)


settings = load_settings()
app = build_app(settings)
_configure_logging(app.nexus)
configure_tracing(settings, "nexus-agents")
