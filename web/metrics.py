"""The API's Prometheus metrics: the shared series (`runtime.metrics.Metrics`) plus HTTP.

Labels are bounded whoever sends the request: the method is one of the standard set or
`other`, the route is the URL rule's template (never the path) or `unmatched`, and the
status is the one this app answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Unpack

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.metrics import Metrics, MetricsOptions

if TYPE_CHECKING:
    from nexus.db.readpool import ReadPool

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


class HttpMetrics(Metrics):
    def __init__(self, **options: Unpack[MetricsOptions]) -> None:
        super().__init__(**options)
        self.requests = Counter(
            "nexus_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nexus_http_request_duration_seconds",
            "HTTP request latency by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.outbox_publish = Counter(
            "nexus_api_outbox_publish",
            "Outbox rows the API published right after commit, by outcome.",
            ["outcome"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        labels = (method_label(method), route or UNMATCHED_ROUTE, status)
        series = self._series.get(labels)
        if series is None:
            # `labels()` validates and locks on every call: each series is looked up once.
            # As bounded as the labels themselves.
            named = (labels[0], labels[1], str(status))
            series = self._series[labels] = (
                self.requests.labels(*named),
                self.latency.labels(*named),
            )
        series[0].inc()
        series[1].observe(seconds)


class ReadPoolCollector(Collector):
    """The hot reads' own pool (`nexus.db.readpool`), beside the engine's pool gauges."""

    def __init__(self, pool: ReadPool) -> None:
        self._pool = pool

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())

    def collect(self) -> Iterable[Metric]:
        for name, doc, value in (
            ("nexus_db_read_pool_size", "Connections the read pool keeps open.", self._pool.size),
            (
                "nexus_db_read_pool_checked_out",
                "Read pool connections in use now.",
                self._pool.checked_out,
            ),
        ):
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], float(value))
            yield family
