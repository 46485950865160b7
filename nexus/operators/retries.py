"""An operator's "retry this one row" with its audit row (outbox rows, webhook deliveries).

The HTTP routes and the CLI share it: the same outcome names in `operator_actions`
whichever way the operator asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from nexus.operators.service import record_action

# True: retried; False: the row exists but is not retryable now; None: no such row.
Retry = Callable[[AsyncSession], Awaitable[bool | None]]


async def audited_retry(
    session: AsyncSession,
    retry: Retry,
    *,
    actor: str,
    action: str,
    target: Mapping[str, Any],
    not_retried: str,
    operator_key_id: uuid.UUID | None = None,
    request_id: str | None = None,
) -> bool | None:
    """Run `retry` and append its `operator_actions` row (outcome `retried`, `not_retried`
    or `not_found`) in the caller's transaction; what `retry` returned."""
    retried = await retry(session)
    await record_action(
        session,
        actor=actor,
        action=action,
        target=target,
        outcome={True: "retried", False: not_retried, None: "not_found"}[retried],
        operator_key_id=operator_key_id,
        request_id=request_id,
    )
    return retried
