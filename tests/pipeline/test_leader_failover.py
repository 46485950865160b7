"""Leader-only timers with two real workers: one leader relays; when it dies, the other does."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.processes import Child, poll, start_agents
from tests.support.services import free_port


async def _stats(port: int) -> dict[str, Any] | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            resp = await client.get(f"http://127.0.0.1:{port}/nexus/stats")
        return resp.json() if resp.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def _requeue_without_publishing(
    sm: async_sessionmaker[AsyncSession], settings: Settings
) -> uuid.UUID:
    """A pending job whose outbox row nobody publishes: only the relay can deliver it."""
    async with transaction(sm) as s:
        sc = await f.sharing_scenario(s, n_media=2)
    key = backfill.BackfillKey(sc["d"], sc["s"], sc["viewer"])
    await jobs.requeue_failed(sm, Topics.from_settings(settings), key)
    return sc["viewer"]


async def test_one_leader_relays_and_a_survivor_takes_over(
    pipeline_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], logs_dir: Path
) -> None:
    ports = {"w-a": pipeline_settings.agents_web_port, "w-b": free_port()}
    workers: dict[str, Child] = {}
    try:
        for name, port in ports.items():
            settings = pipeline_settings.model_copy(update={"agents_web_port": port})
            workers[name] = await start_agents(settings, logs_dir, name=name, worker_id=name)

        async def single_leader() -> str | None:
            stats = {n: await _stats(p) for n, p in ports.items()}
            leaders = [n for n, s in stats.items() if s and s["leader"]]
            followers = [n for n, s in stats.items() if s and not s["leader"]]
            return leaders[0] if len(leaders) == 1 and len(followers) == 1 else None

        leader = await poll(single_leader, deadline_s=60, what="exactly one leader")
        user = await _requeue_without_publishing(sessionmaker, pipeline_settings)
        await jobs.wait_for_status(
            sessionmaker, user, "completed", deadline_s=30, what="relayed job"
        )
        follower = next(n for n in ports if n != leader)
        follower_stats = await _stats(ports[follower])
        assert follower_stats is not None
        assert follower_stats["counters"].get("outbox:relayed", 0) == 0

        workers[leader].kill()  # no goodbye: the group must notice by session timeout

        async def survivor_leads() -> bool:
            stats = await _stats(ports[follower])
            return bool(stats and stats["leader"])

        await poll(survivor_leads, deadline_s=60, what="fail-over of leadership")
        user2 = await _requeue_without_publishing(sessionmaker, pipeline_settings)
        await jobs.wait_for_status(
            sessionmaker, user2, "completed", deadline_s=30, what="job after fail-over"
        )
        survivor = await _stats(ports[follower])
        assert survivor is not None and survivor["counters"]["outbox:relayed"] >= 1
    finally:
        for child in workers.values():
            child.stop()
