"""The agents' Prometheus exposition: the shared series plus this worker's consumer lag.

`nexus_consumer_lag{topic,partition}` is read at scrape time from the watchdog's last
snapshot of the assigned partitions (`ctx.lags`, high watermark - committed), so its
labels are exactly this worker's assignment and a scrape costs no broker round trip.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.context import AgentContext
from nexus.jobs.machine import JobType
from nexus.sharing.health import Thresholds
from runtime.metrics import seed_jobs

# aiohttp refuses a charset inside content_type (the exposition is UTF-8 anyway).
CONTENT_TYPE = "; ".join(
    p.strip() for p in CONTENT_TYPE_LATEST.split(";") if not p.strip().startswith("charset")
)


class ConsumerLag(Collector):
    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for lag in list(self.ctx.lags):
            if lag.lag is not None:
                family.add_metric([lag.topic, str(lag.partition)], float(lag.lag))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "nexus_consumer_lag",
            "Messages not yet consumed on an assigned partition (high watermark - committed).",
            labels=["topic", "partition"],
        )


def install(ctx: AgentContext, job_types: Iterable[JobType], topics: Iterable[str]) -> None:
    """Add the agents-only series to the worker's registry (once, at build); counters of
    the job types and consumed topics start at 0."""
    ctx.metrics.add(ConsumerLag(ctx))
    seed_jobs(ctx.metrics, [job.name for job in job_types])
    for topic in topics:
        ctx.metrics.dead_letters.labels(topic)


async def render(ctx: AgentContext) -> bytes:
    """Refresh the database gauges (at most once per cache period), then expose."""
    if ctx.sessionmaker is not None:
        await ctx.metrics.db.refresh(ctx.sessionmaker, Thresholds.from_settings(ctx.settings))
    return ctx.metrics.render()
