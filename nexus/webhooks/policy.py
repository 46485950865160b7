"""What one delivery attempt's answer means, and when the next attempt runs (pure).

2xx → delivered. Network errors (connect, timeout, temporary DNS), 5xx, 408 and 429 →
retry after `base x 2^(attempt-1)` seconds capped at `max_seconds`, or after what the
receiver's `Retry-After` asks (delta-seconds or an HTTP date; capped the same way), until
`max_attempts` attempts were made → dead. Anything else (3xx, other 4xx, an address the
SSRF rules block, a URL that no longer resolves) → dead at once: repeating would not help.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

Kind = Literal["delivered", "retry", "dead"]
_RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class Backoff:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_seconds)
        return min(self.base_seconds * 2 ** max(attempt - 1, 0), self.max_seconds)


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now (RFC 9110: delta-seconds or an HTTP date); None
    when absent or unreadable (the normal back-off applies)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def from_status(status: int, headers: dict[str, str]) -> Outcome:
    if 200 <= status < 300:
        return Outcome("delivered", status)
    if status >= 500 or status in _RETRYABLE_4XX:
        lowered = {k.lower(): v for k, v in headers.items()}
        retry_after = parse_retry_after(lowered.get("retry-after"))
        return Outcome("retry", status, f"HTTP {status}", retry_after)
    return Outcome("dead", status, f"HTTP {status} (not retried)")


def final(outcome: Outcome, attempt: int, backoff: Backoff) -> Outcome:
    """A retry after the last allowed attempt is dead."""
    if outcome.kind == "retry" and attempt >= backoff.max_attempts:
        return Outcome("dead", outcome.status_code, f"{outcome.error}; attempts exhausted")
    return outcome
