"""HS256 user tokens (local/test): every required claim, leeway, and the sub rules."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from tests.support.webapp import Api, make_token


async def _code(api: Api, token: str) -> tuple[int, str | None]:
    r = await api.get("/me", token=token)
    payload = await r.get_json()
    return r.status_code, payload.get("error", {}).get("code")


async def test_valid_token(api: Api) -> None:
    sub = uuid.uuid4()
    r = await api.get("/me", token=make_token(sub))
    assert r.status_code == 200
    assert (await r.get_json())["data"]["user_id"] == str(sub)


async def test_uppercase_uuid_sub_is_the_same_user(api: Api) -> None:
    sub = uuid.uuid4()
    a = await (await api.get("/me", token=make_token(str(sub).upper()))).get_json()
    b = await (await api.get("/me", token=make_token(sub))).get_json()
    assert a == b


async def test_expiry_within_leeway_is_accepted(api: Api) -> None:
    assert (await _code(api, make_token(exp=int(time.time()) - 30)))[0] == 200


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(make_token(exp=int(time.time()) - 120), id="expired"),
        pytest.param(make_token(iss="someone-else"), id="wrong-iss"),
        pytest.param(make_token(aud="other-service"), id="wrong-aud"),
        pytest.param(make_token(drop=("aud",)), id="missing-aud"),
        pytest.param(make_token(secret="x" * 48), id="bad-signature"),
        pytest.param(make_token(drop=("sub",)), id="missing-sub"),
        pytest.param(make_token("not-a-uuid"), id="non-uuid-sub"),
        pytest.param(make_token(drop=("exp",)), id="missing-exp"),
        pytest.param(make_token(drop=("iss",)), id="missing-iss"),
        pytest.param(make_token(nbf=int(time.time()) + 600), id="not-yet-valid"),
        pytest.param("not.a.jwt", id="garbage"),
        pytest.param(
            jwt.encode(
                {
                    "sub": str(uuid.uuid4()),
                    "iss": "nexus",
                    "aud": "authenticated",
                    "exp": int(time.time()) + 60,
                },
                key=None,
                algorithm="none",
            ),
            id="alg-none",
        ),
    ],
)
async def test_bad_tokens_are_401(api: Api, token: str) -> None:
    assert await _code(api, token) == (401, "E_UNAUTHENTICATED")


async def test_audience_list_accepts_any_configured(api: Api) -> None:
    token = make_token(aud=["other", "authenticated"])
    assert (await _code(api, token))[0] == 200


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"])
async def test_missing_or_malformed_authorization_is_401(api: Api, header: str) -> None:
    r = await api.get("/me", headers={"Authorization": header} if header else None)
    assert r.status_code == 401
    assert (await r.get_json())["error"]["code"] == "E_UNAUTHENTICATED"


async def test_lower_case_bearer_scheme_is_accepted(api: Api) -> None:
    r = await api.get("/me", headers={"Authorization": f"bearer {make_token()}"})
    assert r.status_code == 200
