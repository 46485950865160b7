"""Uploading every shared PDF and EPUB end to end: API and agents as processes, real broker.

init → pre-signed PUT (no credentials) → ingest → the agents extract → `ready_for_reading`
with readable fragments, or `failed` with the precise terminal code. All files go at once
(one user each, so per-user dedupe never merges two samples) to keep the test short.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import TEST_INTERNAL_SECRET
from tests.e2e.conftest import Stack
from tests.support.processes import poll
from tests.support.webapp import make_token
from tests.unit.test_epub import IMAGE_ONLY as EPUB_IMAGE_ONLY
from tests.unit.test_pdf import IMAGE_ONLY as PDF_IMAGE_ONLY
from tests.unit.test_pdf import META as PDF_META

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PDFS = sorted(p for p in (DATA / "pdfs").rglob("*.pdf"))
EPUBS = sorted((DATA / "epubs").glob("*.epub"))


def expected_code(path: Path) -> str | None:
    """None when the file must become readable, else its terminal error code."""
    if path.suffix == ".epub":
        return "E_EXTRACTION_EMPTY" if path.name in EPUB_IMAGE_ONLY else None
    rel = path.relative_to(DATA / "pdfs").as_posix()
    if PDF_META.get(rel, {}).get("encrypted"):
        return "E_PDF_ENCRYPTED"
    return "E_EXTRACTION_EMPTY" if rel in PDF_IMAGE_ONLY else None


@pytest_asyncio.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The BFF's client: the internal header; each request names its user."""
    async with httpx.AsyncClient(
        base_url=stack.base_url,
        headers={"X-Nexus-Internal": TEST_INTERNAL_SECRET},
        timeout=60,
    ) as client:
        yield client


@pytest_asyncio.fixture
async def bare(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The pre-signed URLs' client: no internal header, no JWT. One for the whole test: a
    client built per upload (each loads its TLS context) held this loop long enough, on a
    loaded machine, for the server to close a connection that had sent nothing for its
    keep-alive timeout (5 s)."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
        yield client


async def upload_and_settle(
    http: httpx.AsyncClient, bare: httpx.AsyncClient, path: Path
) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {make_token(uuid.uuid4())}"}
    kind = path.suffix.lstrip(".")
    data = await asyncio.to_thread(path.read_bytes)
    ctype = {"pdf": "application/pdf", "epub": "application/epub+zip"}[kind]
    body = {"kind": kind, "filename": path.name, "content_type": ctype, "size_bytes": len(data)}
    init = await http.post("/media/upload/init", json=body, headers=auth)
    assert init.status_code == 201, init.text
    ticket = init.json()["data"]
    put = await bare.put(ticket["upload_url"], content=data)
    assert put.status_code == 200, put.text
    ingest = await http.post(f"/media/{ticket['media_id']}/ingest", headers=auth)
    assert ingest.status_code == 202, ingest.text

    async def settled() -> dict[str, Any] | None:
        m = (await http.get(f"/media/{ticket['media_id']}", headers=auth)).json()["data"]
        return m if m["processing_status"] in ("ready_for_reading", "failed") else None

    # All files are extracted by one process (NEXUS_INGEST_EXTRACT_PROCESSES=1), one after
    # the other: on a slow, loaded machine the last waits minutes, not seconds.
    media: dict[str, Any] = await poll(settled, deadline_s=300, what=f"{path.name}")
    media["_auth"] = auth
    media["_bytes"] = data
    return media


async def check(
    http: httpx.AsyncClient, bare: httpx.AsyncClient, path: Path, media: dict[str, Any]
) -> None:
    auth, code = media["_auth"], expected_code(path)
    if code is not None:
        assert (media["processing_status"], media["last_error_code"]) == ("failed", code), path
        assert media["failure_stage"] == "extract"
        return
    assert media["processing_status"] == "ready_for_reading", (path, media)
    assert media["capabilities"]["can_read"] and media["capabilities"]["can_search"]
    frags = (await http.get(f"/media/{media['id']}/fragments?limit=200", headers=auth)).json()
    assert frags["data"], path
    assert all(f["canonical_text"].strip() for f in frags["data"])
    assert "<script" not in "".join(f["html_sanitized"] for f in frags["data"])
    # The file itself comes back through a pre-signed download URL.
    link = (await http.get(f"/media/{media['id']}/file", headers=auth)).json()["data"]
    got = await bare.get(link["url"])
    assert got.status_code == 200 and got.content == media["_bytes"]
    assert got.headers["content-disposition"].startswith("attachment")


# Beyond the suite's 120 s: the files' serial extraction takes minutes on a slow machine.
@pytest.mark.timeout(420)
async def test_every_shared_pdf_and_epub_uploads_to_a_precise_outcome(
    http: httpx.AsyncClient, bare: httpx.AsyncClient
) -> None:
    files = PDFS + EPUBS
    assert len(PDFS) >= 25 and len(EPUBS) >= 8
    results = await asyncio.gather(*(upload_and_settle(http, bare, p) for p in files))
    for path, media in zip(files, results, strict=True):
        await check(http, bare, path, media)
    readable = sum(1 for p in files if expected_code(p) is None)
    assert readable >= 25


async def test_duplicate_upload_returns_the_first_media(
    http: httpx.AsyncClient, bare: httpx.AsyncClient
) -> None:
    auth = {"Authorization": f"Bearer {make_token(uuid.uuid4())}"}
    data = PDFS[0].read_bytes()
    body = {
        "kind": "pdf",
        "filename": "again.pdf",
        "content_type": "application/pdf",
        "size_bytes": len(data),
    }
    ids = []
    for _ in range(2):
        ticket = (await http.post("/media/upload/init", json=body, headers=auth)).json()["data"]
        assert (await bare.put(ticket["upload_url"], content=data)).status_code == 200
        ids.append(ticket["media_id"])
    first = (await http.post(f"/media/{ids[0]}/ingest", headers=auth)).json()["data"]
    second = await http.post(f"/media/{ids[1]}/ingest", headers=auth)
    assert second.status_code == 200
    assert second.json()["data"]["media_id"] == first["media_id"]
    assert second.json()["data"]["duplicate"] is True
