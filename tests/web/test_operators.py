"""Operator guard on /internal/*: keys, roles, the internal header; and /internal/stats."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from quart import Blueprint
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.jobs import outbox
from nexus.messaging.messages import BackfillRequested
from nexus.operators.models import OperatorAction, OperatorKey
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from nexus.sharing.models import BackfillJob
from nexus.users.service import ensure_user
from tests.support.operators import operator_token
from tests.support.webapp import Api, AppFactory, make_token, serving
from web.auth import operator_required
from web.envelope import Data


def _ops_blueprint() -> Blueprint:
    bp = Blueprint("test_ops", __name__, url_prefix="/internal/_test")

    @bp.post("/requeue")
    @operator_required(Role.OPERATOR)
    async def requeue(operator: OperatorIdentity) -> Data[dict[str, str]]:
        return Data(data={"name": operator.name, "role": operator.role.value})

    return bp


@pytest.fixture
async def oapi(build_app: AppFactory) -> AsyncIterator[Api]:
    async with serving(build_app(), _ops_blueprint()) as api:
        yield api


async def _error(api: Api, method: str, path: str, **kw: object) -> tuple[int, str]:
    r = await api.request(method, path, **kw)  # type: ignore[arg-type]
    return r.status_code, (await r.get_json())["error"]["code"]


async def test_no_key_is_401(oapi: Api) -> None:
    assert await _error(oapi, "GET", "/internal/stats") == (401, "E_UNAUTHENTICATED")


async def test_unknown_key_is_401(oapi: Api) -> None:
    assert await _error(oapi, "GET", "/internal/stats", token="nxop_nope") == (
        401,
        "E_UNAUTHENTICATED",
    )


async def test_user_jwt_is_not_an_operator_key(oapi: Api) -> None:
    assert (await _error(oapi, "GET", "/internal/stats", token=make_token()))[0] == 401


async def test_disabled_key_is_401(
    oapi: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = await operator_token(sessionmaker, "admin", disabled=True)
    assert await _error(oapi, "GET", "/internal/stats", token=token) == (401, "E_UNAUTHENTICATED")


async def test_role_too_low_is_403(
    oapi: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = await operator_token(sessionmaker, "viewer")
    assert await _error(oapi, "POST", "/internal/_test/requeue", token=token) == (
        403,
        "E_FORBIDDEN",
    )


@pytest.mark.parametrize("role", ["operator", "admin"])
async def test_role_high_enough_gets_identity(
    oapi: Api, sessionmaker: async_sessionmaker[AsyncSession], role: str
) -> None:
    token = await operator_token(sessionmaker, role)
    r = await oapi.post("/internal/_test/requeue", token=token)
    assert r.status_code == 200
    assert (await r.get_json())["data"]["role"] == role


async def test_internal_header_is_checked_before_the_key(
    oapi: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = await operator_token(sessionmaker, "admin")
    assert await _error(oapi, "GET", "/internal/stats", token=token, internal=None) == (
        403,
        "E_INTERNAL_ONLY",
    )


async def test_stats_shape_and_counts(
    oapi: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = await operator_token(sessionmaker, "viewer")
    r = await oapi.get("/internal/stats", token=token)
    assert r.status_code == 200
    assert await r.get_json() == {
        "data": {
            "outbox": {"unpublished": 0, "parked": 0, "oldest_age_seconds": None},
            "jobs": {"backfill": {}, "ingest": {}, "operation": {}},
            "backfill_backlog": {
                "pending_count": 0,
                "pending_age_p95_seconds": None,
                "oldest_pending_age_seconds": None,
                "degraded": False,
                "alerting": False,
                "sustained_pending_count": 0,
            },
        }
    }

    user_id = uuid.uuid4()
    async with sessionmaker() as s, s.begin():
        me = await ensure_user(s, user_id)
        other = await ensure_user(s, uuid.uuid4())
        await s.execute(
            insert(BackfillJob).values(
                default_library_id=me.default_library_id,
                source_library_id=other.default_library_id,
                user_id=user_id,
            )
        )
        await outbox.enqueue(
            s,
            "t.backfill",
            str(me.default_library_id),
            BackfillRequested(
                default_library_id=me.default_library_id,
                source_library_id=other.default_library_id,
                user_id=user_id,
            ),
        )

    r = await oapi.get("/internal/stats", token=token)
    data = (await r.get_json())["data"]
    assert data["outbox"]["unpublished"] == 1
    assert data["outbox"]["oldest_age_seconds"] >= 0
    assert data["jobs"] == {"backfill": {"pending": 1}, "ingest": {}, "operation": {}}

    async with sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(OperatorAction)) == 0
        last_used = await s.scalar(
            select(func.count())
            .select_from(OperatorKey)
            .where(OperatorKey.last_used_at.is_not(None))
        )
    assert last_used == 1
