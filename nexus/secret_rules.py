"""What staging/prod accept as a secret, and what counts as a loopback address.

A secret (`NEXUS_INTERNAL_SECRET`, `NEXUS_UPLOAD_SIGNING_KEY`) is refused when:

1. it is a placeholder: it contains `change-me`, `changeme`, `placeholder`, `example`,
   `replace-me` or `dummy` (case-insensitive; the compose file's values all do);
2. it is weak by character classes: `length x log2(pool) < 120` bits, where the pool is the
   sum of the classes present (26 lower-case, 26 upper-case, 10 digits, 33 others). 22
   URL-safe base64 characters (`secrets.token_urlsafe(16)`) or 32 hex digits pass (a
   random one is refused by rule 2 or 3 about once in 5,000 draws: draw another);
3. it is repetitive: fewer than 10 distinct characters, one character making up more
   than a third of it, or a shorter string repeated (`0123456789` x 4).

The rule is an estimate, not a proof: a long English phrase passes (2). It exists to stop
the mistakes deployments actually make (a placeholder left in, `aaaa...`, a short word);
generate secrets with `openssl rand -base64 32` or `python -c 'import secrets;
print(secrets.token_urlsafe(32))'`.
"""

from __future__ import annotations

import ipaddress
import math
import string
from collections import Counter

MIN_SECRET_BITS = 120
MIN_DISTINCT_CHARS = 10
PLACEHOLDER_MARKERS = (
    "change-me",
    "changeme",
    "change_me",
    "placeholder",
    "example",
    "replace-me",
    "dummy",
)
# Database passwords that are defaults or the compose file's, refused in staging/prod.
DEFAULT_PASSWORDS = frozenset({"postgres", "password", "nexus", "secret", "admin", "root"})

_CLASSES = (
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
)
_OTHER_POOL = 33


def is_placeholder(secret: str) -> bool:
    lowered = secret.lower()
    return any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def estimated_bits(secret: str) -> float:
    """`length x log2(pool)`: the character-class estimate of rule 2."""
    chars = set(secret)
    pool = sum(size for members, size in _CLASSES if chars & members)
    if any(not any(c in members for members, _ in _CLASSES) for c in chars):
        pool += _OTHER_POOL
    return len(secret) * math.log2(pool) if pool else 0.0


def weakness(secret: str) -> str | None:
    """Why `secret` is refused (rules above), or None when it is acceptable."""
    if is_placeholder(secret):
        return "is a placeholder (contains a word like 'change-me' or 'example')"
    bits = estimated_bits(secret)
    if bits < MIN_SECRET_BITS:
        return (
            f"is too weak (about {int(bits)} bits by character classes, {MIN_SECRET_BITS} needed)"
        )
    counts = Counter(secret)
    if len(counts) < MIN_DISTINCT_CHARS or max(counts.values()) * 3 > len(secret):
        return "is too repetitive (needs 10 distinct characters, none over a third of it)"
    if _periodic(secret):
        return "is too repetitive (a shorter string repeated)"
    return None


def _periodic(secret: str) -> bool:
    """Whether `secret` is a shorter string repeated (the last copy possibly cut short)."""
    n = len(secret)
    return any(
        all(secret[i] == secret[i % period] for i in range(period, n))
        for period in range(1, n // 2 + 1)
    )


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback IP literal (127.0.0.0/8, ::1); anything else, including
    0.0.0.0, :: and every other host name, is reachable from outside."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
