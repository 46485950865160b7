"""Strict JSON for request bodies: malformed input is a 400, never a 500."""

from __future__ import annotations

import json
import re
from typing import Any

from quart import Quart

# PostgreSQL text cannot hold NUL, and UTF-8 cannot encode an unpaired surrogate (which a
# JSON `\ud800` escape produces): either would fail deep in a statement as a 500.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _reject_unstorable(value: Any) -> None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise ValueError("JSON strings may not contain NUL or unpaired surrogates")
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def install_strict_json(app: Quart) -> None:
    """Wrap the app's JSON provider (quart-schema's, for pydantic output) so that parsing
    rejects NaN/Infinity and strings PostgreSQL cannot store, and turns pathological
    nesting into a ValueError, which Quart reports as a bad request (rendered as 400
    E_INVALID_REQUEST)."""
    base: type[Any] = type(app.json)

    class StrictJSONProvider(base):
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            kwargs.setdefault("parse_constant", _reject_constant)
            try:
                parsed = json.loads(s, **kwargs)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None
            _reject_unstorable(parsed)
            return parsed

    app.json = StrictJSONProvider(app)
