"""SPEC §10 "Workers": `GET /internal/workers` lists live workers (viewer), all with
`include_gone=true`, paginated."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.workers import service as workers
from tests.support.operators import operator_token
from tests.support.webapp import Api


async def _workers(sm: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Five workers: three live (one draining), one stopped, one silent for an hour."""
    names = {
        name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("a", "b", "draining", "stopped", "dead")
    }
    async with sm() as s, s.begin():
        for i, (name, worker_id) in enumerate(names.items()):
            status = name if name in ("draining", "stopped") else "running"
            await workers.beat(
                s,
                workers.Beat(
                    worker_id=worker_id,
                    status=status,
                    assigned=[f"t.backfill:{i}"],
                    version="1.0",
                    host="h",
                    pid=100 + i,
                ),
            )
            # Distinct start times, newest last.
            await s.execute(
                text(
                    "UPDATE workers SET started_at = now() - make_interval(mins => :m) "
                    "WHERE id = :i"
                ),
                {"m": 10 - i, "i": worker_id},
            )
        await s.execute(
            text("UPDATE workers SET last_heartbeat_at = now() - interval '1 hour' WHERE id = :i"),
            {"i": names["dead"]},
        )
    return names


async def test_live_workers_by_default_all_on_request(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    names = await _workers(sessionmaker)
    viewer = await operator_token(sessionmaker, "viewer")
    assert (await api.get("/internal/workers")).status_code == 401

    live = await (await api.get("/internal/workers", token=viewer)).get_json()
    assert [w["id"] for w in live["data"]] == [names["draining"], names["b"], names["a"]]
    assert all(w["alive"] for w in live["data"])
    first = live["data"][-1]
    assert (first["host"], first["pid"], first["assigned"], first["status"]) == (
        "h",
        100,
        ["t.backfill:0"],
        "running",
    )

    page = await (
        await api.get("/internal/workers?include_gone=true&limit=2", token=viewer)
    ).get_json()
    seen = [w["id"] for w in page["data"]]
    while page["page"]["has_more"]:
        cursor = page["page"]["next_cursor"]
        page = await (
            await api.get(
                f"/internal/workers?include_gone=true&limit=2&cursor={cursor}", token=viewer
            )
        ).get_json()
        seen += [w["id"] for w in page["data"]]
    assert seen == [names[n] for n in ("dead", "stopped", "draining", "b", "a")]
    everyone = await (await api.get("/internal/workers?include_gone=true", token=viewer)).get_json()
    alive = {w["id"]: w["alive"] for w in everyone["data"]}
    assert alive[names["dead"]] is False and alive[names["stopped"]] is False

    # A cursor of the live list is refused by the full one; bad values are 400.
    live_page = await (await api.get("/internal/workers?limit=1", token=viewer)).get_json()
    cursor = live_page["page"]["next_cursor"]
    other = await api.get(f"/internal/workers?include_gone=true&cursor={cursor}", token=viewer)
    assert other.status_code == 400
    assert (await other.get_json())["error"]["code"] == "E_INVALID_CURSOR"
    bad = await api.get("/internal/workers?include_gone=sometimes", token=viewer)
    assert bad.status_code == 400
