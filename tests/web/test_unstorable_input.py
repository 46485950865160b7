"""Strings PostgreSQL cannot store (NUL, unpaired surrogates) are a 400, never a 500
(found by schemathesis: a library name with NUL failed in the INSERT; a NUL in the
`error_code` filter failed in the SELECT)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.operators import operator_token
from tests.support.webapp import Api, make_token

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
    key = await operator_token(sessionmaker, "viewer")
    for path in ("/internal/backfill-jobs", "/internal/ingest-jobs"):
        for value in ("E_X%00", "%ED%A0%80", "e_lowercase"):
            r = await api.get(f"{path}?error_code={value}", token=key)
            assert r.status_code == 400, (path, value, await r.get_data())
            assert (await r.get_json())["error"]["code"] == "E_INVALID_REQUEST"
        r = await api.get(f"{path}?error_code=E_FETCH_FAILED", token=key)
        assert r.status_code == 200
