"""The baseline of bench/api.py: a bare Quart app answering the BFF's read paths with the
same JSON documents the real API gave (loaded from BENCH_BARE_FIXTURES: {path: body}),
serialised per request by Quart. No auth, no database, no hooks. Served by Hypercorn with
the API's own configuration (`hypercorn bench._bare_api:app --config
python:web.serving.hypercorn`). Importing it does nothing but build that app.
"""

from __future__ import annotations

import json
import os
from typing import Any

from quart import Quart, request

app = Quart("bare", static_folder=None)
_FIXTURES: dict[str, Any] = {}
_path = os.environ.get("BENCH_BARE_FIXTURES")
if _path:
    with open(_path, encoding="utf-8") as fh:
        _FIXTURES = json.load(fh)


@app.get("/health")
async def health() -> Any:
    return {"status": "ok"}


@app.get("/<path:rest>")
async def answer(rest: str) -> Any:
    body = _FIXTURES.get(request.path)
    if body is None:
        return {"error": "no fixture"}, 404
    return body
