"""Strict, bounded JSON for request bodies: malformed input is a 400, never a 500, and a
body over `MAX_BODY_BYTES` is a 413 `E_PAYLOAD_TOO_LARGE` (the pre-signed upload PUT has
its own, larger limit: web/routes/uploads.py)."""

from __future__ import annotations

import json
from typing import Any

from quart import Quart

# Every request body except the upload PUT's. Quart stops buffering past it and raises
# 413 when the view reads the body (views authenticate first, so an anonymous client
# cannot make the API parse anything).
MAX_BODY_BYTES = 1024 * 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _holds_nul(value: Any) -> bool:
    """Whether a NUL character is in any key or string of a parsed document."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def install_strict_json(app: Quart) -> None:
    """Wrap the app's JSON provider (quart-schema's, for pydantic output) so that parsing
    rejects NaN/Infinity and NUL characters (PostgreSQL text cannot hold them: they would
    fail at the database as a 500) and turns pathological nesting into a ValueError, which
    Quart reports as a bad request (rendered as 400 E_INVALID_REQUEST)."""
    base: type[Any] = type(app.json)

    class StrictJSONProvider(base):
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            kwargs.setdefault("parse_constant", _reject_constant)
            try:
                document = json.loads(s, **kwargs)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None
            # A raw NUL is already invalid JSON; only the escape can produce one.
            marker: str | bytes = b"u0000" if isinstance(s, bytes) else "u0000"
            if marker in s and _holds_nul(document):  # type: ignore[operator]
                raise ValueError("NUL characters are not accepted")
            return document

    app.json = StrictJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
