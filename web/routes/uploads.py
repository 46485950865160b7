"""Uploads and downloads of PDF/EPUB files (SPEC §8, docs/uploads.md).

- `POST /media/upload/init` (user): a pending media and a pre-signed upload URL.
- `PUT /media/{id}/upload?token=...` (pre-signed: no internal header, no JWT): the raw
  bytes, streamed to storage; the declared size is enforced while streaming.
- `POST /media/{id}/ingest` (the creator): check the file and queue extraction.
- `GET /media/{id}/file` (readers): a pre-signed download URL.
- `GET /media/{id}/download?token=...` (pre-signed): the file as an attachment.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import structlog
from pydantic import BaseModel, Field, JsonValue
from quart import Blueprint, Quart, Response, g, request, send_file
from quart.wrappers import Request
from quart_schema import validate_request, validate_response

from nexus.db.tx import transaction
from nexus.errors import InvalidRequest, NexusError, NotFound
from nexus.messaging.topics import Topics
from nexus.uploads import service as uploads
from nexus.uploads import signing
from nexus.uploads.storage import LocalStorage
from web.auth import current_user, internal_exempt, user_required
from web.deadline import idle_bounded
from web.envelope import Data
from web.idempotency import Reply, idempotent_unit_of_work
from web.openapi import BINARY, binary_body, idempotent, links, presigned, raises, responds
from web.ratelimit import rate_limited
from web.state import nexus_state
from web.uow import unit_of_work

log = structlog.get_logger("nexus.web.uploads")

bp = Blueprint("uploads", __name__)

_UPLOAD_PATH = re.compile(r"/media/[^/]+/upload/?")

FILE_TYPES = sorted(set(uploads.CONTENT_TYPES.values()))
_CONTENT_TYPES: list[JsonValue] = list(FILE_TYPES)
_TICKET = {"media_id": "$response.body#/data/media_id"}
UPLOAD_LINKS = {
    "put_upload": {**_TICKET, "token": "$response.body#/data/upload_token"},
    "ingest_upload": _TICKET,
    "file_url": _TICKET,
}


def _upload_aware(base: type[Request]) -> type[Request]:
    """A request class whose body limit is the largest upload for the pre-signed PUT (the
    app's MAX_CONTENT_LENGTH for everything else). The limit is fixed when the request is
    created, before any byte is read, so it cannot be raised later in a hook."""

    class UploadAwareRequest(base):  # type: ignore[valid-type,misc]
        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any):
            if method == "PUT" and _UPLOAD_PATH.fullmatch(path):
                kwargs["max_content_length"] = uploads.MAX_UPLOAD_BYTES
            super().__init__(method, scheme, path, *args, **kwargs)

    return UploadAwareRequest


@bp.record_once
def _install_request_class(setup: Any) -> None:
    app: Quart = setup.app
    app.request_class = _upload_aware(app.request_class)


# ----------------------------------------------------------------------------- shapes


class UploadInitIn(BaseModel):
    kind: Literal["pdf", "epub"]
    filename: str = Field(min_length=1, max_length=1024)
    content_type: str = Field(
        max_length=255,
        # Checked by the service (E_INVALID_CONTENT_TYPE / E_FILE_TOO_LARGE / 400 for a
        # size ≤ 0); documented here.
        json_schema_extra={"enum": _CONTENT_TYPES},
    )
    size_bytes: int = Field(json_schema_extra={"minimum": 1, "maximum": uploads.MAX_UPLOAD_BYTES})


class UploadInitOut(BaseModel):
    media_id: uuid.UUID
    upload_url: str
    upload_token: str
    expires_at: datetime


class UploadedOut(BaseModel):
    media_id: uuid.UUID
    size_bytes: int


class IngestOut(BaseModel):
    media_id: uuid.UUID
    duplicate: bool
    processing_status: str


class FileUrlOut(BaseModel):
    url: str
    expires_at: datetime


def _storage() -> LocalStorage:
    return LocalStorage(nexus_state().settings.storage_dir)


def _signed_url(media_id: uuid.UUID, action: str, token: str) -> str:
    base = (nexus_state().settings.public_api_url or "").rstrip("/")
    return f"{base}/media/{media_id}/{action}?token={token}"


def _at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, tz=UTC)


# ------------------------------------------------------------------------------ routes


@bp.post("/media/upload/init")
@raises("E_INVALID_REQUEST", "E_INVALID_CONTENT_TYPE", "E_FILE_TOO_LARGE")
@idempotent
@links(201, **UPLOAD_LINKS)
@user_required
@validate_request(UploadInitIn)
@validate_response(Data[UploadInitOut], 201)
@rate_limited()
async def upload_init(data: UploadInitIn) -> Reply:
    """Create a pending media for a file to upload; 201 with a pre-signed `upload_url`.

    Order: 401 → 400 body (kind must be pdf|epub) → 429 E_RATE_LIMITED → Idempotency-Key
    replay / 409 → 400 size ≤ 0 → 400 E_INVALID_CONTENT_TYPE → 413 E_FILE_TOO_LARGE → 409
    E_QUOTA_EXCEEDED (declared sizes of the caller's uploads past
    NEXUS_STORAGE_QUOTA_BYTES_PER_USER)."""
    state = nexus_state()
    user = current_user()
    async with idempotent_unit_of_work(data) as work:
        if work.replay is not None:
            return work.replay
        ticket = await uploads.init_upload(
            work.session,
            user.user_id,
            user.default_library_id,
            kind=data.kind,
            filename=data.filename,
            content_type=data.content_type,
            size_bytes=data.size_bytes,
            signing_key=state.settings.upload_signing_key_bytes,
            ttl_seconds=state.settings.upload_url_ttl_seconds,
            quota_bytes=state.settings.storage_quota_bytes_per_user,
        )
        out = UploadInitOut(
            media_id=ticket.media_id,
            upload_url=_signed_url(ticket.media_id, "upload", ticket.token.token),
            upload_token=ticket.token.token,
            expires_at=_at(ticket.token.expires_at),
        )
        return await work.respond(Data(data=out), 201)


async def _exactly(
    chunks: AsyncIterator[bytes], size: int, idle_seconds: float
) -> AsyncIterator[bytes]:
    """The body, failing (400) when it ends before `size` bytes, and (503) when no byte
    arrives for `idle_seconds` (this route's bound instead of the request deadline,
    web/deadline.py); the storage enforces the upper bound."""
    received = 0
    async for chunk in idle_bounded(chunks, idle_seconds):
        received += len(chunk)
        yield chunk
    if received < size:
        raise InvalidRequest(f"the body has {received} bytes, {size} were declared")


def _check_content_length(declared: int) -> None:
    sent = request.content_length
    if sent is not None and sent > declared:
        raise NexusError("E_FILE_TOO_LARGE", f"the file is larger than {declared} bytes")
    if sent is not None and sent < declared:
        raise InvalidRequest(f"the body has {sent} bytes, {declared} were declared")


async def _release(media_id: uuid.UUID, nonce: str) -> None:
    try:
        async with transaction(nexus_state().sessionmaker) as session:
            await uploads.release_upload(session, media_id, nonce)
    except Exception:
        log.exception("could not release an upload token", media_id=str(media_id))


@bp.put("/media/<uuid:media_id>/upload")
@raises("E_FORBIDDEN", "E_FILE_TOO_LARGE", "E_INVALID_REQUEST")
@presigned
@binary_body("The file's bytes, exactly the declared size.", ["application/octet-stream"])
@validate_response(Data[UploadedOut], 200)
@internal_exempt
async def put_upload(media_id: uuid.UUID) -> tuple[Data[UploadedOut], int]:
    """The pre-signed upload: authorised only by `?token=` (no internal header, no JWT).

    Order: 403 E_FORBIDDEN (token missing, tampered, for another media or action, expired,
    spent by a completed upload, or held by an upload in progress) → 413 E_FILE_TOO_LARGE
    (Content-Length or the streamed body exceeds the declared size; nothing is kept) → 400
    E_INVALID_REQUEST (fewer bytes than declared; nothing is kept) → 200. A failed upload
    gives the token back: the same URL may be retried until it expires."""
    state = nexus_state()
    token = signing.verify(
        state.settings.upload_signing_key_bytes, request.args.get("token"), "upload", media_id
    )
    async with transaction(state.sessionmaker) as session:
        target = await uploads.claim_upload(session, media_id, token.nonce)
    storage = _storage()
    try:
        _check_content_length(target.size_bytes)
        limit = min(target.size_bytes, uploads.SIZE_LIMITS[target.kind])
        size = await storage.put_stream(
            target.storage_path,
            _exactly(request.body, target.size_bytes, state.settings.request_timeout_seconds),
            max_bytes=limit,
        )
        async with transaction(state.sessionmaker) as session:
            done = await uploads.complete_upload(session, media_id, token.nonce)
    except BaseException:
        await asyncio.shield(_release(media_id, token.nonce))
        raise
    if not done:  # the media was deleted while the bytes were streaming
        await storage.delete(target.storage_path)
        raise signing.forbidden()
    return Data(data=UploadedOut(media_id=media_id, size_bytes=size)), 200


@bp.post("/media/<uuid:media_id>/ingest")
@raises("E_MEDIA_NOT_FOUND", "E_FORBIDDEN", "E_STORAGE_MISSING", "E_INVALID_FILE_TYPE")
@validate_response(Data[IngestOut], 202)
@validate_response(Data[IngestOut], 200)
@user_required
async def ingest_upload(media_id: uuid.UUID) -> tuple[Data[IngestOut], int]:
    """Queue extraction of the uploaded file (creator only); idempotent.

    Order: 400 id → 404 E_MEDIA_NOT_FOUND unless readable → 403 E_FORBIDDEN unless the
    creator → already queued or processed: 202 (pending/extracting) or 200 with the
    current status → 400 E_STORAGE_MISSING (not uploaded) → 400 E_INVALID_FILE_TYPE (magic
    bytes; the media becomes failed, stage upload) → 200 `duplicate: true` with the
    caller's older media of the same sha256 → 202 pending."""
    state = nexus_state()
    user = current_user()
    storage = _storage()
    async with unit_of_work() as uow:
        outcome = await uploads.ingest_upload(
            uow.session,
            user.user_id,
            user.default_library_id,
            media_id,
            storage,
            Topics.from_settings(state.settings),
            request_id=g.request_id,
            correlation_id=g.correlation_id,
        )
    if outcome.delete_key is not None:
        await storage.delete(outcome.delete_key)
    if outcome.rejection is not None:
        raise outcome.rejection
    body = IngestOut(
        media_id=outcome.media_id,
        duplicate=outcome.duplicate,
        processing_status=outcome.processing_status,
    )
    return Data(data=body), outcome.status_code


@bp.get("/media/<uuid:media_id>/file")
@raises("E_MEDIA_NOT_FOUND", "E_STORAGE_MISSING")
@validate_response(Data[FileUrlOut], 200)
@user_required
async def file_url(media_id: uuid.UUID) -> Data[FileUrlOut]:
    """A pre-signed download URL (valid NEXUS_DOWNLOAD_URL_TTL_SECONDS, reusable until then).

    Order: 400 id → 404 E_MEDIA_NOT_FOUND unless readable (merges followed) → 400
    E_STORAGE_MISSING when the media has no stored file (never uploaded, not yet past its
    type check at POST /media/{id}/ingest, refused, or gone from storage)."""
    state = nexus_state()
    async with unit_of_work() as uow:
        found = await uploads.readable_file(uow.session, current_user().user_id, media_id)
    if not await _storage().exists(found.storage_path):
        raise NexusError("E_STORAGE_MISSING", "the stored file is missing")
    token = signing.sign(
        state.settings.upload_signing_key_bytes,
        "download",
        found.media_id,
        ttl_seconds=state.settings.download_url_ttl_seconds,
    )
    url = _signed_url(found.media_id, "download", token.token)
    return Data(data=FileUrlOut(url=url, expires_at=_at(token.expires_at)))


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name as RFC 5987 `filename*`
    (header values are Latin-1 on the wire; file names are not)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@bp.get("/media/<uuid:media_id>/download")
@raises("E_FORBIDDEN", "E_NOT_FOUND")
@presigned
@responds(200, "The file as an attachment.", {t: BINARY for t in FILE_TYPES})
@internal_exempt
async def download(media_id: uuid.UUID) -> Response:
    """The pre-signed download: the stored bytes as an attachment with their content type.

    403 E_FORBIDDEN for a missing/tampered/expired token; 404 E_NOT_FOUND when the media or
    its file no longer exists or is an upload not yet past its type check. Supports
    conditional and range requests."""
    state = nexus_state()
    signing.verify(
        state.settings.upload_signing_key_bytes, request.args.get("token"), "download", media_id
    )
    async with transaction(state.sessionmaker) as session:
        found = await uploads.downloadable_file(session, media_id)
    storage = _storage()
    if found is None or not await storage.exists(found.storage_path):
        raise NotFound("the file no longer exists")
    response = await send_file(
        storage.path(found.storage_path), mimetype=found.content_type, conditional=True
    )
    response.headers["Content-Disposition"] = content_disposition(found.filename)
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
