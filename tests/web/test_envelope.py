"""The single envelope for every outcome: success, validation, routing, crashes, outages."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from pydantic import BaseModel, Field
from quart import Blueprint, Quart
from quart_schema import validate_querystring, validate_request
from sqlalchemy import text

from nexus.errors import NexusError
from tests.conftest import make_settings
from tests.support.services import free_port
from tests.support.webapp import Api, AppFactory, FakePublisher, make_token, serving
from web.app import create_app
from web.envelope import Data, no_content
from web.uow import unit_of_work

SECRET_TEXT = "password=hunter2 SELECT * FROM operator_keys"


class ThingIn(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    count: int = 1


class ListQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=200)


def _test_blueprint() -> Blueprint:
    bp = Blueprint("testing", __name__, url_prefix="/_test")

    @bp.post("/things")
    @validate_request(ThingIn)
    async def create_thing(data: ThingIn) -> tuple[Data[ThingIn], int]:
        return Data(data=data), 201

    @bp.get("/things")
    @validate_querystring(ListQuery)
    async def list_things(query_args: ListQuery) -> Data[dict[str, int]]:
        return Data(data={"limit": query_args.limit})

    @bp.get("/things/<uuid:thing_id>")
    async def get_thing(thing_id: uuid.UUID) -> Data[dict[str, str]]:
        return Data(data={"id": str(thing_id)})

    @bp.delete("/things/<uuid:thing_id>")
    async def delete_thing(thing_id: uuid.UUID) -> object:
        return no_content()

    @bp.get("/crash")
    async def crash() -> object:
        raise RuntimeError(SECRET_TEXT)

    @bp.get("/bad-sql")
    async def bad_sql() -> object:
        async with unit_of_work() as uow:
            await uow.session.execute(text("SELECT * FROM no_such_table_with_secret_name"))
        return Data(data=None)

    @bp.get("/rate-limited")
    async def rate_limited() -> object:
        raise NexusError("E_RATE_LIMITED", "slow down", retry_after=7)

    return bp


@pytest.fixture
async def tapi(build_app: AppFactory) -> object:
    async with serving(build_app(), _test_blueprint()) as api:
        yield api


def _assert_error(payload: dict, code: str) -> dict:
    assert set(payload) == {"error"}
    err = payload["error"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["request_id"], str) and err["request_id"]
    assert set(err) <= {"code", "message", "request_id", "details"}
    return err


async def test_health_is_a_data_envelope(api: Api) -> None:
    r = await api.get("/health", internal=None)
    assert r.status_code == 200
    assert await r.get_json() == {"data": {"status": "ok"}}


async def test_success_envelope_and_201(tapi: Api) -> None:
    r = await tapi.post("/_test/things", json={"name": "a"})
    assert r.status_code == 201
    assert await r.get_json() == {"data": {"name": "a", "count": 1}}


async def test_204_has_no_body(tapi: Api) -> None:
    r = await tapi.request("DELETE", f"/_test/things/{uuid.uuid4()}")
    assert r.status_code == 204
    assert await r.get_data() == b""


async def test_unknown_route_is_404(api: Api) -> None:
    r = await api.get("/no/such/route", headers={"X-Request-ID": "req-404"})
    assert r.status_code == 404
    err = _assert_error(await r.get_json(), "E_NOT_FOUND")
    assert err["request_id"] == "req-404"


async def test_wrong_method_is_405_with_allow(api: Api) -> None:
    r = await api.post("/me")
    assert r.status_code == 405
    _assert_error(await r.get_json(), "E_METHOD_NOT_ALLOWED")
    assert "GET" in r.headers["Allow"]


async def test_malformed_json_is_400(tapi: Api) -> None:
    r = await tapi.post(
        "/_test/things", data=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    _assert_error(await r.get_json(), "E_INVALID_REQUEST")


async def test_non_json_body_is_400(tapi: Api) -> None:
    r = await tapi.post("/_test/things", data=b"name=a", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400
    _assert_error(await r.get_json(), "E_INVALID_REQUEST")


async def test_body_validation_is_400_with_field_details(tapi: Api) -> None:
    r = await tapi.post("/_test/things", json={"name": "", "count": "many"})
    assert r.status_code == 400
    err = _assert_error(await r.get_json(), "E_INVALID_REQUEST")
    locs = {tuple(d["loc"]) for d in err["details"]}
    assert locs == {("name",), ("count",)}
    for detail in err["details"]:
        assert set(detail) == {"loc", "msg", "type"}  # never the input or pydantic URLs
    assert "many" not in str(err)


async def test_query_validation_is_400_never_422(tapi: Api) -> None:
    ok = await tapi.get("/_test/things", query_string={"limit": "200"})
    assert ok.status_code == 200
    for bad in ("0", "201", "x"):
        r = await tapi.get("/_test/things", query_string={"limit": bad})
        assert r.status_code == 400
        err = _assert_error(await r.get_json(), "E_INVALID_REQUEST")
        assert err["details"][0]["loc"] == ["limit"]


async def test_non_uuid_path_id_is_400_not_404(tapi: Api) -> None:
    thing = uuid.uuid4()
    ok = await tapi.get(f"/_test/things/{str(thing).upper()}")
    assert ok.status_code == 200
    assert (await ok.get_json())["data"]["id"] == str(thing)
    r = await tapi.get("/_test/things/not-a-uuid")
    assert r.status_code == 400
    err = _assert_error(await r.get_json(), "E_INVALID_REQUEST")
    assert err["details"] == [{"loc": ["path", "thing_id"], "msg": "must be a UUID"}]


async def test_non_uuid_path_id_without_internal_header_is_still_403(tapi: Api) -> None:
    r = await tapi.get("/_test/things/not-a-uuid", internal=None)
    assert r.status_code == 403
    _assert_error(await r.get_json(), "E_INTERNAL_ONLY")


async def test_unhandled_exception_is_500_and_leaks_nothing(
    tapi: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    r = await tapi.get("/_test/crash", headers={"X-Request-ID": "crash-1"})
    assert r.status_code == 500
    raw = (await r.get_data()).decode()
    err = _assert_error(await r.get_json(), "E_INTERNAL")
    assert err["request_id"] == "crash-1"
    assert "details" not in err
    for leak in ("hunter2", "SELECT", "RuntimeError", "Traceback", "crash"):
        assert leak not in raw.replace('"crash-1"', "")
    logged = [rec for rec in caplog.records if isinstance(rec.msg, dict)]
    assert any(rec.msg.get("request_id") == "crash-1" and rec.msg.get("exc_info") for rec in logged)


async def test_database_error_is_500_and_leaks_no_sql(tapi: Api) -> None:
    r = await tapi.get("/_test/bad-sql")
    assert r.status_code == 500
    raw = (await r.get_data()).decode()
    _assert_error(await r.get_json(), "E_INTERNAL")
    assert "no_such_table" not in raw and "SELECT" not in raw


async def test_body_too_large_is_413(build_app: AppFactory) -> None:
    app = build_app()
    app.register_blueprint(_test_blueprint())
    app.config["MAX_CONTENT_LENGTH"] = 64
    async with app.test_app():
        r = await Api(app.test_client()).post("/_test/things", json={"name": "x" * 200})
    assert r.status_code == 413
    _assert_error(await r.get_json(), "E_PAYLOAD_TOO_LARGE")


async def test_nexus_error_status_and_headers(tapi: Api) -> None:
    r = await tapi.get("/_test/rate-limited")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"
    err = _assert_error(await r.get_json(), "E_RATE_LIMITED")
    assert err["message"] == "slow down"


@pytest.fixture
def down_db_settings() -> object:
    return make_settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x",
        kafka_bootstrap="127.0.0.1:1",
    )


async def test_database_down_is_503_on_me(down_db_settings: object) -> None:
    app = create_app(down_db_settings, publisher=FakePublisher())  # type: ignore[arg-type]
    async with app.test_app():
        api = Api(app.test_client())
        r = await api.get("/me", token=make_token())
        assert r.status_code == 503
        _assert_error(await r.get_json(), "E_DEPENDENCY_UNAVAILABLE")
        assert "127.0.0.1" not in (await r.get_data()).decode()


async def _unready(app: Quart) -> Any:
    """/ready of `app` answering 503 E_DEPENDENCY_UNAVAILABLE: its details."""
    async with app.test_app():
        r = await Api(app.test_client()).get("/ready", internal=None)
        assert r.status_code == 503
        return _assert_error(await r.get_json(), "E_DEPENDENCY_UNAVAILABLE")["details"]


async def test_database_down_is_503_on_ready(down_db_settings: object) -> None:
    app = create_app(down_db_settings, publisher=FakePublisher())  # type: ignore[arg-type]
    assert await _unready(app) == {"database": "unavailable", "broker": "ok"}


async def test_ready_ok(api: Api) -> None:
    r = await api.get("/ready", internal=None)
    assert r.status_code == 200
    assert await r.get_json() == {"data": {"database": "ok", "broker": "ok"}}


async def test_broker_down_is_503_on_ready(build_app: AppFactory) -> None:
    app = build_app(publisher=FakePublisher(up=False))
    assert await _unready(app) == {"database": "ok", "broker": "unavailable"}


async def test_app_owns_and_closes_what_it_creates(down_db_settings: object) -> None:
    app: Quart = create_app(down_db_settings)  # type: ignore[arg-type]
    async with app.test_app():
        r = await Api(app.test_client()).get("/health")
        assert r.status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,  # nesting deep enough to exhaust the parser's recursion
        b'{"name": "\xff\xfe"}',  # not UTF-8
        b'{"name": NaN}',  # not JSON
        b'{"name": Infinity}',
    ],
    ids=["deep-nesting", "bad-utf8", "nan", "infinity"],
)
async def test_pathological_bodies_are_400_not_500(tapi: Api, payload: bytes) -> None:
    r = await tapi.post("/_test/things", data=payload, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    _assert_error(await r.get_json(), "E_INVALID_REQUEST")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:5432/nexus_no_such_database_x",
        "postgresql+asyncpg://no_such_role_x@127.0.0.1:5432/postgres",
    ],
    ids=["unknown-database", "unknown-role"],
)
async def test_unusable_database_is_503_not_500(url: str) -> None:
    settings = make_settings(database_url=url, kafka_bootstrap="127.0.0.1:1")
    app = create_app(settings, publisher=FakePublisher())
    async with app.test_app():
        r = await Api(app.test_client()).get("/me", token=make_token())
        assert r.status_code == 503
        _assert_error(await r.get_json(), "E_DEPENDENCY_UNAVAILABLE")


async def test_me_answers_the_json_providers_bytes_for_its_model(api: Api) -> None:
    """`GET /me` is serialised by orjson: the same bytes the app's JSON provider wrote for
    the validated model (compact, keys sorted, a final newline)."""
    r = await api.get("/me", token=make_token())
    assert r.status_code == 200
    body = await r.get_data()
    data = (await r.get_json())["data"]
    model = Data[dict[str, uuid.UUID]](data={k: uuid.UUID(v) for k, v in data.items()})
    assert set(data) == {"user_id", "default_library_id"}
    provider = api.client.app.json  # as its `response()` wrote it: compact, keys sorted
    expected = provider.dumps(model.model_dump(mode="json"), separators=(",", ":")) + "\n"
    assert body == expected.encode()
    assert r.headers["Content-Type"] == "application/json"
