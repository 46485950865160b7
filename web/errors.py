"""Every failure becomes the one error envelope; nothing internal ever reaches the body."""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import ValidationError as PydanticValidationError
from quart import Quart, Response, request
from quart_schema import RequestSchemaValidationError, ResponseSchemaValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from nexus.db.errors import translate
from nexus.errors import NexusError
from web.envelope import error_response
from web.statuses import status_for

log = structlog.get_logger("nexus.web")

# HTTP errors raised by the framework (routing, body parsing) -> our codes.
_CODE_BY_STATUS: dict[int, str] = {
    400: "E_INVALID_REQUEST",
    401: "E_UNAUTHENTICATED",
    403: "E_FORBIDDEN",
    404: "E_NOT_FOUND",
    405: "E_METHOD_NOT_ALLOWED",
    413: "E_PAYLOAD_TOO_LARGE",
    429: "E_RATE_LIMITED",
    503: "E_DEPENDENCY_UNAVAILABLE",
}

_MESSAGES: dict[str, str] = {
    "E_INVALID_REQUEST": "the request is invalid",
    "E_NOT_FOUND": "no such resource",
    "E_METHOD_NOT_ALLOWED": "method not allowed for this resource",
    "E_FILE_TOO_LARGE": "the request body is too large",
    "E_PAYLOAD_TOO_LARGE": "the request body is larger than 1 MiB",
}
# The one route whose body is a file (its 413 is about the file, SPEC §8).
_FILE_BODY_ENDPOINTS = frozenset({"uploads.put_upload"})


def framework_code(status: int) -> str:
    """The code answered when the framework itself fails a request with `status`."""
    return _CODE_BY_STATUS.get(status, "E_INVALID_REQUEST" if status < 500 else "E_INTERNAL")


def nexus_error_response(exc: NexusError) -> Response:
    headers = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return error_response(
        exc.code, exc.message, status_for(exc.code), details=exc.details, headers=headers
    )


def validation_details(exc: BaseException | None) -> list[dict[str, Any]] | None:
    """Field errors a client can act on: location, message and type; never the input."""
    if not isinstance(exc, PydanticValidationError):
        return None
    return [
        {"loc": [str(part) for part in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


async def _on_nexus_error(exc: NexusError) -> Response:
    if status_for(exc.code) >= 500:
        log.warning("request failed", code=exc.code, error=exc.message)
    return nexus_error_response(exc)


async def _on_schema_error(exc: RequestSchemaValidationError) -> Response:
    details = validation_details(exc.validation_error)
    message = "the request is invalid" if details else "the request body or query is malformed"
    return error_response("E_INVALID_REQUEST", message, 400, details=details)


async def _on_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = framework_code(status)
    if status == 413 and request.endpoint in _FILE_BODY_ENDPOINTS:
        code = "E_FILE_TOO_LARGE"
    headers: dict[str, str] = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    message = _MESSAGES.get(code, "the request could not be processed")
    if status >= 500:
        log.error("http error", status=status, path=request.path)
    return error_response(code, message, status, headers=headers)


async def _on_undecodable_body(exc: UnicodeDecodeError) -> Response:
    # Only request bodies are decoded from bytes we do not control.
    return error_response("E_INVALID_REQUEST", "the request body is not valid UTF-8", 400)


async def _on_unhandled(exc: Exception) -> Response:
    domain = translate(exc)
    if domain is not None:
        log.warning("database failure", code=domain.code, error=type(exc).__name__)
        return nexus_error_response(domain)
    if isinstance(exc, ResponseSchemaValidationError):
        log.error("response failed its schema", exc_info=exc, path=request.path)
    else:
        log.error("unhandled exception", exc_info=exc, path=request.path)
    return error_response("E_INTERNAL", "internal error", 500)


def register_error_handlers(app: Quart) -> None:
    app.register_error_handler(NexusError, _on_nexus_error)
    app.register_error_handler(RequestSchemaValidationError, _on_schema_error)
    app.register_error_handler(HTTPException, _on_http_error)
    app.register_error_handler(UnicodeDecodeError, _on_undecodable_body)
    app.register_error_handler(Exception, _on_unhandled)
