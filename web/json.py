"""Strict, bounded JSON for request bodies: malformed input is a 400, never a 500, and a
body over `MAX_BODY_BYTES` is a 413 `E_PAYLOAD_TOO_LARGE` (the pre-signed upload PUT has
its own, larger limit: web/routes/uploads.py)."""

from __future__ import annotations

import json
import re
from typing import Any

from quart import Quart

# PostgreSQL text cannot hold NUL, and UTF-8 cannot encode an unpaired surrogate: either
# would fail at the database as a 500. Only JSON escapes can produce them (`\u0000`,
# `\ud800`...), so documents without such an escape are not walked.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")

# Every request body except the upload PUT's. Quart stops buffering past it and raises
# 413 when the view reads the body (views authenticate first, so an anonymous client
# cannot make the API parse anything).
MAX_BODY_BYTES = 1024 * 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _holds_unstorable(value: Any) -> bool:
    """Whether NUL or an unpaired surrogate is in any key or string of a parsed document."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def install_strict_json(app: Quart) -> None:
    """Wrap the app's JSON provider (quart-schema's, for pydantic output) so that parsing
    rejects NaN/Infinity, NUL characters and unpaired surrogates (PostgreSQL cannot store
    them: they would fail at the database as a 500) and turns pathological nesting into a
    ValueError, which Quart reports as a bad request (rendered as 400 E_INVALID_REQUEST)."""
    base: type[Any] = type(app.json)

    class StrictJSONProvider(base):
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            kwargs.setdefault("parse_constant", _reject_constant)
            try:
                document = json.loads(s, **kwargs)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None
            raw = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s
            if _UNSTORABLE_ESCAPE.search(raw) and _holds_unstorable(document):
                raise ValueError("NUL characters and unpaired surrogates are not accepted")
            return document

    app.json = StrictJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
