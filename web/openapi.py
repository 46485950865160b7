"""The OpenAPI document: every status an operation can answer, derived from the error model.

A route declares only what its own logic raises, by code: `@raises("E_LIBRARY_NOT_FOUND",
...)` (required on every documented route; `tests/web/test_openapi.py` fails otherwise).
Everything else is derived from what the route is built of:

- its guard: `@user_required` adds 401 E_UNAUTHENTICATED and 503 E_AUTH_UNAVAILABLE,
  `@operator_required` 401 E_UNAUTHENTICATED and 403 E_FORBIDDEN, `@rate_limited` 429
  E_RATE_LIMITED (they call `guard()`, which also sets the security requirement);
- the internal-header hook: 403 E_INTERNAL_ONLY unless the route is `internal_exempt`;
- `<uuid:...>` / `<id:...>` path parameters, a validated body or query string: 400
  E_INVALID_REQUEST; a body: 413 (the framework's code for an oversized body,
  `web.errors.framework_code`); a `cursor` query parameter: 400 E_INVALID_CURSOR;
- `@idempotent`: the `Idempotency-Key` header, 400 E_INVALID_REQUEST and 409
  E_IDEMPOTENCY_KEY_REUSED;
- every route: 500 E_INTERNAL and 503 E_DEPENDENCY_UNAVAILABLE.

`web.openapi_doc` renders the document from these declarations. A code's status is only
ever `web.statuses.status_for(code)`. Every error status answers the one envelope
(`components.schemas.ErrorBody`) and names its codes in `x-nexus-error-codes` and in its
description. Operation ids are the view names (stable,
unique); tags are per resource (the blueprint's tag); every operation documents the
`X-Request-ID` / `X-Correlation-ID` request and response headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from quart_schema import security_scheme
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)
from werkzeug.routing.rules import Rule

from web.converters import IdConverter, UUIDConverter
from web.errors import framework_code
from web.statuses import HTTP_STATUS, status_for

F = TypeVar("F", bound=Callable[..., Any])

RAISES_ATTR = "_nexus_raises"
GUARD_CODES_ATTR = "_nexus_guard_codes"
IDEMPOTENT_ATTR = "_nexus_idempotent"
INTERNAL_EXEMPT_ATTR = "_nexus_internal_exempt"
RESPONSES_ATTR = "_nexus_responses"
HEADERS_ATTR = "_nexus_header_params"
BODY_ATTR = "_nexus_request_body"
LINKS_ATTR = "_nexus_links"
TOKEN_ATTR = "_nexus_presigned"

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

TOKEN_PARAMETER = {
    "name": "token",
    "in": "query",
    "required": True,
    "description": "The token of the pre-signed URL (part of `upload_url` / `url`).",
    "schema": {"type": "string"},
}
# Our path converters: a segment they cannot parse is 400 E_INVALID_REQUEST (not a 404).
PATH_SCHEMAS: dict[type, dict[str, Any]] = {
    UUIDConverter: {"type": "string", "format": "uuid"},
    IdConverter: {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
_ALWAYS = ("E_INTERNAL", "E_DEPENDENCY_UNAVAILABLE")
ID_HEADER_SCHEMA = {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9._-]+$"}
ID_HEADERS = {
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
    setattr(func, TOKEN_ATTR, True)
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
        extra = dict(getattr(func, RESPONSES_ATTR, {}))
        extra[status] = response
        setattr(func, RESPONSES_ATTR, extra)
        return func

    return decorate


def header_param(name: str, description: str) -> Callable[[F], F]:
    """Document an optional request header the view reads (a string)."""
    parameter = {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }

    def decorate(func: F) -> F:
        setattr(func, HEADERS_ATTR, [*getattr(func, HEADERS_ATTR, []), parameter])
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
        setattr(func, BODY_ATTR, body)
        return func

    return decorate


def links(status: int, **targets: Mapping[str, str]) -> Callable[[F], F]:
    """OpenAPI links from this operation's `status` answer to other operations (by id):
    `@links(201, get_library={"library_id": "$response.body#/data/id"})`. Clients and
    stateful testers follow them."""

    def decorate(func: F) -> F:
        table = {k: dict(v) for k, v in getattr(func, LINKS_ATTR, {}).items()}
        for op_id, parameters in targets.items():
            table.setdefault(status, {})[op_id] = {
                "operationId": op_id,
                "parameters": dict(parameters),
            }
        setattr(func, LINKS_ATTR, table)
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
    if any(type(c) in PATH_SCHEMAS for c in rule._converters.values()):
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
