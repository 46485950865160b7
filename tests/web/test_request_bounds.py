"""Bodies and requests are bounded (issue 11 §5, §8): authentication before any parsing,
JSON bodies ≤ 1 MiB, the retry route under the ingest rate limit, a deadline per request."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from nexus.config import Settings
from tests.support.library_api import User, new_user
from tests.support.webapp import Api, AppFactory, make_token
from web.deadline import SELF_BOUNDED_ENDPOINTS
from web.json import MAX_BODY_BYTES

# No authentication at all, or authorised by the pre-signed token in the URL.
PUBLIC = {
    "ops.health",
    "ops.ready",
    "ops.metrics",
    "openapi",
    "swagger_ui",
    "swagger_ui_asset",
}
PRESIGNED = {"uploads.put_upload", "uploads.download"}


def _routes(app: Quart) -> list[tuple[str, str, str]]:
    """(method, concrete path, endpoint) of every guarded route, with valid ids filled in."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or rule.endpoint == "static":
            continue
        path = re.sub(
            r"<(\w+):[^>]+>",
            lambda m: str(uuid.uuid4()) if m.group(1) == "uuid" else "1",
            rule.rule,
        )
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, path, rule.endpoint))
    return found


@pytest.mark.parametrize(
    "body", [b"{not json", json.dumps({"name": "x" * (2 * MAX_BODY_BYTES)}).encode()]
)
async def test_every_guarded_route_authenticates_before_reading_the_request(
    app: Quart, api: Api, body: bytes
) -> None:
    """No credential: 401 (or 403 for a pre-signed URL) whatever the body or query holds;
    a malformed or oversized body is never parsed for an anonymous client."""
    routes = _routes(app)
    assert len(routes) > 20
    for method, path, endpoint in routes:
        r = await api.request(
            method,
            path,
            data=body,
            headers={"Content-Type": "application/json"},
            query_string={"limit": "nope", "cursor": "%%%", "status": "?"},
        )
        expected = (403, "E_FORBIDDEN") if endpoint in PRESIGNED else (401, "E_UNAUTHENTICATED")
        got = (r.status_code, (await r.get_json())["error"]["code"])
        assert got == expected, f"{method} {path} ({endpoint})"


async def test_a_json_body_over_1_mib_is_413_payload_too_large(api: Api) -> None:
    user = await new_user(api)
    r = await user.post("/libraries", json={"name": "x" * (MAX_BODY_BYTES + 10)})
    assert r.outcome == (413, "E_PAYLOAD_TOO_LARGE")
    # Just under the limit the body is parsed (and refused for what it says).
    r = await user.post("/libraries", json={"name": "x" * (MAX_BODY_BYTES - 100)})
    assert r.status == 400


async def test_retry_counts_toward_the_ingest_rate_limit(
    build_app: AppFactory, settings: Settings
) -> None:
    app = build_app(settings=settings.model_copy(update={"rate_limit_ingest_per_minute": 2}))
    async with app.test_app():
        user = await new_user(Api(app.test_client()))
        statuses = [(await user.post(f"/media/{uuid.uuid4()}/retry")).status for _ in range(2)]
        assert statuses == [404, 404]
        limited = await user.post(f"/media/{uuid.uuid4()}/retry")
        assert limited.outcome == (429, "E_RATE_LIMITED")
        assert int(limited.headers["Retry-After"]) >= 1
        # The same bucket as from_url: it is spent too.
        r = await user.post("/media/from_url", json={"url": "https://example.com/a"})
        assert r.status == 429


async def test_a_hung_dependency_costs_a_503_not_a_worker(
    build_app: AppFactory, settings: Settings, engine: AsyncEngine
) -> None:
    """A request stuck on a lock answers 503 at NEXUS_REQUEST_TIMEOUT_SECONDS; the process
    serves the next one normally once the database does."""
    app = build_app(settings=settings.model_copy(update={"request_timeout_seconds": 1.0}))
    async with app.test_app():
        api = Api(app.test_client())
        token = make_token()
        async with engine.connect() as locker:
            await locker.execute(text("LOCK TABLE libraries IN ACCESS EXCLUSIVE MODE"))
            async with asyncio.timeout(20):  # today's code waits for the lock forever
                r = await api.get("/me", token=token)
            assert r.status_code == 503
            assert r.headers["Retry-After"] == "1"
            error = (await r.get_json())["error"]
            assert error["code"] == "E_DEPENDENCY_UNAVAILABLE"
            assert "1 s" in error["message"]
            await locker.rollback()
        r = await api.get("/me", token=token)
        assert r.status_code == 200


async def test_a_stalled_upload_ends_after_the_idle_bound(
    build_app: AppFactory, settings: Settings, tmp_path: Path
) -> None:
    """The upload PUT is not cut at the request deadline (large files take long) but a
    client that stops sending is dropped after as many seconds without a byte."""
    app = build_app(
        settings=settings.model_copy(
            update={"request_timeout_seconds": 1.0, "storage_dir": tmp_path / "storage"}
        )
    )
    async with app.test_app():
        api = Api(app.test_client())
        user: User = await new_user(api)
        init = await user.init_pdf_upload(4000)
        url = init.data["upload_url"]
        path, _, query = url.partition("?")
        async with asyncio.timeout(20):
            async with app.test_client().request(
                path,
                method="PUT",
                query_string={"token": query.removeprefix("token=")},
                headers={"Content-Type": "application/pdf", "Content-Length": "4000"},
            ) as conn:
                await conn.send(b"%PDF-1.4\n")
                body: Any = b""
                while True:
                    chunk = await conn.receive()
                    if not chunk:
                        break
                    body += chunk
        assert conn.status_code == 503
        assert json.loads(body)["error"]["code"] == "E_DEPENDENCY_UNAVAILABLE"


def test_the_deadline_exemptions_name_real_endpoints(app: Quart) -> None:
    """A renamed view would silently fall under (or out of) the deadline."""
    assert set(SELF_BOUNDED_ENDPOINTS) <= set(app.view_functions)


@pytest.mark.parametrize(
    "body",
    [{"name": "a\u0000b"}, {"name": "ok", "a\u0000": 1}, {"name": ["x", {"y": "\u0000"}]}],
)
async def test_nul_characters_in_a_body_are_400_not_500(api: Api, body: dict[str, Any]) -> None:
    """PostgreSQL text cannot hold NUL: such a name used to fail at the database (500)."""
    user = await new_user(api)
    assert (await user.post("/libraries", json=body)).outcome == (400, "E_INVALID_REQUEST")
    ok = await user.post("/libraries", json={"name": "a\\u0000b"})  # a backslash, no NUL
    assert ok.status == 201
