"""Path converters whose failures are 400s, not 404s (SPEC §2: a non-UUID id is invalid).

Werkzeug converters that reject a value make the route not match (a 404). `uuid` here
matches any path segment and hands the view a `uuid.UUID`; a malformed segment becomes an
`InvalidPathParam` marker that `reject_invalid_path_params` (run when the
request starts, after the internal-header check) turns into 400 E_INVALID_REQUEST.
"""

from __future__ import annotations

import uuid
from typing import Any

from werkzeug.routing import BaseConverter

from nexus.errors import InvalidRequest


class InvalidPathParam(str):
    """A path segment its converter could not parse."""

    expected = "must be a UUID"


class InvalidIdParam(InvalidPathParam):
    expected = "must be a positive integer"


class UUIDConverter(BaseConverter):
    regex = r"[^/]+"

    def to_python(self, value: str) -> Any:
        try:
            return uuid.UUID(value)
        except ValueError:
            return InvalidPathParam(value)

    def to_url(self, value: Any) -> str:
        return str(value)


class IdConverter(BaseConverter):
    """A positive 64-bit integer id (outbox rows); anything else is a 400 like a bad UUID."""

    regex = r"[^/]+"

    def to_python(self, value: str) -> Any:
        if value.isascii() and value.isdigit() and 0 < int(value) < 2**63:
            return int(value)
        return InvalidIdParam(value)

    def to_url(self, value: Any) -> str:
        return str(value)


def reject_invalid_path_params(view_args: dict[str, Any] | None) -> None:
    """400 E_INVALID_REQUEST naming every path parameter its converter could not parse."""
    if not view_args:
        return
    bad = [
        {"loc": ["path", name], "msg": value.expected}
        for name, value in view_args.items()
        if isinstance(value, InvalidPathParam)
    ]
    if bad:
        raise InvalidRequest("invalid path parameter", details=bad)
