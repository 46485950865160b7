"""SPEC §10 "Outbox": operators list parked rows and retry them over HTTP (audited)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.jobs import outbox
from nexus.messaging.messages import DomainEvent
from tests.support.db import one, rows
from tests.support.operators import operator_token
from tests.support.webapp import Api


async def _rows(sm: async_sessionmaker[AsyncSession], n: int, *, parked: int) -> list[int]:
    """`n` unpublished rows, the first `parked` of them parked."""
    async with transaction(sm) as s:
        for i in range(n):
            event = DomainEvent(event="t", entity_id=f"e{i}", request_id="r", correlation_id="c")
            await outbox.enqueue(s, "t.events", "k", event)
        ids = outbox.enqueued_ids(s)
        await s.execute(
            text(
                "UPDATE outbox SET parked_at = now(), publish_attempts = 10, last_error = 'big' "
                "WHERE id = ANY(:parked_ids)"
            ),
            {"parked_ids": ids[:parked]},
        )
    return ids


async def test_parked_rows_are_listed_page_by_page(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _rows(sessionmaker, 5, parked=3)
    viewer = await operator_token(sessionmaker, "viewer")
    r = await api.get("/internal/outbox?limit=2", token=viewer)
    assert r.status_code == 200
    first = await r.get_json()
    assert [row["id"] for row in first["data"]] == ids[:2] and first["page"]["has_more"]
    assert first["data"][0]["last_error"] == "big" and first["data"][0]["parked_at"]
    cursor = first["page"]["next_cursor"]
    second = await (
        await api.get(f"/internal/outbox?limit=2&cursor={cursor}", token=viewer)
    ).get_json()
    assert [row["id"] for row in second["data"]] == ids[2:3] and not second["page"]["has_more"]
    waiting = await (await api.get("/internal/outbox?status=unpublished", token=viewer)).get_json()
    assert [row["id"] for row in waiting["data"]] == ids[3:]
    bad = await api.get("/internal/outbox?status=lost", token=viewer)
    assert bad.status_code == 400 and (await bad.get_json())["error"]["code"] == "E_INVALID_REQUEST"


async def test_retry_unparks_and_is_audited(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession], tokens: dict[str, str]
) -> None:
    ids = await _rows(sessionmaker, 2, parked=1)
    viewer, operator = tokens["viewer"], tokens["operator"]
    denied = await api.post(f"/internal/outbox/{ids[0]}/retry", token=viewer)
    assert denied.status_code == 403
    r = await api.post(f"/internal/outbox/{ids[0]}/retry", token=operator)
    assert r.status_code == 200 and (await r.get_json())["data"] == {"id": ids[0], "retried": True}
    again = await api.post(f"/internal/outbox/{ids[0]}/retry", token=operator)
    assert (await again.get_json())["data"]["retried"] is False
    missing = await api.post("/internal/outbox/999999999/retry", token=operator)
    assert (
        missing.status_code == 404 and (await missing.get_json())["error"]["code"] == "E_NOT_FOUND"
    )
    malformed = await api.post("/internal/outbox/abc/retry", token=operator)
    assert malformed.status_code == 400
    row = await one(
        sessionmaker, "SELECT parked_at, publish_attempts FROM outbox WHERE id = :i", i=ids[0]
    )
    outcomes = await rows(
        sessionmaker,
        "SELECT outcome FROM operator_actions WHERE action = 'outbox.retry' ORDER BY id",
    )
    assert row.parked_at is None and row.publish_attempts == 0
    assert [o.outcome for o in outcomes] == ["retried", "not_parked", "not_found"]
