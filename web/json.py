"""Strict JSON for request bodies: malformed input is a 400, never a 500."""

from __future__ import annotations

import json
from typing import Any

from quart import Quart


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def install_strict_json(app: Quart) -> None:
    """Wrap the app's JSON provider (quart-schema's, for pydantic output) so that parsing
    rejects NaN/Infinity and turns pathological nesting into a ValueError, which Quart
    reports as a bad request (rendered as 400 E_INVALID_REQUEST)."""
    base: type[Any] = type(app.json)

    class StrictJSONProvider(base):
        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            kwargs.setdefault("parse_constant", _reject_constant)
            try:
                return json.loads(s, **kwargs)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None

    app.json = StrictJSONProvider(app)
