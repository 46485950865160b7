"""The webhook signature: `X-Nexus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The HMAC key is the subscription's secret (UTF-8); the signed text is `"<t>.<body>"`, the
body being the exact bytes POSTed. `verify` is the reference receivers follow
(docs/webhooks.md): it recomputes the MAC over the bytes received, compares in constant
time, and refuses a timestamp further than `tolerance_seconds` from the receiver's clock
(a replayed old delivery). Several `v1=` entries are accepted (room for secret rotation).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Nexus-Signature"
EVENT_ID_HEADER = "X-Nexus-Event-Id"
EVENT_TYPE_HEADER = "X-Nexus-Event-Type"
DEFAULT_TOLERANCE_SECONDS = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The `X-Nexus-Signature` value for `body` sent at `timestamp` (now by default)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True only when `header` carries a fresh timestamp and a `v1` MAC of `body` under
    `secret`. Malformed headers are simply not valid (never an exception)."""
    if not header:
        return False
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            if not value.isdigit() or timestamp is not None:
                return False
            timestamp = int(value)
        elif name == "v1":
            macs.append(value)
    if timestamp is None or not macs:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, mac) for mac in macs)
