"""Operators' side audited and limited (issue #11.8): every refused operator request is an
`operator_actions` row (key hash prefix, role, required role, route) and a log line; each
key has a per-minute limit by role → 429 E_RATE_LIMITED with Retry-After."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.audit.chain import verify
from nexus.config import Settings
from tests.support.operators import operator_key
from tests.support.webapp import Api, AppFactory

Sm = async_sessionmaker[AsyncSession]


async def _key_and_id(sm: Sm, role: str) -> tuple[str, uuid.UUID]:
    created = await operator_key(sm, role)
    return created.token, created.id


@pytest.fixture
async def oapi(build_app: AppFactory, settings: Settings) -> AsyncIterator[Api]:
    limited = settings.model_copy(
        update={
            "operator_rate_limit_viewer_per_minute": 3,
            "operator_rate_limit_operator_per_minute": 50,
        }
    )
    app = build_app(settings=limited)
    async with app.test_app():
        yield Api(app.test_client())


async def _refusals(sm: Sm) -> list[Any]:
    async with sm() as s:
        return list(
            (
                await s.execute(
                    text(
                        "SELECT operator_key_id, actor, action, target, outcome, details, "
                        "request_id FROM operator_actions WHERE action LIKE 'auth.%' ORDER BY id"
                    )
                )
            ).all()
        )


async def test_missing_and_unknown_keys_are_recorded(
    oapi: Api, sessionmaker: Sm, caplog: pytest.LogCaptureFixture
) -> None:
    r = await oapi.get("/internal/stats", headers={"X-Request-ID": "req-no-key"})
    assert r.status_code == 401
    token = "nxop_" + "x" * 40
    r = await oapi.get("/internal/ingest-jobs", token=token)
    assert r.status_code == 401

    none, unknown = await _refusals(sessionmaker)
    assert (none.action, none.outcome) == ("auth.failed", "E_UNAUTHENTICATED")
    assert none.actor == "anonymous" and none.operator_key_id is None
    assert none.target == {"route": "GET /internal/stats"}
    assert none.details == {
        "key_hash_prefix": None,
        "role": None,
        "required_role": "viewer",
        "route": "GET /internal/stats",
    }
    assert none.request_id == "req-no-key"
    prefix = hashlib.sha256(token.encode()).hexdigest()[:12]
    assert unknown.actor == f"key:{prefix}" and unknown.operator_key_id is None
    assert unknown.details["key_hash_prefix"] == prefix
    assert unknown.details["route"] == "GET /internal/ingest-jobs"
    logged = [str(rec.msg) for rec in caplog.records if "operator request refused" in str(rec.msg)]
    assert len(logged) == 2 and prefix in logged[1] and "E_UNAUTHENTICATED" in logged[1]


async def test_a_denial_names_the_key_its_role_and_the_required_role(
    oapi: Api, sessionmaker: Sm
) -> None:
    token, key_id = await _key_and_id(sessionmaker, "viewer")
    media_id = uuid.uuid4()
    r = await oapi.post(f"/internal/media/{media_id}/retry", token=token)
    assert r.status_code == 403 and (await r.get_json())["error"]["code"] == "E_FORBIDDEN"

    (denied,) = await _refusals(sessionmaker)
    assert (denied.action, denied.outcome) == ("auth.denied", "E_FORBIDDEN")
    assert denied.operator_key_id == key_id
    assert denied.details == {
        "key_hash_prefix": hashlib.sha256(token.encode()).hexdigest()[:12],
        "role": "viewer",
        "required_role": "operator",
        "route": "POST /internal/media/<uuid:media_id>/retry",
    }
    # Nothing about the key or roles leaks into the answer.
    assert "viewer" not in str((await r.get_json())["error"].get("details"))


async def test_each_key_is_rate_limited_by_its_role(oapi: Api, sessionmaker: Sm) -> None:
    viewer, viewer_id = await _key_and_id(sessionmaker, "viewer")
    other, _ = await _key_and_id(sessionmaker, "viewer")
    operator, _ = await _key_and_id(sessionmaker, "operator")
    statuses = [(await oapi.get("/internal/stats", token=viewer)).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]

    refused = await oapi.get("/internal/stats", token=viewer)
    body = await refused.get_json()
    assert refused.status_code == 429 and body["error"]["code"] == "E_RATE_LIMITED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert (await oapi.get("/internal/stats", token=viewer)).status_code == 429
    # Another key, and a key of a role with a higher limit, are not affected.
    assert (await oapi.get("/internal/stats", token=other)).status_code == 200
    for _ in range(5):
        assert (await oapi.get("/internal/stats", token=operator)).status_code == 200

    # Audited once per key and window (both refusals are logged).
    (limited,) = await _refusals(sessionmaker)
    assert (limited.action, limited.outcome) == ("auth.rate_limited", "E_RATE_LIMITED")
    assert limited.operator_key_id == viewer_id and limited.details["role"] == "viewer"


async def test_refusal_rows_are_part_of_the_verified_chain(oapi: Api, sessionmaker: Sm) -> None:
    token, _ = await _key_and_id(sessionmaker, "viewer")
    await oapi.get("/internal/stats")
    await oapi.post(f"/internal/media/{uuid.uuid4()}/retry", token=token)
    async with sessionmaker() as s:
        report = await verify(await s.connection())
    assert report.problems == [] and report.rows["operator_actions"] == 2
