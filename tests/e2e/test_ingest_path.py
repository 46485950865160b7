"""Saving articles end to end: API and agents as processes, pages served on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from tests.e2e.conftest import Client, Stack
from tests.fetch.server import LocalServer, redirect, respond, serving
from tests.support.processes import poll

pytestmark = pytest.mark.e2e

PAGES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "article-pages"
SAMPLE = ("aclu", "bbc-1", "wikipedia-2")
HTML = "text/html; charset=utf-8"


@pytest_asyncio.fixture
async def site() -> AsyncIterator[LocalServer]:
    routes = {
        f"/{name}": respond(200, (PAGES / name / "source.html").read_bytes(), HTML)
        for name in SAMPLE
    }
    routes["/empty"] = respond(200, b"<html><body></body></html>", "text/html")
    async with serving(routes) as server:
        server.routes["/moved"] = redirect(server.url("/aclu?utm_source=x"))
        yield server


async def test_from_url_to_readable_fragments(
    clients: Callable[[], Client], site: LocalServer, stack: Stack
) -> None:
    alice = clients()
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
    conn = await asyncpg.connect(stack.dsn)
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


async def test_duplicates_and_redirect_merges(
    clients: Callable[[], Client], site: LocalServer
) -> None:
    alice, bob = clients(), clients()
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


async def test_failures_are_recorded_on_the_media(client: Client, site: LocalServer) -> None:
    missing = (await client.save(site.url("/no-such-page"))).json()["data"]
    empty = (await client.save(site.url("/empty"))).json()["data"]
    failed = await client.settled(missing["media_id"])
    assert (failed["processing_status"], failed["last_error_code"]) == ("failed", "E_FETCH_FAILED")
    assert failed["failure_stage"] == "extract"
    nothing = await client.settled(empty["media_id"])
    assert (nothing["processing_status"], nothing["last_error_code"]) == (
        "failed",
        "E_EXTRACTION_EMPTY",
    )
    assert not nothing["capabilities"]["can_read"]


async def test_invalid_urls_are_refused(client: Client) -> None:
    for url in ("ftp://example.com/x", "http://10.0.0.1/", "http://localhost/", "x" * 3000):
        resp = await client.save(url)
        assert resp.status_code == 400, url
        assert resp.json()["error"]["code"] == "E_INVALID_URL"
