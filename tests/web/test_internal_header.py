"""X-Nexus-Internal: required everywhere but ops routes, checked before the bearer token."""

from __future__ import annotations

import pytest
from quart import Blueprint

from tests.conftest import TEST_INTERNAL_SECRET
from tests.support.webapp import Api, AppFactory, make_token
from web.auth import internal_exempt
from web.envelope import Data
from web.state import nexus_state


async def test_missing_header_is_403_before_auth(api: Api) -> None:
    r = await api.get("/me", internal=None)  # no token either: still 403, not 401
    assert r.status_code == 403
    assert (await r.get_json())["error"]["code"] == "E_INTERNAL_ONLY"


@pytest.mark.parametrize(
    "wrong", ["", "nope", TEST_INTERNAL_SECRET + "x", TEST_INTERNAL_SECRET[:-1]]
)
async def test_wrong_header_is_403(api: Api, wrong: str) -> None:
    r = await api.get("/me", internal=wrong, token=make_token())
    assert r.status_code == 403
    assert (await r.get_json())["error"]["code"] == "E_INTERNAL_ONLY"


async def test_right_header_reaches_auth(api: Api) -> None:
    r = await api.get("/me")
    assert r.status_code == 401
    assert (await r.get_json())["error"]["code"] == "E_UNAUTHENTICATED"


async def test_internal_routes_need_the_header(api: Api) -> None:
    r = await api.get("/internal/stats", internal=None)
    assert r.status_code == 403
    assert (await r.get_json())["error"]["code"] == "E_INTERNAL_ONLY"


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/openapi.json", "/docs"])
async def test_ops_routes_are_exempt(api: Api, path: str) -> None:
    r = await api.get(path, internal=None)
    assert r.status_code == 200


async def test_no_secret_configured_means_no_check(build_app: AppFactory, settings: object) -> None:
    app = build_app(settings=settings.model_copy(update={"internal_secret": None}))  # type: ignore[attr-defined]
    async with app.test_app():
        r = await Api(app.test_client()).get("/me", internal=None)
        assert r.status_code == 401


async def test_exemptions_are_extensible(build_app: AppFactory) -> None:
    bp = Blueprint("presigned", __name__)

    @bp.put("/_test/upload")
    @internal_exempt
    async def upload() -> Data[str]:
        return Data(data="decorated")

    @bp.get("/_test/download")
    async def download() -> Data[str]:
        return Data(data="by name")

    app = build_app()
    app.register_blueprint(bp)
    nexus_state(app).internal_exempt_endpoints.add("presigned.download")
    async with app.test_app():
        api = Api(app.test_client())
        assert (await api.request("PUT", "/_test/upload", internal=None)).status_code == 200
        assert (await api.get("/_test/download", internal=None)).status_code == 200
