"""Renders the OpenAPI document from the declarations of `web.openapi`.

`NexusOpenAPIProvider` (quart-schema's provider, installed by `create_app`) completes each
operation: the error statuses with the one envelope and their codes, the security
requirement, the request-id / Idempotency-Key / token parameters and response headers,
links, the recorded examples, and request and success bodies as named components.
`undeclared_routes(app)` lists the routes without `@raises` (kept empty by a test).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast

from quart import Quart
from quart_schema import OpenAPIProvider
from quart_schema.openapi import QUART_SCHEMA_OPERATION_ID_ATTRIBUTE
from werkzeug.routing.rules import Rule

from web.envelope import ErrorBody
from web.openapi import (
    BODY_ATTR,
    HEADERS_ATTR,
    ID_HEADER_SCHEMA,
    ID_HEADERS,
    IDEMPOTENT_ATTR,
    LINKS_ATTR,
    PATH_SCHEMAS,
    RAISES_ATTR,
    RESPONSES_ATTR,
    SECURITY_SCHEMES,
    TOKEN_ATTR,
    TOKEN_PARAMETER,
    by_status,
    error_codes,
    is_exempt,
)
from web.state import nexus_state


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


def _error_response(status: int, codes: list[str]) -> dict[str, Any]:
    headers = {}
    if status in (429, 503):
        headers["Retry-After"] = _header("Seconds after which trying again may succeed.")
    return {
        "description": "One of: " + ", ".join(codes),
        "x-nexus-error-codes": codes,
        "headers": headers,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def _complete_response(status: int, response: dict[str, Any], *, idempotent: bool) -> None:
    headers = response.setdefault("headers", {})
    for name, text in ID_HEADERS.items():
        headers[name] = {**_header(text), "required": True}
    if idempotent and status < 300:
        headers["Idempotent-Replayed"] = _header(
            "`true` when this answer is the replay of an earlier request."
        )
    if not response.get("description"):
        response["description"] = HTTPStatus(status).phrase


def _id_parameters(idempotent_route: bool) -> list[dict[str, Any]]:
    params = [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": text,
            "schema": dict(ID_HEADER_SCHEMA),
        }
        for name, text in ID_HEADERS.items()
    ]
    if idempotent_route:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Makes the create safe to retry: the same key and body "
                "replay the first answer (`Idempotent-Replayed: true`); the same key with "
                "another body is 409 E_IDEMPOTENCY_KEY_REUSED. 1-255 printable ASCII "
                "characters, kept 24 hours, per user and route.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    return params


EXAMPLES_FILE = Path(__file__).with_name("openapi_examples.json")


@functools.cache
def recorded_examples() -> dict[str, Any]:
    """Real payloads of the main BFF flow, by operation id: `{"request": body, "responses":
    {status: body}}`, recorded by tests/e2e/test_generated_client.py (which also fails when
    they no longer match what the API answers)."""
    if not EXAMPLES_FILE.exists():
        return {}
    loaded: dict[str, Any] = json.loads(EXAMPLES_FILE.read_text())
    return loaded


def _attach_examples(op: dict[str, Any]) -> None:
    recorded = recorded_examples().get(op.get("operationId", ""))
    if not recorded:
        return
    targets = [("request", op.get("requestBody"), recorded.get("request"))] + [
        (f"response {status}", op["responses"].get(int(status)), body)
        for status, body in recorded.get("responses", {}).items()
    ]
    for what, target, body in targets:
        media = (target or {}).get("content", {}).get("application/json")
        if media is not None and body is not None:
            summary = f"The {what} of the main BFF flow, as recorded by the tests"
            media["examples"] = {"recorded": {"summary": summary, "value": body}}


def _hoist_schemas(operation: dict[str, Any], components: dict[str, Any]) -> None:
    """Request and success bodies become named components (`Data[MediaOut]` →
    `DataMediaOut`), so a generated client has one type per shape rather than one per
    operation and status."""
    bodies = [*operation["responses"].values(), operation.get("requestBody", {})]
    for response in bodies:
        media = response.get("content", {}).get("application/json")
        schema = media.get("schema") if media else None
        if not schema or "$ref" in schema or "title" not in schema:
            continue
        name = re.sub(r"[^A-Za-z0-9]", "", schema["title"])
        components.setdefault(name, schema)
        media["schema"] = {"$ref": f"#/components/schemas/{name}"}


def undeclared_routes(app: Quart) -> list[str]:
    """Documented routes whose view lacks `@raises` (a test keeps this empty)."""
    provider: OpenAPIProvider = app.extensions["QUART_SCHEMA"].openapi_provider
    return sorted(
        f"{sorted(rule.methods or ())} {rule.rule}"
        for rule in provider.generate_rules()
        if not hasattr(app.view_functions[rule.endpoint], RAISES_ATTR)
    )


class NexusOpenAPIProvider(OpenAPIProvider):
    """quart-schema's provider, completed with the statuses, codes, headers and links."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        components = document["components"]
        error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components["schemas"].update(error_schema.pop("$defs", {}))
        components["schemas"]["ErrorBody"] = error_schema
        components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
        return document

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str | None:
        return str(getattr(func, QUART_SCHEMA_OPERATION_ID_ATTRIBUTE, func.__name__))

    def build_path_parameter(self, name: str, converter: Any) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if type(converter) in PATH_SCHEMAS:
            parameter["schema"] = dict(PATH_SCHEMAS[type(converter)])
        return parameter

    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        state = nexus_state(cast(Quart, self._app))
        exempt = is_exempt(func, rule.endpoint, state.internal_exempt_endpoints)
        for path_item in paths.values():
            for method, operation in list(path_item.items()):
                operation = self._complete(rule, func, operation, exempt=exempt)
                _hoist_schemas(operation, components)
                path_item[method] = operation
        return paths, components

    def _complete(
        self, rule: Rule, func: Any, operation: dict[str, Any], *, exempt: bool
    ) -> dict[str, Any]:
        op = copy.deepcopy(operation)
        if "tags" not in op:
            op["tags"] = [rule.endpoint.rsplit(".", 1)[0]]
        if "security" not in op:
            op["security"] = [] if exempt else [{"internal": []}]
        if (body := getattr(func, BODY_ATTR, None)) is not None:
            op["requestBody"] = copy.deepcopy(body)
        if "requestBody" in op:
            op["requestBody"]["required"] = True
        op["parameters"] = op.get("parameters", []) + _id_parameters(
            bool(getattr(func, IDEMPOTENT_ATTR, False))
        )
        if getattr(func, TOKEN_ATTR, False):
            op["parameters"].append(TOKEN_PARAMETER)
        op["parameters"].extend(copy.deepcopy(getattr(func, HEADERS_ATTR, [])))
        responses: dict[int, Any] = dict(op.get("responses", {}))
        responses.update(copy.deepcopy(getattr(func, RESPONSES_ATTR, {})))
        for status, codes in by_status(error_codes(rule, func, exempt=exempt)).items():
            responses[status] = _error_response(status, codes)
        for status, table in getattr(func, LINKS_ATTR, {}).items():
            if status in responses:
                responses[status]["links"] = copy.deepcopy(table)
        idempotent = bool(getattr(func, IDEMPOTENT_ATTR, False))
        for status, response in responses.items():
            _complete_response(status, response, idempotent=idempotent)
        op["responses"] = dict(sorted(responses.items()))
        _attach_examples(op)
        return op
