"""Ingest agent handler: one attempt of the media's ingest job named by the message."""

from __future__ import annotations

from agents.context import AgentContext
from nexus.fetching.fetch import FetchPolicy
from nexus.ingest import jobs, worker
from nexus.messaging.messages import IngestRequested
from nexus.messaging.topics import Topics
from nexus.uploads.storage import LocalStorage

_DEPS: dict[int, worker.IngestDeps] = {}


def _deps(ctx: AgentContext) -> worker.IngestDeps:
    """Built once per open context (settings are fixed for a worker's life)."""
    deps = _DEPS.get(id(ctx.extractors))
    if deps is None:
        settings = ctx.settings
        deps = _DEPS[id(ctx.extractors)] = worker.IngestDeps(
            storage=LocalStorage(settings.storage_dir),
            fetch_policy=FetchPolicy.from_settings(settings),
            topics=Topics.from_settings(settings),
            extraction=ctx.extractors,
        )
    return deps


async def handle_ingest(ctx: AgentContext, msg: IngestRequested) -> str:
    deps = _deps(ctx)
    return await ctx.run_attempt(
        jobs.JOB,
        {"media_id": msg.media_id},
        worker.make_work(deps),
        delays=ctx.settings.ingest_retry_delays,
        on_finish=worker.on_finish(deps.topics),
    )
