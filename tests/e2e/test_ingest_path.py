"""Saving articles end to end: API and agents as processes, pages served on 127.0.0.1."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from nexus.config import Settings
from tests.conftest import TEST_INTERNAL_SECRET, make_settings
from tests.fetch.server import LocalServer, redirect, respond
from tests.support.processes import poll, start_agents, start_api
from tests.support.services import Broker, asyncpg_dsn, free_port
from tests.web.conftest import make_token

pytestmark = pytest.mark.e2e

PAGES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "article-pages"
SAMPLE = ("aclu", "bbc-1", "wikipedia-2")


@pytest_asyncio.fixture
async def site() -> AsyncIterator[LocalServer]:
    server = LocalServer()
    for name in SAMPLE:
        body = (PAGES / name / "source.html").read_bytes()
        server.routes[f"/{name}"] = respond(200, body, "text/html; charset=utf-8")
    server.routes["/empty"] = respond(200, b"<html><body></body></html>", "text/html")
    await server.start()
    server.routes["/moved"] = redirect(server.url("/aclu?utm_source=x"))
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def stack(
    db_url: str, broker: Broker, logs_dir: Path, tmp_path: Path
) -> AsyncIterator[Settings]:
    settings = make_settings(
        database_url=db_url,
        kafka_bootstrap=broker.bootstrap,
        api_port=free_port(),
        agents_web_port=free_port(),
        fetch_allow_hosts=["127.0.0.1"],
        ingest_retry_delays=(0.2, 0.2),
        storage_dir=tmp_path / "storage",
    )
    agents = await start_agents(settings, logs_dir)
    api = await start_api(settings, logs_dir)
    try:
        yield settings
    finally:
        api.stop()
        agents.stop()


@pytest_asyncio.fixture
async def client(stack: Settings) -> AsyncIterator[Any]:
    """`client()` makes an API client for a new user; all are closed after the test."""
    made: list[Client] = []

    def make() -> Client:
        made.append(Client(stack, uuid.uuid4()))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            await c.http.aclose()


class Client:
    def __init__(self, settings: Settings, user: uuid.UUID) -> None:
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}",
            headers={
                "Authorization": f"Bearer {make_token(user)}",
                "X-Nexus-Internal": TEST_INTERNAL_SECRET,
            },
            timeout=30,
        )

    async def save(self, url: str) -> httpx.Response:
        return await self.http.post("/media/from_url", json={"url": url})

    async def media(self, media_id: str) -> dict[str, Any]:
        resp = await self.http.get(f"/media/{media_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]

    async def settled(self, media_id: str) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            m = await self.media(media_id)
            return m if m["processing_status"] in ("ready_for_reading", "failed") else None

        result: dict[str, Any] = await poll(done, deadline_s=60, what=f"media {media_id}")
        return result


async def test_from_url_to_readable_fragments(client: Any, site: LocalServer, db_name: str) -> None:
    alice = client()
    saved: list[str] = []
    for name in SAMPLE:
        resp = await alice.save(site.url(f"/{name}"))
        assert resp.status_code == 202, resp.text
        created = resp.json()["data"]
        assert created["duplicate"] is False and created["processing_status"] == "pending"
        media = await alice.settled(created["media_id"])
        assert media["processing_status"] == "ready_for_reading", media
        expected = json.loads((PAGES / name / "expected-metadata.json").read_text())["title"]
        assert " ".join(media["title"].split()).lower() == " ".join(expected.split()).lower()
        assert media["capabilities"]["can_read"] and media["capabilities"]["can_search"]
        frags = (await alice.http.get(f"/media/{created['media_id']}/fragments")).json()
        assert frags["data"] and all(f["canonical_text"].strip() for f in frags["data"])
        assert [f["idx"] for f in frags["data"]] == list(range(len(frags["data"])))
        assert "<script" not in "".join(f["html_sanitized"] for f in frags["data"])
        saved.append(created["media_id"])
    # Each completion announced itself once (the outbox row rides in the completion), and
    # each job's ledger is the plain lifecycle.
    conn = await asyncpg.connect(asyncpg_dsn(db_name))
    try:
        for media_id in saved:
            events = await conn.fetch(
                "SELECT payload->>'event' AS event FROM outbox WHERE payload->>'entity_id' = $1",
                media_id,
            )
            assert [e["event"] for e in events] == ["media.ready"], media_id
            ledger = await conn.fetch(
                "SELECT from_status, to_status FROM job_events "
                "WHERE job_type = 'ingest' AND job_key->>'media_id' = $1 ORDER BY id",
                media_id,
            )
            assert [(r[0], r[1]) for r in ledger] == [
                (None, "pending"),
                ("pending", "running"),
                ("running", "completed"),
            ]
    finally:
        await conn.close()


async def test_duplicates_and_redirect_merges(client: Any, site: LocalServer) -> None:
    alice, bob = client(), client()
    first = (await alice.save(site.url("/aclu"))).json()["data"]
    await alice.settled(first["media_id"])
    # Same canonical URL (tracking parameter dropped): attached, not fetched again.
    again = await bob.save(site.url("/aclu?utm_campaign=z"))
    assert again.status_code == 200
    assert again.json()["data"] == {
        "media_id": first["media_id"],
        "duplicate": True,
        "processing_status": "ready_for_reading",
    }
    # A URL that redirects to the same article: after the fetch it merges into the winner.
    moved = (await bob.save(site.url("/moved"))).json()["data"]
    assert moved["duplicate"] is False

    async def merged() -> bool:
        resp = await bob.http.get(f"/media/{moved['media_id']}")
        return resp.status_code == 200 and resp.json()["data"]["id"] == first["media_id"]

    await poll(merged, deadline_s=60, what="merge of the redirected URL")
    listed = (await bob.http.get("/me")).json()["data"]["default_library_id"]
    items = (await bob.http.get(f"/libraries/{listed}/media")).json()["data"]
    assert [m["id"] for m in items] == [first["media_id"]]


async def test_failures_are_recorded_on_the_media(client: Any, site: LocalServer) -> None:
    alice = client()
    missing = (await alice.save(site.url("/no-such-page"))).json()["data"]
    empty = (await alice.save(site.url("/empty"))).json()["data"]
    failed = await alice.settled(missing["media_id"])
    assert (failed["processing_status"], failed["last_error_code"]) == ("failed", "E_FETCH_FAILED")
    assert failed["failure_stage"] == "extract"
    nothing = await alice.settled(empty["media_id"])
    assert (nothing["processing_status"], nothing["last_error_code"]) == (
        "failed",
        "E_EXTRACTION_EMPTY",
    )
    assert not nothing["capabilities"]["can_read"]


async def test_invalid_urls_are_refused(client: Any) -> None:
    alice = client()
    for url in ("ftp://example.com/x", "http://10.0.0.1/", "http://localhost/", "x" * 3000):
        resp = await alice.save(url)
        assert resp.status_code == 400, url
        assert resp.json()["error"]["code"] == "E_INVALID_URL"
