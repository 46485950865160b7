"""Operator cancel of a running ingest end to end: API and agents as processes, a page
server that holds its answer until the test lets it go.

The worker is fetching when the operator cancels; once the page arrives, its completion is
refused (the lease is gone), so nothing is stored: the media stays `failed` with
`E_CANCELLED` and the job `cancelled`. The user's retry then brings it to readable.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from nexus.config import Settings
from nexus.db.engine import make_engine, make_sessionmaker
from nexus.db.tx import transaction
from nexus.operators.service import create_key
from tests.conftest import TEST_INTERNAL_SECRET
from tests.e2e.conftest import Client, Stack
from tests.e2e.test_ingest_faults import DELAYS, html, job_history, site
from tests.fetch.server import LocalServer, Request
from tests.support.processes import poll

__all__ = ["site"]  # the page server fixture, shared with the ingest fault tests


@pytest.fixture
def stack_settings(stack_settings: Settings) -> Settings:
    """The e2e stack with a fetch deadline far longer than the test: the worker is still
    waiting for the held page whenever the cancel lands."""
    return stack_settings.model_copy(
        update={
            "fetch_timeout_seconds": 120.0,
            "ingest_retry_delays": DELAYS,
            "scheduler_interval_seconds": 0.3,
        }
    )


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def _operator_token(stack: Stack) -> str:
    engine = make_engine(stack.settings, pool_size=1)
    try:
        async with transaction(make_sessionmaker(engine)) as s:
            created = await create_key(s, name=f"ops-{uuid.uuid4().hex[:6]}", role="operator")
    finally:
        await engine.dispose()
    return created.token


async def _one(dsn: str, sql: str, *args: object) -> asyncpg.Record | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow(sql, *args)
    finally:
        await conn.close()


async def test_cancel_of_a_running_ingest_refuses_its_completion_and_retry_revives_it(
    stack: Stack, client: Client, site: LocalServer
) -> None:
    release = asyncio.Event()

    async def held(writer: asyncio.StreamWriter, request: Request) -> None:
        await release.wait()
        await html()(writer, request)

    site.routes["/held"] = held
    token = await _operator_token(stack)
    media_id = await client.accepted(site.url("/held"))

    async def fetching() -> bool:
        row = await _one(
            stack.dsn,
            "SELECT j.status, m.processing_status FROM ingest_jobs j JOIN media m "
            "ON m.id = j.media_id WHERE j.media_id = $1",
            uuid.UUID(media_id),
        )
        return row is not None and (row[0], row[1]) == ("running", "extracting")

    await poll(fetching, deadline_s=60, interval=0.1, what="the worker to fetch")

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack.settings.api_port}",
        headers={"Authorization": f"Bearer {token}", "X-Nexus-Internal": TEST_INTERNAL_SECRET},
        timeout=30,
    ) as ops:
        resp = await ops.post(f"/internal/ingest-jobs/{media_id}/cancel", json={"reason": "e2e"})
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert (data["status"], data["previous_status"], data["processing_status"]) == (
        "cancelled",
        "running",
        "failed",
    )
    assert data["lease_owner"]

    stats_url = f"http://127.0.0.1:{stack.settings.agents_web_port}/nexus/stats"

    async def lost() -> int:
        async with httpx.AsyncClient(timeout=5) as http:
            counters = (await http.get(stats_url)).json()["counters"]
        return int(counters.get("ingest:lease_lost", 0))

    release.set()  # the page arrives; the worker extracts and tries to complete
    await poll(lost, deadline_s=60, interval=0.1, what="the worker's completion refused")

    media = await client.media(media_id)
    assert (media["processing_status"], media["last_error_code"], media["failure_stage"]) == (
        "failed",
        "E_CANCELLED",
        "extract",
    )
    fragments = await _one(
        stack.dsn, "SELECT count(*) FROM fragments WHERE media_id = $1", uuid.UUID(media_id)
    )
    assert fragments is not None and fragments[0] == 0
    history = await job_history(stack.dsn, media_id)
    assert history[-1][:2] == ("running", "cancelled") and history[-1][3] == "E_CANCELLED"
    assert "completed" not in [h[1] for h in history]

    resp = await client.http.post(f"/media/{media_id}/retry")
    assert resp.status_code == 202, resp.text
    done = await client.settled(media_id)
    assert done["processing_status"] == "ready_for_reading", done
    final = await job_history(stack.dsn, media_id)
    assert final[-1][:2] == ("running", "completed")
    # One attempt before the cancel and one after the retry: no failure, no rescue.
    assert [h[3] for h in final if h[1] == "pending" and h[0] == "running"] == []
