"""Uploads: init, the pre-signed PUT, ingest (magic bytes, dedupe), pre-signed downloads."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from quart import Quart
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.uploads import signing
from nexus.uploads.storage import media_key
from tests.support.library_api import Reply, User, scalar
from tests.support.webapp import Api, FakePublisher

Sm = async_sessionmaker[AsyncSession]
MIB = 1024 * 1024


def pdf_bytes(tag: str = "a", size: int = 2000) -> bytes:
    head = f"%PDF-1.4\n% {tag}\n".encode()
    return head + b"x" * (size - len(head))


def epub_bytes() -> bytes:
    name, content = b"mimetype", b"application/epub+zip"
    header = (
        b"PK\x03\x04"
        + b"\x14\x00\x00\x00\x00\x00"  # version, flags, method 0 (stored)
        + b"\x00\x00\x00\x00"  # time, date
        + b"\x00\x00\x00\x00"  # crc
        + len(content).to_bytes(4, "little") * 2
        + len(name).to_bytes(2, "little")
        + b"\x00\x00"
    )
    return header + name + content + b"rest of the archive"


async def init(
    user: User,
    *,
    kind: str = "pdf",
    filename: str = "Book.pdf",
    content_type: str | None = None,
    size: int = 2000,
    headers: dict[str, str] | None = None,
) -> Reply:
    ctype = content_type or {"pdf": "application/pdf", "epub": "application/epub+zip"}.get(
        kind, "application/pdf"
    )
    body = {"kind": kind, "filename": filename, "content_type": ctype, "size_bytes": size}
    return await user.post("/media/upload/init", json=body, headers=headers)


async def raw(api: Api, method: str, url: str, **kwargs: Any) -> Reply:
    """A request with no internal header and no bearer (what a browser sends to a URL)."""
    response = await api.request(method, url, internal=None, **kwargs)
    ctype = response.headers.get("Content-Type", "")
    body = await response.get_json() if ctype.startswith("application/json") else None
    reply = Reply(response.status_code, body, response.headers)
    reply.raw = await response.get_data()  # type: ignore[attr-defined]
    return reply


async def put(api: Api, url: str, data: bytes) -> Reply:
    return await raw(api, "PUT", url, data=data)


async def uploaded(user: User, data: bytes, **kwargs: Any) -> uuid.UUID:
    r = await init(user, size=len(data), **kwargs)
    assert r.status == 201, r.json
    up = await put(user.api, r.data["upload_url"], data)
    assert up.status == 200, up.json
    return uuid.UUID(r.data["media_id"])


async def checked(user: User, data: bytes, **kwargs: Any) -> uuid.UUID:
    """Uploaded and past its type check (ingested): downloadable and shareable."""
    media_id = await uploaded(user, data, **kwargs)
    r = await user.post(f"/media/{media_id}/ingest")
    assert r.status == 202, r.json
    return media_id


async def stream_put(app: Quart, url: str, chunks: list[bytes]) -> tuple[int, Any]:
    """A PUT with a streamed body and no Content-Length (the size is only known by reading)."""
    client = app.test_client()
    async with client.request(url, method="PUT") as connection:
        for chunk in chunks:
            await connection.send(chunk)
        await connection.send_complete()
    response = await connection.as_response()
    return response.status_code, await response.get_json()


def with_token(url: str, token: str) -> str:
    return f"{urlsplit(url).path}?token={token}"


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def leftovers(storage_dir: Path) -> list[Path]:
    return [p for p in storage_dir.rglob("*") if p.is_file()] if storage_dir.exists() else []


# ---------------------------------------------------------------------------------- init


async def test_init_creates_a_pending_media_in_the_default_library(alice: User) -> None:
    r = await init(alice, filename="My Great Book.v2.pdf", size=1234)
    assert r.status == 201, r.json
    assert set(r.data) == {"media_id", "upload_url", "upload_token", "expires_at"}
    media_id = r.data["media_id"]
    assert r.data["upload_url"] == f"/media/{media_id}/upload?token={r.data['upload_token']}"
    m = (await alice.get(f"/media/{media_id}")).data
    assert (m["kind"], m["title"], m["processing_status"]) == ("pdf", "My Great Book.v2", "pending")
    # Nothing uploaded yet: no file to read or download.
    assert not m["capabilities"]["can_read"] and not m["capabilities"]["can_download_file"]
    listed = (await alice.get(f"/libraries/{alice.default_library_id}/media")).json["data"]
    assert [x["id"] for x in listed] == [media_id]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"kind": "docx"}, 400, "E_INVALID_REQUEST"),
        ({"kind": "web_article"}, 400, "E_INVALID_REQUEST"),
        ({"size_bytes": 0}, 400, "E_INVALID_REQUEST"),
        ({"size_bytes": -5}, 400, "E_INVALID_REQUEST"),
        ({"size_bytes": "many"}, 400, "E_INVALID_REQUEST"),
        ({"filename": ""}, 400, "E_INVALID_REQUEST"),
        ({"content_type": "application/epub+zip"}, 400, "E_INVALID_CONTENT_TYPE"),
        ({"content_type": "text/plain"}, 400, "E_INVALID_CONTENT_TYPE"),
        ({"kind": "epub", "content_type": "application/pdf"}, 400, "E_INVALID_CONTENT_TYPE"),
        ({"size_bytes": 100 * MIB + 1}, 413, "E_FILE_TOO_LARGE"),
        (
            {"kind": "epub", "content_type": "application/epub+zip", "size_bytes": 50 * MIB + 1},
            413,
            "E_FILE_TOO_LARGE",
        ),
    ],
)
async def test_init_validation(alice: User, body: dict[str, Any], status: int, code: str) -> None:
    full = {"kind": "pdf", "filename": "a.pdf", "content_type": "application/pdf", "size_bytes": 10}
    r = await alice.post("/media/upload/init", json={**full, **body})
    assert r.outcome == (status, code), r.json
    assert await alice.get(f"/libraries/{alice.default_library_id}/media") is not None


@pytest.mark.parametrize(
    ("kind", "ctype", "size"),
    [
        ("pdf", "application/pdf", 100 * MIB),
        ("pdf", "Application/PDF; charset=binary", 1),
        ("epub", "application/epub+zip", 50 * MIB),
    ],
)
async def test_init_limits_are_inclusive(alice: User, kind: str, ctype: str, size: int) -> None:
    r = await init(alice, kind=kind, content_type=ctype, size=size, filename=f"x.{kind}")
    assert r.status == 201, r.json


async def test_init_needs_a_user_and_the_internal_header(api: Api, alice: User) -> None:
    body = {"kind": "pdf", "filename": "a.pdf", "content_type": "application/pdf", "size_bytes": 1}
    assert (await api.post("/media/upload/init", json=body)).status_code == 401
    r = await api.post("/media/upload/init", json=body, token=alice.token, internal=None)
    assert r.status_code == 403 and (await r.get_json())["error"]["code"] == "E_INTERNAL_ONLY"


async def test_init_with_idempotency_key_replays(alice: User) -> None:
    key = {"Idempotency-Key": "upload-1"}
    first = await init(alice, headers=key)
    again = await init(alice, headers=key)
    assert first.status == again.status == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await init(alice, headers=key, size=99)
    assert other.outcome == (409, "E_IDEMPOTENCY_KEY_REUSED")


# ------------------------------------------------------------------------ pre-signed PUT


async def test_upload_needs_no_credentials_and_stores_the_bytes(
    alice: User, storage_dir: Path
) -> None:
    data = pdf_bytes()
    r = await init(alice, size=len(data))
    up = await put(alice.api, r.data["upload_url"], data)
    assert up.status == 200, up.json
    assert up.data == {"media_id": r.data["media_id"], "size_bytes": len(data)}
    media_id = uuid.UUID(r.data["media_id"])
    assert (storage_dir / media_key(media_id)).read_bytes() == data
    # Not downloadable (nor readable) before its type check (issue #11.6) ...
    m = (await alice.get(f"/media/{media_id}")).data
    assert not m["capabilities"]["can_download_file"] and not m["capabilities"]["can_read"]
    assert (await alice.post(f"/media/{media_id}/ingest")).status == 202
    m = (await alice.get(f"/media/{media_id}")).data
    assert m["capabilities"]["can_download_file"] and m["capabilities"]["can_read"]


async def test_a_body_larger_than_the_app_limit_streams_through(
    app: Quart, alice: User, storage_dir: Path
) -> None:
    # 17 MiB > Quart's default MAX_CONTENT_LENGTH (16 MiB): the upload route has its own.
    chunk = b"%PDF-1.7\n" + b"y" * (MIB - 9)
    size = 17 * MIB
    r = await init(alice, size=size)
    status, body = await stream_put(app, r.data["upload_url"], [chunk] + [b"z" * MIB] * 16)
    assert status == 200, body
    assert (storage_dir / media_key(uuid.UUID(r.data["media_id"]))).stat().st_size == size


async def test_streamed_body_larger_than_declared_is_refused_and_nothing_kept(
    app: Quart, alice: User, storage_dir: Path
) -> None:
    data = pdf_bytes(size=1000)
    r = await init(alice, size=len(data))
    status, body = await stream_put(app, r.data["upload_url"], [data[:600], data[600:], b"!"])
    assert (status, body["error"]["code"]) == (413, "E_FILE_TOO_LARGE")
    assert leftovers(storage_dir) == []
    # A failed upload gives the token back: the same URL works with the right bytes.
    status, body = await stream_put(app, r.data["upload_url"], [data])
    assert status == 200, body


async def test_streamed_body_shorter_than_declared_is_refused(
    app: Quart, alice: User, storage_dir: Path
) -> None:
    r = await init(alice, size=1000)
    status, body = await stream_put(app, r.data["upload_url"], [pdf_bytes(size=999)])
    assert (status, body["error"]["code"]) == (400, "E_INVALID_REQUEST")
    assert leftovers(storage_dir) == []


async def test_content_length_is_checked_before_reading(alice: User, storage_dir: Path) -> None:
    r = await init(alice, size=100)
    big = await put(alice.api, r.data["upload_url"], pdf_bytes(size=101))
    assert big.outcome == (413, "E_FILE_TOO_LARGE")
    small = await put(alice.api, r.data["upload_url"], pdf_bytes(size=99))
    assert small.outcome == (400, "E_INVALID_REQUEST")
    assert leftovers(storage_dir) == []


async def test_upload_token_is_single_use(alice: User) -> None:
    data = pdf_bytes()
    r = await init(alice, size=len(data))
    assert (await put(alice.api, r.data["upload_url"], data)).status == 200
    again = await put(alice.api, r.data["upload_url"], data)
    assert again.outcome == (403, "E_FORBIDDEN")


def _tamper(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


async def test_tampered_upload_tokens_are_forbidden(
    alice: User, settings: Settings, storage_dir: Path
) -> None:
    data = pdf_bytes()
    first, second = await init(alice, size=len(data)), await init(alice, size=len(data))
    url, token = first.data["upload_url"], first.data["upload_token"]
    _version, _action, expiry, nonce, sig = token.split(".")
    key = settings.upload_signing_key_bytes
    media_id = uuid.UUID(first.data["media_id"])
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    bad = {
        "other media": with_token(second.data["upload_url"], token),
        "later expiry": with_token(url, _tamper(token, 2, str(int(expiry) + 3600))),
        "other nonce": with_token(url, _tamper(token, 3, "x" + nonce[1:])),
        "wrong signature": with_token(url, _tamper(token, 4, flipped)),
        "download action": with_token(url, _tamper(token, 1, "download")),
        "other key": with_token(
            url, signing.sign(b"k" * 32, "upload", media_id, ttl_seconds=60, nonce=nonce).token
        ),
        "expired": with_token(
            url,
            signing.sign(
                key, "upload", media_id, ttl_seconds=60, now=time.time() - 61, nonce=nonce
            ).token,
        ),
        "download token": with_token(
            url, signing.sign(key, "download", media_id, ttl_seconds=60, nonce=nonce).token
        ),
        "garbage": with_token(url, "not-a-token"),
        "missing": urlsplit(url).path,
    }
    for what, bad_url in bad.items():
        assert (await put(alice.api, bad_url, data)).outcome == (403, "E_FORBIDDEN"), what
    assert leftovers(storage_dir) == []
    # A correctly re-signed token with the recorded nonce is what the server issues.
    fresh = signing.sign(key, "upload", media_id, ttl_seconds=60, nonce=nonce).token
    assert (await put(alice.api, with_token(url, fresh), data)).status == 200


async def test_upload_of_a_deleted_media_is_forbidden(alice: User, sessionmaker: Sm) -> None:
    r = await init(alice, size=10)
    async with sessionmaker() as s, s.begin():
        await s.execute(text("DELETE FROM media WHERE id = :m"), {"m": r.data["media_id"]})
    up = await put(alice.api, r.data["upload_url"], pdf_bytes(size=10))
    assert up.outcome == (403, "E_FORBIDDEN")


# -------------------------------------------------------------------------------- ingest


async def test_ingest_before_upload_is_storage_missing(alice: User) -> None:
    r = await init(alice)
    ing = await alice.post(f"/media/{r.data['media_id']}/ingest")
    assert ing.outcome == (400, "E_STORAGE_MISSING")


async def test_ingest_queues_extraction_and_is_idempotent(
    alice: User, publisher: FakePublisher, sessionmaker: Sm
) -> None:
    media_id = await uploaded(alice, pdf_bytes())
    ing = await alice.post(f"/media/{media_id}/ingest")
    assert ing.status == 202, ing.json
    assert ing.data == {
        "media_id": str(media_id),
        "duplicate": False,
        "processing_status": "pending",
    }
    assert [t for t, *_ in publisher.sent if t.endswith("ingest")]
    sha = await scalar(sessionmaker, "SELECT file_sha256 FROM media WHERE id = :m", m=media_id)
    assert sha is not None and len(sha) == 64
    again = await alice.post(f"/media/{media_id}/ingest")
    assert (again.status, again.data) == (202, ing.data)
    jobs = await scalar(
        sessionmaker, "SELECT count(*) FROM ingest_jobs WHERE media_id = :m", m=media_id
    )
    assert jobs == 1


async def test_epub_upload_is_ingested(alice: User) -> None:
    data = epub_bytes()
    media_id = await uploaded(
        alice, data, kind="epub", filename="b.epub", content_type="application/epub+zip"
    )
    assert (await alice.post(f"/media/{media_id}/ingest")).status == 202


async def test_only_the_creator_may_ingest(alice: User, bob: User, api: Api) -> None:
    media_id = await uploaded(alice, pdf_bytes())
    stranger = await bob.post(f"/media/{media_id}/ingest")
    assert stranger.outcome == (404, "E_MEDIA_NOT_FOUND")
    shared = await alice.create_library()
    await bob.join(alice, shared)
    assert (await alice.post(f"/media/{media_id}/ingest")).status == 202
    added = await alice.post(f"/libraries/{shared}/media", json={"media_id": str(media_id)})
    assert added.status in (200, 201), added.json
    reader = await bob.post(f"/media/{media_id}/ingest")
    assert reader.outcome == (403, "E_FORBIDDEN")
    missing = await alice.post(f"/media/{uuid.uuid4()}/ingest")
    assert missing.outcome == (404, "E_MEDIA_NOT_FOUND")
    assert (await alice.post("/media/not-a-uuid/ingest")).status == 400


@pytest.mark.parametrize(
    ("kind", "data"),
    [("pdf", epub_bytes()), ("epub", pdf_bytes()), ("pdf", b"<html>not a pdf</html>")],
)
async def test_wrong_magic_bytes_fail_the_upload(
    alice: User, storage_dir: Path, kind: str, data: bytes
) -> None:
    ctype = {"pdf": "application/pdf", "epub": "application/epub+zip"}[kind]
    media_id = await uploaded(alice, data, kind=kind, filename=f"x.{kind}", content_type=ctype)
    ing = await alice.post(f"/media/{media_id}/ingest")
    assert ing.outcome == (400, "E_INVALID_FILE_TYPE")
    m = (await alice.get(f"/media/{media_id}")).data
    assert (m["processing_status"], m["failure_stage"], m["last_error_code"]) == (
        "failed",
        "upload",
        "E_INVALID_FILE_TYPE",
    )
    assert not m["capabilities"]["can_download_file"]
    assert leftovers(storage_dir) == []
    again = await alice.post(f"/media/{media_id}/ingest")
    assert (again.status, again.data["processing_status"]) == (200, "failed")


async def test_same_bytes_twice_returns_the_first_media(
    alice: User, bob: User, storage_dir: Path, sessionmaker: Sm
) -> None:
    data = pdf_bytes("same")
    first = await uploaded(alice, data)
    assert (await alice.post(f"/media/{first}/ingest")).status == 202
    second = await uploaded(alice, data, filename="copy.pdf")
    dup = await alice.post(f"/media/{second}/ingest")
    assert dup.status == 200, dup.json
    assert dup.data == {"media_id": str(first), "duplicate": True, "processing_status": "pending"}
    # One media left; the loser's id answers with the winner; its file is gone.
    listed = (await alice.get(f"/libraries/{alice.default_library_id}/media")).json["data"]
    assert [x["id"] for x in listed] == [str(first)]
    assert (await alice.get(f"/media/{second}")).data["id"] == str(first)
    assert not (storage_dir / media_key(second)).exists()
    assert (storage_dir / media_key(first)).exists()
    assert await scalar(sessionmaker, "SELECT count(*) FROM media WHERE id = :m", m=second) == 0
    # Repeating the loser's ingest keeps answering with the winner.
    again = await alice.post(f"/media/{second}/ingest")
    assert (again.status, again.data["media_id"], again.data["duplicate"]) == (
        200,
        str(first),
        True,
    )
    # Dedupe is per user: bob's copy is his own media.
    theirs = await uploaded(bob, data)
    own = await bob.post(f"/media/{theirs}/ingest")
    assert (own.status, own.data["media_id"], own.data["duplicate"]) == (202, str(theirs), False)


# ------------------------------------------------------------------------------ download


async def test_download_url_serves_the_file_without_credentials(
    alice: User, settings: Settings
) -> None:
    data = pdf_bytes("dl")
    media_id = await checked(alice, data, filename="Reading List.pdf")
    r = await alice.get(f"/media/{media_id}/file")
    assert r.status == 200, r.json
    assert set(r.data) == {"url", "expires_at"}
    url = r.data["url"]
    assert urlsplit(url).path == f"/media/{media_id}/download"
    got = await raw(alice.api, "GET", url)
    assert got.status == 200
    assert got.raw == data  # type: ignore[attr-defined]
    assert got.headers["Content-Type"] == "application/pdf"
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("attachment") and "Reading List.pdf" in disposition
    # Reusable until it expires.
    assert (await raw(alice.api, "GET", url)).status == 200
    token = token_of(url)
    key = settings.upload_signing_key_bytes
    _v, _a, expiry, _nonce, sig = token.split(".")
    bad = {
        "later expiry": _tamper(token, 2, str(int(expiry) + 60)),
        "wrong signature": _tamper(token, 4, sig[:-1] + ("A" if sig[-1] != "A" else "B")),
        "expired": signing.sign(
            key, "download", media_id, ttl_seconds=5, now=time.time() - 6
        ).token,
        "upload action": signing.sign(key, "upload", media_id, ttl_seconds=60).token,
    }
    for what, t in bad.items():
        r2 = await raw(alice.api, "GET", f"/media/{media_id}/download?token={t}")
        assert (r2.status, r2.code) == (403, "E_FORBIDDEN"), what
    other = await checked(alice, pdf_bytes("other"))
    moved = await raw(alice.api, "GET", f"/media/{other}/download?token={token}")
    assert moved.outcome == (403, "E_FORBIDDEN")


async def test_file_url_is_for_readers_of_uploaded_files(
    alice: User, bob: User, storage_dir: Path
) -> None:
    media_id = await checked(alice, pdf_bytes())
    assert (await bob.get(f"/media/{media_id}/file")).code == "E_MEDIA_NOT_FOUND"
    shared = await alice.create_library()
    await bob.join(alice, shared)
    await alice.post(f"/libraries/{shared}/media", json={"media_id": str(media_id)})
    r = await bob.get(f"/media/{media_id}/file")
    assert r.status == 200
    assert (await raw(bob.api, "GET", r.data["url"])).status == 200
    pending = await init(alice)
    nofile = await alice.get(f"/media/{pending.data['media_id']}/file")
    assert nofile.outcome == (400, "E_STORAGE_MISSING")
    # Gone from storage: no new URL, and an issued one answers 404.
    (storage_dir / media_key(media_id)).unlink()
    gone = await raw(bob.api, "GET", r.data["url"])
    assert gone.outcome == (404, "E_NOT_FOUND")
    assert (await alice.get(f"/media/{media_id}/file")).code == "E_STORAGE_MISSING"


async def test_download_of_a_non_ascii_name_and_a_range(alice: User) -> None:
    data = pdf_bytes("range")
    media_id = await checked(alice, data, filename='IDに漢字 "book".pdf')
    url = (await alice.get(f"/media/{media_id}/file")).data["url"]
    got = await raw(alice.api, "GET", url)
    assert got.status == 200
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="ID')
    assert "filename*=UTF-8''ID%E3%81%AB%E6%BC%A2%E5%AD%97%20%22book%22.pdf" in disposition
    part = await raw(alice.api, "GET", url, headers={"Range": "bytes=0-7"})
    assert part.status == 206
    assert part.raw == data[:8]  # type: ignore[attr-defined]


async def test_concurrent_ingests_of_the_same_bytes_leave_one_media(
    alice: User, sessionmaker: Sm
) -> None:
    data = pdf_bytes("race")
    a, b = await uploaded(alice, data), await uploaded(alice, data, filename="b.pdf")
    ra, rb = await asyncio.gather(
        alice.post(f"/media/{a}/ingest"), alice.post(f"/media/{b}/ingest")
    )
    replies = sorted([ra, rb], key=lambda r: r.status)
    assert [r.status for r in replies] == [200, 202], [r.json for r in replies]
    winner = replies[1].data["media_id"]
    assert replies[0].data == {
        "media_id": winner,
        "duplicate": True,
        "processing_status": "pending",
    }
    left = await scalar(
        sessionmaker, "SELECT count(*) FROM media WHERE created_by_user_id = :u", u=alice.id
    )
    assert left == 1
