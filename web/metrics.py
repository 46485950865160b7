"""Prometheus metrics for one app instance (its own registry, so test apps never clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from runtime.db_gauges import DatabaseGauges

UNMATCHED_ROUTE = "<unmatched>"


class HttpMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, db_cache_seconds: float = 5.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "nexus_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nexus_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["method", "route"],
            registry=self.registry,
        )
        self.outbox_publish = Counter(
            "nexus_api_outbox_publish",
            "Outbox rows the API published right after commit, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.backlog = DatabaseGauges(self.registry, max_age_seconds=db_cache_seconds)

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        label = route or UNMATCHED_ROUTE
        self.requests.labels(method=method, route=label, status=str(status)).inc()
        self.latency.labels(method=method, route=label).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
