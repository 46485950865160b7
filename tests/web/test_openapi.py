"""The OpenAPI document: every route declares its codes, every status is documented with
the one error envelope and the codes of that status (web/openapi.py)."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from quart import Blueprint

from nexus.errors import CODES
from tests.support.webapp import Api, AppFactory, make_token
from web.auth import INTERNAL_HEADER, user_required
from web.envelope import Data
from web.idempotency import idempotent_unit_of_work
from web.openapi import SECURITY_SCHEMES, raises
from web.openapi_doc import recorded_examples, undeclared_routes
from web.statuses import status_for

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


async def _document(api: Api) -> dict[str, Any]:
    response = await api.get("/openapi.json", internal=None)
    assert response.status_code == 200
    return dict(await response.get_json())


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in doc["paths"].items() for m, op in item.items()]


async def test_every_route_declares_its_codes(app: Any) -> None:
    assert undeclared_routes(app) == []


async def test_a_route_without_declarations_is_reported(build_app: AppFactory) -> None:
    bp = Blueprint("late", __name__)

    @bp.get("/internal/late-addition")
    async def late() -> Data[dict[str, str]]:
        return Data(data={})

    app = build_app()
    app.register_blueprint(bp)
    assert undeclared_routes(app) == ["['GET', 'HEAD', 'OPTIONS'] /internal/late-addition"]


def test_undeclared_or_statusless_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="E_NOPE"):
        raises("E_NOPE")
    with pytest.raises(ValueError, match="E_FETCH_FAILED"):
        raises("E_FETCH_FAILED")  # stored on media only: never answered over HTTP


async def test_every_operation_is_complete(api: Api) -> None:
    doc = await _document(api)
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    assert doc["components"]["securitySchemes"]["internal"]["name"] == INTERNAL_HEADER
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids)) and len(ids) >= 38
    for method, path, op in _operations(doc):
        where = f"{method} {path}"
        assert op["tags"], where
        assert "security" in op, where
        statuses = {int(s) for s in op["responses"]}
        assert any(200 <= s < 300 for s in statuses), where
        assert {500, 503} <= statuses, where
        for status, response in op["responses"].items():
            assert {"X-Request-ID", "X-Correlation-ID"} <= set(response["headers"]), where
            if int(status) < 400:
                continue
            assert response["content"]["application/json"]["schema"] == ERROR_REF, where
            codes = response["x-nexus-error-codes"]
            assert codes and all(c in CODES and status_for(c) == int(status) for c in codes)
        for scheme in op["security"]:
            assert set(scheme) <= set(SECURITY_SCHEMES), where


async def test_statuses_and_codes_are_derived(api: Api) -> None:
    paths = (await _document(api))["paths"]

    def codes(path: str, method: str) -> dict[int, list[str]]:
        responses = paths[path][method]["responses"]
        return {int(s): r["x-nexus-error-codes"] for s, r in responses.items() if int(s) >= 400}

    assert codes("/libraries/{library_id}", "get") == {
        400: ["E_INVALID_REQUEST"],
        401: ["E_UNAUTHENTICATED"],
        403: ["E_INTERNAL_ONLY"],
        404: ["E_LIBRARY_NOT_FOUND"],
        500: ["E_INTERNAL"],
        503: ["E_AUTH_UNAVAILABLE", "E_DEPENDENCY_UNAVAILABLE"],
    }
    from_url = codes("/media/from_url", "post")
    assert from_url[400] == ["E_INVALID_REQUEST", "E_INVALID_URL"]
    assert from_url[409] == ["E_IDEMPOTENCY_KEY_REUSED"]
    assert from_url[429] == ["E_RATE_LIMITED"]
    assert 413 in from_url
    assert codes("/libraries", "get")[400] == ["E_INVALID_CURSOR", "E_INVALID_REQUEST"]
    stats = codes("/internal/stats", "get")
    assert stats[401] == ["E_UNAUTHENTICATED"]
    assert stats[403] == ["E_FORBIDDEN", "E_INTERNAL_ONLY"]
    download = paths["/media/{media_id}/download"]["get"]
    assert download["security"] == [{"presignedToken": []}]
    assert 403 not in codes("/health", "get") and paths["/health"]["get"]["security"] == []
    assert set(download["responses"]["200"]["content"]) == {
        "application/pdf",
        "application/epub+zip",
    }
    params = {p["name"]: p for p in paths["/libraries"]["post"]["parameters"]}
    assert {"Idempotency-Key", "X-Request-ID", "X-Correlation-ID"} <= set(params)
    assert "Idempotency-Key" not in {p["name"] for p in paths["/me"]["get"]["parameters"]}
    library_id = paths["/libraries/{library_id}"]["get"]["parameters"][0]
    assert library_id["schema"] == {"type": "string", "format": "uuid"}
    links = paths["/libraries"]["post"]["responses"]["201"]["links"]
    assert links["get_library"]["parameters"] == {"library_id": "$response.body#/data/id"}
    assert paths["/libraries"]["get"]["operationId"] == "list_libraries"
    assert paths["/libraries"]["get"]["tags"] == ["libraries"]


async def test_an_idempotent_view_must_be_declared(build_app: AppFactory) -> None:
    bp = Blueprint("undeclared", __name__)

    @bp.post("/undeclared")
    @raises()
    @user_required
    async def undeclared() -> Any:
        async with idempotent_unit_of_work() as work:
            return await work.respond(Data(data={}), 201)

    app = build_app()
    app.register_blueprint(bp)
    async with app.test_app():
        response = await Api(app.test_client()).post("/undeclared", token=make_token())
    assert response.status_code == 500


async def test_recorded_examples_are_documented_and_valid(api: Api) -> None:
    doc = await _document(api)
    by_id = {op["operationId"]: op for _, _, op in _operations(doc)}
    recorded = recorded_examples()
    assert {"create_library", "from_url", "create_invite", "accept_invite"} <= set(recorded)
    for operation, example in recorded.items():
        op = by_id[operation]
        targets = [(op.get("requestBody"), example.get("request"))] + [
            (op["responses"][status], body) for status, body in example["responses"].items()
        ]
        for target, body in targets:
            if body is None:
                continue
            media = target["content"]["application/json"]
            assert media["examples"]["recorded"]["value"] == body, operation
            # $refs resolve against the document's components.
            schema = {**media["schema"], "components": doc["components"]}
            errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(body)]
            assert errors == [], (operation, errors)
