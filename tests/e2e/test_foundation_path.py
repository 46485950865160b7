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

from nexus.db.tx import transaction
from nexus.operators.service import create_key
from tests.conftest import TEST_INTERNAL_SECRET, make_settings
from tests.e2e.conftest import Stack
from tests.support import factories as f
from tests.support.processes import Child, poll, start_agents, start_api
from tests.support.services import Broker, broker_ready, free_port

pytestmark = pytest.mark.e2e


async def _seed(sm: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with transaction(sm) as s:
        sc = await f.sharing_scenario(s, n_media=5)
        await f.backfill_job(
            s, sc["d"], sc["s"], sc["viewer"], status="completed", finished_at=datetime.now(UTC)
        )
        key = await create_key(s, name=f"op-{uuid.uuid4().hex[:8]}", role="operator")
    sc["token"] = key.token
    return sc


def _requeue_body(sc: dict[str, Any]) -> dict[str, str]:
    return {
        "default_library_id": str(sc["d"]),
        "source_library_id": str(sc["s"]),
        "user_id": str(sc["viewer"]),
        "reason": "e2e",
    }


def _headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "X-Nexus-Internal": TEST_INTERNAL_SECRET,
        "X-Request-ID": f"e2e-{uuid.uuid4().hex[:8]}",
        "X-Correlation-ID": "corr-e2e",
    }


async def _job_events(sm: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> list[tuple]:
    async with sm() as s:
        rows = await s.execute(
            text(
                "SELECT from_status, to_status, correlation_id FROM job_events "
                "WHERE job_type = 'backfill' AND job_key->>'user_id' = :u ORDER BY id"
            ),
            {"u": str(user_id)},
        )
        return [tuple(r) for r in rows]


async def _completed(sm: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> bool:
    async with sm() as s:
        status = await s.scalar(
            text("SELECT status FROM default_library_backfill_jobs WHERE user_id = :u"),
            {"u": user_id},
        )
    return status == "completed"


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

    await poll(lambda: _completed(sessionmaker, sc["viewer"]), deadline_s=30, what="completed")
    assert await _job_events(sessionmaker, sc["viewer"]) == [
        ("completed", "pending", "corr-e2e"),
        ("pending", "running", "corr-e2e"),
        ("running", "completed", "corr-e2e"),
    ]
    async with sessionmaker() as s:
        edges = await s.scalar(
            text("SELECT count(*) FROM default_library_closure_edges WHERE default_library_id=:d"),
            {"d": sc["d"]},
        )
        action = (
            await s.execute(text("SELECT action, outcome, actor FROM operator_actions"))
        ).one()
    assert edges == 5
    assert action.action == "backfill.requeue" and action.outcome == "requeued"


async def test_work_survives_a_broker_outage_at_request_time(
    db_url: str, sessionmaker: async_sessionmaker[AsyncSession], logs_dir: Path
) -> None:
    own = Broker(port=free_port(), log_path=logs_dir / "own-broker.log")
    own.start()
    settings = make_settings(
        database_url=db_url,
        kafka_bootstrap=own.bootstrap,
        api_port=free_port(),
        agents_web_port=free_port(),
        publish_timeout_seconds=1.0,
    )
    api: Child | None = None
    agents: Child | None = None
    try:
        await broker_ready(own.bootstrap)
        agents = await start_agents(settings, logs_dir)
        api = await start_api(settings, logs_dir)
        sc = await _seed(sessionmaker)
        own.stop()  # the broker is gone when the request arrives

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}") as client:
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
        async with sessionmaker() as s:
            unpublished = await s.scalar(
                text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )
        assert unpublished == 1

        # A fresh broker (memory only: nothing survived) on the same address.
        own.start()
        await broker_ready(own.bootstrap)
        await poll(lambda: _completed(sessionmaker, sc["viewer"]), deadline_s=90, what="completed")
        async with sessionmaker() as s:
            unpublished = await s.scalar(
                text(
                    "SELECT count(*) FROM outbox "
                    "WHERE published_at IS NULL AND topic LIKE '%backfill'"
                )
            )
        assert unpublished == 0
        assert [e[1] for e in await _job_events(sessionmaker, sc["viewer"])] == [
            "pending",
            "running",
            "completed",
        ]
    finally:
        for child in (api, agents):
            if child is not None:
                child.stop()
        own.stop()
