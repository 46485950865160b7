"""Strings PostgreSQL cannot store (NUL, unpaired surrogates) are a 400, never a 500
(found by schemathesis: a library name with NUL failed in the INSERT)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.operators.service import create_key
from tests.web.conftest import Api, make_token

BODIES = [
    b'{"name": "a\\u0000b"}',
    b'{"name": "a\\ud800b"}',  # a lone surrogate: not encodable as UTF-8
    b'{"name": "ok", "\\u0000": 1}',  # in a key
    b'{"name": ["x", {"y": "\\udfff"}]}',  # nested
]


@pytest.mark.parametrize("body", BODIES, ids=["nul", "surrogate", "key", "nested"])
async def test_unstorable_json_strings_are_400(api: Api, body: bytes) -> None:
    r = await api.post(
        "/libraries",
        token=make_token(),
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert (await r.get_json())["error"]["code"] == "E_INVALID_REQUEST"


async def test_unstorable_query_strings_are_400(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as s, s.begin():
        key = (await create_key(s, name=f"v-{uuid.uuid4().hex[:6]}", role="viewer")).token
    for query in ("error_code=a%00b", "status=failed&x%00=1"):
        r = await api.get(f"/internal/backfill-jobs?{query}", token=key)
        assert r.status_code == 400, (query, await r.get_data())
        assert (await r.get_json())["error"]["code"] == "E_INVALID_REQUEST"
    # Invalid UTF-8 is decoded with replacement characters: a filter that matches nothing.
    r = await api.get("/internal/backfill-jobs?error_code=%ED%A0%80", token=key)
    assert r.status_code == 200
