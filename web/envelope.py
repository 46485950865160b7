"""The one success and error envelope (SPEC §2), as pydantic models and helpers."""

from __future__ import annotations

import uuid
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel
from quart import Response, current_app, g

from web.request_ids import current_request_id

T = TypeVar("T")


class Data(BaseModel, Generic[T]):
    """`{"data": ...}`: every successful response with a body."""

    data: T


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str
    details: Any = None


class ErrorBody(BaseModel):
    """`{"error": {...}}`: every failure."""

    error: ErrorDetail


def request_id_for_response() -> str:
    rid = g.get("request_id") if g else None
    return str(rid or current_request_id() or "")


def error_response(
    code: str,
    message: str,
    status: int,
    *,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": request_id_for_response(),
    }
    if details is not None:
        error["details"] = details
    response = Response(
        current_app.json.dumps({"error": error}) + "\n",
        status=status,
        content_type="application/json",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _encode_other(value: Any) -> Any:
    """What orjson does not encode itself: asyncpg's UUID class (a `uuid.UUID` subclass)
    and pydantic models (a page's `page` block)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_response(body: Any, status: int = 200) -> Response:
    """`body` (dicts and lists of our own rows, or a model) serialised once, by orjson:
    the same bytes pydantic's encoder gives for the model of that shape (UUIDs, `Z`
    timestamps, field order) at a fifth of its cost. For views that build their answer
    from our own rows: the route declares the schema with `document_response` (OpenAPI)
    instead of re-validating what it built."""
    return Response(
        orjson.dumps(body, default=_encode_other, option=orjson.OPT_UTC_Z),
        status=status,
        content_type="application/json",
    )


def no_content() -> Response:
    return Response("", status=204)
