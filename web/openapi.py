"""The OpenAPI document: every status an operation can answer, derived from the error model.

A route declares only what its own logic raises, by code: `@raises("E_LIBRARY_NOT_FOUND",
...)` (required on every documented route; `tests/web/test_openapi.py` fails otherwise).
Everything else is derived from what the route is built of:

- its guard: `@user_required` adds 401 E_UNAUTHENTICATED and 503 E_AUTH_UNAVAILABLE,
  `@operator_required` 401 E_UNAUTHENTICATED and 403 E_FORBIDDEN, `@rate_limited` 429
  E_RATE_LIMITED (they call `guard()`, which also sets the security requirement);
- the internal-header hook: 403 E_INTERNAL_ONLY unless the route is `internal_exempt`;
- `<uuid:...>` path parameters, a validated body or query string: 400 E_INVALID_REQUEST;
  a body: 413 (the framework's code for an oversized body, `web.errors.framework_code`);
  a `cursor` query parameter: 400 E_INVALID_CURSOR;
- `@idempotent`: the `Idempotency-Key` header, 400 E_INVALID_REQUEST and 409
  E_IDEMPOTENCY_KEY_REUSED;
- every route: 500 E_INTERNAL and 503 E_DEPENDENCY_UNAVAILABLE.

A code's status is only ever `web.statuses.status_for(code)`. Every error status answers
the one envelope (`components.schemas.ErrorBody`) and names its codes in
`x-nexus-error-codes` and in its description. Operation ids are the view names (stable,
unique); tags are per resource (the blueprint's tag); every operation documents the
`X-Request-ID` / `X-Correlation-ID` request and response headers.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from quart import Quart
from quart_schema import OpenAPIProvider, security_scheme
from quart_schema.openapi import QUART_SCHEMA_OPERATION_ID_ATTRIBUTE
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)
from werkzeug.routing.rules import Rule

from web.converters import IdConverter, UUIDConverter
from web.envelope import ErrorBody
from web.errors import framework_code
from web.state import nexus_state
from web.statuses import HTTP_STATUS, status_for

F = TypeVar("F", bound=Callable[..., Any])

RAISES_ATTR = "_nexus_raises"
GUARD_CODES_ATTR = "_nexus_guard_codes"
IDEMPOTENT_ATTR = "_nexus_idempotent"
INTERNAL_EXEMPT_ATTR = "_nexus_internal_exempt"
_RESPONSES_ATTR = "_nexus_responses"
_BODY_ATTR = "_nexus_request_body"
_LINKS_ATTR = "_nexus_links"
_TOKEN_ATTR = "_nexus_presigned"

# Security requirements (names of the schemes declared in `SECURITY_SCHEMES`).
Security = list[dict[str, list[str]]]
USER: Security = [{"internal": [], "userJwt": []}]
OPERATOR: Security = [{"internal": [], "operatorKey": []}]
PRESIGNED: Security = [{"presignedToken": []}]

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "internal": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Nexus-Internal",
        "description": "The BFF's shared secret (NEXUS_INTERNAL_SECRET); 403 "
        "E_INTERNAL_ONLY without it.",
    },
    "userJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The end user's JWT (`sub` = user id), forwarded by the BFF.",
    },
    "operatorKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "operator key",
        "description": "An operator key (`nexus ops keys create`); viewer, operator or admin.",
    },
    "presignedToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The token of a pre-signed upload/download URL (no other credential).",
    },
}

_TOKEN_PARAMETER = {
    "name": "token",
    "in": "query",
    "required": True,
    "description": "The token of the pre-signed URL (part of `upload_url` / `url`).",
    "schema": {"type": "string"},
}
# Our path converters: a segment they cannot parse is 400 E_INVALID_REQUEST (not a 404).
_PATH_SCHEMAS: dict[type, dict[str, Any]] = {
    UUIDConverter: {"type": "string", "format": "uuid"},
    IdConverter: {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
_ALWAYS = ("E_INTERNAL", "E_DEPENDENCY_UNAVAILABLE")
_ID_HEADER_SCHEMA = {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9._-]+$"}
_ID_HEADERS = {
    "X-Request-ID": "Kept when it is at most 128 characters of [A-Za-z0-9._-], else a fresh "
    "UUID; echoed on the response and in error bodies.",
    "X-Correlation-ID": "Follows the same rule; defaults to the request id.",
}


# ------------------------------------------------------------------ declarations


def _codes_of(func: Any, attr: str) -> frozenset[str]:
    return frozenset(getattr(func, attr, frozenset()))


def _check(codes: Iterable[str]) -> frozenset[str]:
    unknown = sorted(c for c in codes if c not in HTTP_STATUS)
    if unknown:
        raise ValueError(f"codes without an HTTP status (web/statuses.py): {unknown}")
    return frozenset(codes)


def raises(*codes: str) -> Callable[[F], F]:
    """Declare the codes the view's own logic can answer (guards, validation and the
    app-wide hooks add theirs). Every documented route carries this, even empty."""
    declared = _check(codes)

    def decorate(func: F) -> F:
        setattr(func, RAISES_ATTR, _codes_of(func, RAISES_ATTR) | declared)
        return func

    return decorate


def guard(func: F, codes: Iterable[str], security: Security | None) -> F:
    """For guard decorators: the codes the guard answers and the credentials it needs."""
    setattr(func, GUARD_CODES_ATTR, _codes_of(func, GUARD_CODES_ATTR) | _check(codes))
    if security is not None:
        security_scheme(security)(func)
    return func


def idempotent(func: F) -> F:
    """The view runs in `idempotent_unit_of_work`: documents `Idempotency-Key`."""
    setattr(func, IDEMPOTENT_ATTR, True)
    return func


def presigned(func: F) -> F:
    """A pre-signed URL's route: the `token` query parameter is its only credential."""
    security_scheme(PRESIGNED)(func)
    setattr(func, _TOKEN_ATTR, True)
    return func


BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def responds(
    status: int, description: str, content: Mapping[str, dict[str, Any]] | None = None
) -> Callable[[F], F]:
    """Document a success that is not a validated JSON model: a 204, or `content` (media
    type → schema) such as a stream or a file."""
    response: dict[str, Any] = {"description": description}
    if content:
        response["content"] = {t: {"schema": dict(schema)} for t, schema in content.items()}

    def decorate(func: F) -> F:
        extra = dict(getattr(func, _RESPONSES_ATTR, {}))
        extra[status] = response
        setattr(func, _RESPONSES_ATTR, extra)
        return func

    return decorate


def binary_body(description: str, content_types: Iterable[str]) -> Callable[[F], F]:
    """Document a raw (non-JSON) request body."""
    body = {
        "required": True,
        "description": description,
        "content": {t: {"schema": dict(BINARY)} for t in content_types},
    }

    def decorate(func: F) -> F:
        setattr(func, _BODY_ATTR, body)
        return func

    return decorate


def links(status: int, **targets: Mapping[str, str]) -> Callable[[F], F]:
    """OpenAPI links from this operation's `status` answer to other operations (by id):
    `@links(201, get_library={"library_id": "$response.body#/data/id"})`. Clients and
    stateful testers follow them."""

    def decorate(func: F) -> F:
        table = {k: dict(v) for k, v in getattr(func, _LINKS_ATTR, {}).items()}
        for op_id, parameters in targets.items():
            table.setdefault(status, {})[op_id] = {
                "operationId": op_id,
                "parameters": dict(parameters),
            }
        setattr(func, _LINKS_ATTR, table)
        return func

    return decorate


# ------------------------------------------------------------------ derivation


def is_exempt(func: Any, endpoint: str, exempt_endpoints: Iterable[str]) -> bool:
    return endpoint in set(exempt_endpoints) or bool(getattr(func, INTERNAL_EXEMPT_ATTR, False))


def error_codes(rule: Rule, func: Any, *, exempt: bool) -> frozenset[str]:
    """Every code the operation can answer: declared, guarded and derived."""
    codes = set(_ALWAYS) | _codes_of(func, RAISES_ATTR) | _codes_of(func, GUARD_CODES_ATTR)
    if not exempt:
        codes.add("E_INTERNAL_ONLY")
    if any(type(c) in _PATH_SCHEMAS for c in rule._converters.values()):
        codes.add("E_INVALID_REQUEST")
    query = getattr(func, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None)
    if query is not None:
        codes.add("E_INVALID_REQUEST")
        if "cursor" in getattr(query, "model_fields", {}):
            codes.add("E_INVALID_CURSOR")
    if getattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, None) is not None:
        codes.update(("E_INVALID_REQUEST", framework_code(413)))
    if getattr(func, IDEMPOTENT_ATTR, False):
        codes.update(("E_INVALID_REQUEST", "E_IDEMPOTENCY_KEY_REUSED"))
    return frozenset(codes)


def by_status(codes: Iterable[str]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for code in sorted(codes):
        grouped.setdefault(status_for(code), []).append(code)
    return dict(sorted(grouped.items()))


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


def _id_parameters(idempotent_route: bool) -> list[dict[str, Any]]:
    params = [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": text,
            "schema": dict(_ID_HEADER_SCHEMA),
        }
        for name, text in _ID_HEADERS.items()
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
        if type(converter) in _PATH_SCHEMAS:
            parameter["schema"] = dict(_PATH_SCHEMAS[type(converter)])
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
        if (body := getattr(func, _BODY_ATTR, None)) is not None:
            op["requestBody"] = copy.deepcopy(body)
        if "requestBody" in op:
            op["requestBody"]["required"] = True
        op["parameters"] = op.get("parameters", []) + _id_parameters(
            bool(getattr(func, IDEMPOTENT_ATTR, False))
        )
        if getattr(func, _TOKEN_ATTR, False):
            op["parameters"].append(_TOKEN_PARAMETER)
        responses: dict[int, Any] = dict(op.get("responses", {}))
        responses.update(copy.deepcopy(getattr(func, _RESPONSES_ATTR, {})))
        for status, codes in by_status(error_codes(rule, func, exempt=exempt)).items():
            responses[status] = _error_response(status, codes)
        for status, table in getattr(func, _LINKS_ATTR, {}).items():
            if status in responses:
                responses[status]["links"] = copy.deepcopy(table)
        for status, response in responses.items():
            headers = response.setdefault("headers", {})
            for name in _ID_HEADERS:
                headers[name] = {**_header(_ID_HEADERS[name]), "required": True}
            if getattr(func, IDEMPOTENT_ATTR, False) and status < 300:
                headers["Idempotent-Replayed"] = _header(
                    "`true` when this answer is the replay of an earlier request."
                )
            response.setdefault("description", "")
        op["responses"] = dict(sorted(responses.items()))
        _attach_examples(op)
        return op
