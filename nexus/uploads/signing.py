"""Pre-signed URL tokens: HMAC-SHA256 over (version, action, media id, expiry, nonce).

A token looks like `v1.<action>.<expires unix seconds>.<nonce>.<signature>` (all URL-safe,
no padding). The media id is not in the token: it is the path segment of the URL, and the
signature covers it, so a token copied onto another media's URL is refused. Verification
is constant-time and says nothing about *why* a token was refused (every failure is one
`E_FORBIDDEN`). Single use (uploads) is enforced by the caller against the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from nexus.errors import Forbidden

Action = Literal["upload", "download"]
VERSION = "v1"
_ACTIONS: frozenset[str] = frozenset({"upload", "download"})
_EXPIRY = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class SignedToken:
    token: str
    nonce: str
    expires_at: int  # unix seconds


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _signature(key: bytes, action: str, media_id: uuid.UUID, expires_at: int, nonce: str) -> str:
    message = f"{VERSION}|{action}|{media_id}|{expires_at}|{nonce}".encode()
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def sign(
    key: bytes,
    action: Action,
    media_id: uuid.UUID,
    *,
    ttl_seconds: int,
    now: float | None = None,
    nonce: str | None = None,
) -> SignedToken:
    """A token for `action` on `media_id`, valid for `ttl_seconds` from `now`."""
    expires_at = int(now if now is not None else time.time()) + ttl_seconds
    nonce = nonce or _b64(secrets.token_bytes(16))
    sig = _signature(key, action, media_id, expires_at, nonce)
    return SignedToken(f"{VERSION}.{action}.{expires_at}.{nonce}.{sig}", nonce, expires_at)


def forbidden() -> Forbidden:
    return Forbidden("the link is invalid or has expired")


def verify(
    key: bytes,
    token: str | None,
    action: Action,
    media_id: uuid.UUID,
    *,
    now: float | None = None,
) -> SignedToken:
    """The verified token; 403 E_FORBIDDEN when it is missing, malformed, signed for
    another media/action/expiry/nonce, signed with another key, or expired."""
    if not token or len(token) > 512:
        raise forbidden()
    parts = token.split(".")
    if len(parts) != 5:
        raise forbidden()
    version, got_action, raw_expiry, nonce, sig = parts
    # ASCII digits only: str.isdigit() also accepts "²" or "٣", which int() refuses.
    if version != VERSION or got_action not in _ACTIONS or not _EXPIRY.fullmatch(raw_expiry):
        raise forbidden()
    expires_at = int(raw_expiry)
    expected = _signature(key, got_action, media_id, expires_at, nonce)
    if not hmac.compare_digest(expected.encode(), sig.encode()) or got_action != action:
        raise forbidden()
    if expires_at <= (now if now is not None else time.time()):
        raise forbidden()
    return SignedToken(token, nonce, expires_at)
