"""An operator's "retry this one row" (outbox rows, webhook deliveries): the outcome its
`operator_actions` row records, the same whether the HTTP route or the CLI asked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

# True: retried; False: the row exists but is not retryable now; None: no such row.
Retry = Callable[[AsyncSession], Awaitable[bool | None]]


def retry_outcome(retried: bool | None, not_retried: str) -> str:
    """`retried`, `not_retried` (the caller's word for "exists, not retryable now") or
    `not_found`."""
    return {True: "retried", False: not_retried, None: "not_found"}[retried]
