"""`/internal/webhooks` (admin) and `/internal/webhook-deliveries` (viewer; retry operator)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.messaging.messages import DomainEvent
from nexus.webhooks import service
from tests.support.db import one, rows
from tests.support.operators import operator_token
from tests.support.webapp import Api

URL = "https://hooks.example.org/nexus"


async def test_admins_create_list_get_and_deactivate_and_the_secret_is_shown_once(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession], tokens: dict[str, str]
) -> None:
    admin, operator = tokens["admin"], tokens["operator"]
    body = {"url": URL, "event_types": ["media.ready", "media.ready", "media.failed"]}
    denied = await api.post("/internal/webhooks", json=body, token=operator)
    assert denied.status_code == 403
    r = await api.post("/internal/webhooks", json=body, token=admin)
    assert r.status_code == 201
    created = (await r.get_json())["data"]
    assert created["secret"].startswith("whsec_") and created["active"] is True
    assert created["event_types"] == ["media.failed", "media.ready"]
    listed = (await (await api.get("/internal/webhooks", token=admin)).get_json())["data"]
    assert [item["id"] for item in listed] == [created["id"]] and "secret" not in listed[0]
    one = await api.get(f"/internal/webhooks/{created['id']}", token=admin)
    assert "secret" not in (await one.get_json())["data"]
    gone = await api.request("DELETE", f"/internal/webhooks/{created['id']}", token=admin)
    assert gone.status_code == 200 and (await gone.get_json())["data"]["active"] is False
    actions = await rows(
        sessionmaker,
        "SELECT action FROM operator_actions WHERE action LIKE 'webhook.%' ORDER BY id",
    )
    assert [a.action for a in actions] == ["webhook.create", "webhook.deactivate"]


async def test_bad_subscriptions_are_refused_with_the_envelope(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    admin = await operator_token(sessionmaker, "admin")
    cases = [
        ({"url": "http://169.254.169.254/latest", "event_types": ["*"]}, "E_INVALID_URL"),
        ({"url": "http://localhost:8080/", "event_types": ["*"]}, "E_INVALID_URL"),
        ({"url": "https://hooks.example.org:8443/", "event_types": ["*"]}, "E_INVALID_URL"),
        ({"url": URL, "event_types": []}, "E_INVALID_REQUEST"),
        ({"url": URL, "event_types": ["Bad Name!"]}, "E_INVALID_REQUEST"),
        ({"url": URL, "event_types": ["*"], "secret": "hunter2"}, "E_INVALID_REQUEST"),
        ({"url": URL, "event_types": ["*"], "colour": "red"}, "E_INVALID_REQUEST"),
    ]
    for body, code in cases:
        r = await api.post("/internal/webhooks", json=body, token=admin)
        assert r.status_code == 400, body
        assert (await r.get_json())["error"]["code"] == code, body
    missing = await api.get(f"/internal/webhooks/{uuid.uuid4()}", token=admin)
    assert missing.status_code == 404
    assert (await api.get("/internal/webhooks/not-a-uuid", token=admin)).status_code == 400


async def test_deliveries_are_listed_for_viewers_and_a_dead_one_can_be_retried(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession], tokens: dict[str, str]
) -> None:
    viewer, operator = tokens["viewer"], tokens["operator"]
    async with transaction(sessionmaker) as s:
        sub, _ = await service.create_subscription(s, url=URL, event_types=["*"])
        for n in range(3):
            await service.record_event(s, DomainEvent(event="media.ready", entity_id=f"m{n}"))
        await s.execute(
            text(
                "UPDATE webhook_deliveries SET status = 'dead', attempts = 12,"
                " last_error = 'HTTP 503; attempts exhausted'"
                " WHERE id = (SELECT min(id) FROM webhook_deliveries)"
            )
        )
    r = await api.get("/internal/webhook-deliveries?status=dead", token=viewer)
    dead = (await r.get_json())["data"]
    assert len(dead) == 1 and dead[0]["attempts"] == 12
    assert dead[0]["subscription_id"] == str(sub.id) and "body" not in dead[0]
    first = await (await api.get("/internal/webhook-deliveries?limit=2", token=viewer)).get_json()
    assert len(first["data"]) == 2 and first["page"]["has_more"]
    cursor = first["page"]["next_cursor"]
    rest = await api.get(f"/internal/webhook-deliveries?limit=2&cursor={cursor}", token=viewer)
    ids = [d["id"] for d in first["data"]] + [d["id"] for d in (await rest.get_json())["data"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 3
    assert (
        await api.post(f"/internal/webhook-deliveries/{dead[0]['id']}/retry", token=viewer)
    ).status_code == 403
    retried = await api.post(f"/internal/webhook-deliveries/{dead[0]['id']}/retry", token=operator)
    assert (await retried.get_json())["data"] == {"id": dead[0]["id"], "retried": True}
    again = await api.post(f"/internal/webhook-deliveries/{dead[0]['id']}/retry", token=operator)
    assert (await again.get_json())["data"]["retried"] is False
    missing = await api.post("/internal/webhook-deliveries/999999/retry", token=operator)
    assert missing.status_code == 404
    row = await one(
        sessionmaker,
        "SELECT status, attempts FROM webhook_deliveries WHERE id = :i",
        i=dead[0]["id"],
    )
    assert tuple(row) == ("pending", 0)
    bad = await api.get("/internal/webhook-deliveries?status=lost", token=viewer)
    assert bad.status_code == 400
