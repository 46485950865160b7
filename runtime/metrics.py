"""Prometheus metrics shared by the API and the agents (SPEC §10).

`Metrics` owns one registry per process (or per test app, so apps built in one test process
never clash) holding: the process collectors, the job and message series the domain
reports through `nexus.metrics.Recorder`, the database-derived gauges (cached, see
`runtime/db_gauges.py`) and the connection pool's gauges, read at scrape time. Names are in
base units with the `nexus_` prefix; every label takes its value from a closed set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypedDict

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nexus.metrics import WEBHOOK_OUTCOMES
from runtime.db_gauges import DatabaseGauges

# Job attempts last from milliseconds (a no-op claim) to minutes (a big backfill).
RUN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Waits in the queue: from at once to hours when a backlog builds up.
QUEUE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200)


class PoolCollector(Collector):
    """The SQLAlchemy connection pool's state, read at each scrape (no I/O)."""

    def __init__(self, engine: Callable[[], AsyncEngine | None]) -> None:
        self._engine = engine

    def describe(self) -> Iterable[Metric]:
        return list(self._families(None))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._engine()))

    def _families(self, engine: AsyncEngine | None) -> Iterator[Metric]:
        pool: Any = engine.sync_engine.pool if engine is not None else None
        for name, doc, read in (
            ("nexus_db_pool_size", "Connections the pool keeps open.", "size"),
            ("nexus_db_pool_checked_out", "Connections in use now.", "checkedout"),
            (
                "nexus_db_pool_overflow",
                "Connections open beyond the pool size (negative: not yet opened).",
                "overflow",
            ),
        ):
            family = GaugeMetricFamily(name, doc)
            method = getattr(pool, read, None)
            if callable(method):
                family.add_metric([], float(method()))
            yield family


def engine_of(sessionmaker: async_sessionmaker[AsyncSession] | None) -> AsyncEngine | None:
    bind = sessionmaker.kw.get("bind") if sessionmaker is not None else None
    return bind if isinstance(bind, AsyncEngine) else None


class MetricsOptions(TypedDict, total=False):
    """`Metrics`' keywords, for subclasses that pass them on."""

    db_cache_seconds: float
    heartbeat_seconds: float
    engine: Callable[[], AsyncEngine | None]


class Metrics:
    """The registry of one process; implements `nexus.metrics.Recorder`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        *,
        db_cache_seconds: float = 5.0,
        heartbeat_seconds: float = 5.0,
        engine: Callable[[], AsyncEngine | None] = lambda: None,
    ) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.transitions = Counter(
            "nexus_job_transitions",
            "Job status changes by job type, from status ('none': created) and to status.",
            ["job_type", "from", "to"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            "nexus_job_run_seconds",
            "Duration of one job attempt, from its claim to its outcome.",
            ["job_type", "outcome"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.queue_seconds = Histogram(
            "nexus_job_queue_seconds",
            "Wait of a job between becoming due (pending) and being claimed.",
            ["job_type"],
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "nexus_job_retries",
            "Failed job attempts scheduled to be tried again.",
            ["job_type"],
            registry=registry,
        )
        self.rescues = Counter(
            "nexus_job_rescues",
            "Jobs taken back after their lease expired (worker died or hung).",
            ["job_type"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "nexus_dead_letters",
            "Messages sent to the dead-letter topic, by the topic they came from.",
            ["topic"],
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "nexus_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retry, dead_lettered).",
            ["outcome"],
            registry=registry,
        )
        for outcome in (*WEBHOOK_OUTCOMES, "other"):
            self.webhook_deliveries.labels(outcome=outcome)
        self.db = DatabaseGauges(
            registry, max_age_seconds=db_cache_seconds, heartbeat_seconds=heartbeat_seconds
        )
        registry.register(PoolCollector(engine))

    # nexus.metrics.Recorder
    def job_transition(self, job_type: str, from_status: str, to_status: str) -> None:
        self.transitions.labels(job_type, str(from_status), str(to_status)).inc()

    def job_queued(self, job_type: str, seconds: float) -> None:
        self.queue_seconds.labels(job_type).observe(seconds)

    def job_run(self, job_type: str, outcome: str, seconds: float) -> None:
        self.run_seconds.labels(job_type, str(outcome)).observe(seconds)

    def job_retried(self, job_type: str) -> None:
        self.retries.labels(job_type).inc()

    def job_rescued(self, job_type: str, count: int) -> None:
        self.rescues.labels(job_type).inc(count)

    def dead_lettered(self, topic: str) -> None:
        self.dead_letters.labels(topic).inc()

    def webhook_delivery(self, outcome: str) -> None:
        label = outcome if outcome in WEBHOOK_OUTCOMES else "other"
        self.webhook_deliveries.labels(label).inc()

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def seed_jobs(metrics: Metrics, job_types: Sequence[str]) -> None:
    """Create the per-job-type counters at 0, so `rate()` and `increase()` see the first
    event of a series instead of a series that appears already at 1."""
    for job_type in job_types:
        metrics.retries.labels(job_type)
        metrics.rescues.labels(job_type)
