"""The whole path with real processes: HTTP request → outbox → broker → Faust worker → Postgres.

API and agents run as subprocesses; the broker is a real Tansu; nothing is mocked.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from tests.e2e.conftest import Stack
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.db import count, one
from tests.support.operators import operator_headers, operator_token
from tests.support.processes import poll, start_agents, start_api
from tests.support.running import own_broker, running
from tests.support.services import broker_ready

pytestmark = pytest.mark.e2e


async def _seed(sm: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with transaction(sm) as s:
        sc = await f.sharing_scenario(s, n_media=5)
        await f.backfill_job(
            s, sc["d"], sc["s"], sc["viewer"], status="completed", finished_at=datetime.now(UTC)
        )
    sc["token"] = await operator_token(sm, "operator")
    return sc


def _requeue_body(sc: dict[str, Any]) -> dict[str, str]:
    return {
        "default_library_id": str(sc["d"]),
        "source_library_id": str(sc["s"]),
        "user_id": str(sc["viewer"]),
        "reason": "e2e",
    }


def _headers(token: str) -> dict[str, str]:
    return operator_headers(
        token, **{"X-Request-ID": f"e2e-{uuid.uuid4().hex[:8]}", "X-Correlation-ID": "corr-e2e"}
    )


async def _job_events(sm: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> list[Any]:
    return await jobs.events(sm, user_id, "from_status, to_status, correlation_id")


async def test_request_outbox_publish_worker_transition(
    stack: Stack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sc = await _seed(sessionmaker)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        resp = await client.post(
            "/internal/libraries/backfill-jobs/requeue",
            json=_requeue_body(sc),
            headers=_headers(sc["token"]),
        )
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["status"] == "pending" and data["attempts"] == 0
    assert data["idempotent"] is False and data["enqueue_dispatched"] is True

    async def published() -> list[Any] | None:
        async with sessionmaker() as s:
            rows = (
                await s.execute(
                    text(
                        "SELECT published_at IS NOT NULL, payload, publish_attempts FROM outbox "
                        "ORDER BY id LIMIT 1"  # the API's message (the worker's come later)
                    )
                )
            ).all()
        return rows if rows and all(r[0] for r in rows) else None

    # The API itself published the row right after commit and marked it a moment later
    # (one attempt; the relay would only look after outbox_relay_after_seconds).
    rows = await poll(published, deadline_s=2, interval=0.01, what="row marked published")
    assert [(r[0], r[2]) for r in rows] == [(True, 1)]
    assert rows[0][1]["correlation_id"] == "corr-e2e"

    await jobs.wait_for_status(sessionmaker, sc["viewer"], "completed", deadline_s=30)
    assert await _job_events(sessionmaker, sc["viewer"]) == [
        ("completed", "pending", "corr-e2e"),
        ("pending", "running", "corr-e2e"),
        ("running", "completed", "corr-e2e"),
    ]
    assert await jobs.edge_count(sessionmaker, sc["d"]) == 5
    action = await one(sessionmaker, "SELECT action, outcome, actor FROM operator_actions")
    assert action.action == "backfill.requeue" and action.outcome == "requeued"


async def test_work_survives_a_broker_outage_at_request_time(
    stack_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], logs_dir: Path
) -> None:
    async with own_broker(logs_dir / "own-broker.log") as own:
        settings = stack_settings.model_copy(
            update={"kafka_bootstrap": own.bootstrap, "publish_timeout_seconds": 1.0}
        )
        async with (
            running(start_agents(settings, logs_dir)),
            running(start_api(settings, logs_dir)),
        ):
            sc = await _seed(sessionmaker)
            own.stop()  # the broker is gone when the request arrives

            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{settings.api_port}"
            ) as client:
                resp = await client.post(
                    "/internal/libraries/backfill-jobs/requeue",
                    json=_requeue_body(sc),
                    headers=_headers(sc["token"]),
                    timeout=30,
                )
                assert resp.status_code == 200, resp.text
                assert resp.json()["data"]["enqueue_dispatched"] is False
                ready = await client.get("/ready")
                assert ready.status_code == 503
                assert ready.json()["error"]["code"] == "E_DEPENDENCY_UNAVAILABLE"
            unpublished = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            assert await count(sessionmaker, unpublished) == 1

            # A fresh broker (memory only: nothing survived) on the same address.
            own.start()
            await broker_ready(own.bootstrap)
            await jobs.wait_for_status(sessionmaker, sc["viewer"], "completed", deadline_s=90)
            # The relay marks the row after the broker took it, in its own transaction: the
            # job can complete before that mark is committed.
            backfill_unpublished = f"{unpublished} AND topic LIKE '%backfill'"

            async def marked() -> bool:
                return await count(sessionmaker, backfill_unpublished) == 0

            await poll(marked, deadline_s=30, what="the outbox row marked published")
            assert [e[1] for e in await _job_events(sessionmaker, sc["viewer"])] == [
                "pending",
                "running",
                "completed",
            ]
