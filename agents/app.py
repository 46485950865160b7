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
from faust.tables import TableManager

from agents import faults, jobs, lifecycle, metrics, monitor, routes, views
from agents.context import AgentContext
from agents.runner import Route, process
from agents.timers import (
    clean_storage,
    prune_expired_state,
    relay_outbox,
    rescue_expired_leases,
    schedule_due_jobs,
)
from agents.transport import Transport
from agents.watchdog import Watchdog
from agents.webhooks import deliver_webhooks
from agents.worker import NexusWorker
from nexus.config import Settings, load_settings
from runtime.kafka import client_options, ensure_topics
from runtime.logs import configure_logging
from runtime.tracing import configure_tracing

log = logging.getLogger(__name__)


def _configure_logging(ctx: AgentContext) -> None:
    configure_logging(ctx.settings, fields={"worker_id": ctx.worker_id})


class TablelessManager(TableManager):
    """Faust's table manager waits a fixed second at start for tables to be declared; this
    app declares none (state lives in PostgreSQL), so the consumer subscribes at once."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


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
            await ensure_topics(
                ctx.settings.kafka_bootstrap,
                ctx.topics.specs(),
                options=client_options(ctx.settings),
            )
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("broker not answering (%s); retrying topic creation", type(exc).__name__)
            await asyncio.sleep(1.0)


def broker_credentials(settings: Settings) -> Any:
    """Faust's form of the broker security settings (None for PLAINTEXT): Faust hands it
    to its consumer, producer and admin client as the same aiokafka options every other
    client of ours gets from `runtime.kafka.client_options`."""
    options = client_options(settings)
    protocol = options["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return faust.SASLCredentials(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        mechanism=options["sasl_mechanism"],
        ssl_context=options.get("ssl_context"),
    )


def build_app(settings: Settings) -> NexusApp:
    ctx = AgentContext.create(settings)
    app = NexusApp(
        settings.faust_app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
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
        TableManager=TablelessManager,
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
        ctx.rates.declare(route.name)

        @app.agent(work_topic(topic), name=f"{topic}-agent", concurrency=route.concurrency)
        async def agent(stream: Any) -> None:
            async for event in stream.events():
                await process(ctx, route, event)
                ctx.rates.add(route.name)  # every message, whatever its outcome

    consumed = routes.consumed(topics, ingest_concurrency=settings.ingest_concurrency)
    for topic, route in consumed:
        consume(topic, route)
    metrics.install(ctx, [spec.job for spec in jobs.registry(topics)], [t for t, _ in consumed])

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

    @app.timer(settings.webhook_interval_seconds, on_leader=True)
    async def webhooks() -> None:
        await deliver_webhooks(ctx)

    @app.timer(settings.worker_heartbeat_seconds)
    async def worker_heartbeat() -> None:
        await lifecycle.heartbeat(ctx, app)

    @app.timer(settings.upload_cleanup_interval_seconds, on_leader=True)
    async def storage_cleanup() -> None:
        await clean_storage(ctx)


def _register_views(app: NexusApp, ctx: AgentContext) -> None:
    """Monitoring views on the Faust web port: readiness and metrics here; stats, the
    dashboard and its JSON in agents/monitor.py."""

    @app.page("/nexus/ready")
    async def ready_view(web: Any, request: Any) -> Any:
        ok, body = views.readiness(app, ctx)
        return web.json(body, status=200 if ok else 503)

    monitor.register(app, ctx)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(await metrics.render(ctx), content_type=metrics.CONTENT_TYPE)


settings = load_settings()
app = build_app(settings)
_configure_logging(app.nexus)
configure_tracing(settings, "nexus-agents")
