"""Operator audit rows written by routes: one `operator_actions` row per operator call.

`Audit` fills in what every row from a request shares (actor, key id, request id);
`Audit.refusals` writes the row for a refused call in its own transaction, since the
request's own unit of work rolls back; `audited_retry` is the "retry one parked thing"
shape shared by the outbox and webhook-delivery routes, `audited_cancel` the shape of the
two operator cancels.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from quart import g
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db.tx import transaction
from nexus.errors import NexusError, NotFound
from nexus.jobs.cancel import CancelRequest
from nexus.operators.retries import Retry, retry_outcome
from nexus.operators.service import OperatorIdentity, record_action
from web.state import nexus_state
from web.uow import unit_of_work


@dataclass(frozen=True)
class Audit:
    """The parts of one operator call's `operator_actions` row known before it runs."""

    operator: OperatorIdentity
    action: str
    target: Mapping[str, Any]
    details: Mapping[str, Any] | None = None

    async def record(
        self, session: AsyncSession, outcome: str, details: Mapping[str, Any] | None = None
    ) -> None:
        """Append the row in `session`'s transaction (`details` replaces the default)."""
        await record_action(
            session,
            actor=self.operator.name,
            action=self.action,
            target=self.target,
            outcome=outcome,
            operator_key_id=self.operator.key_id,
            details=self.details if details is None else details,
            request_id=g.request_id,
        )

    @asynccontextmanager
    async def refusals(
        self, caught: type[NexusError], outcome: Callable[[NexusError], str]
    ) -> AsyncIterator[None]:
        """Re-raise `caught` errors after recording them in a transaction of their own."""
        try:
            yield
        except caught as exc:
            async with transaction(nexus_state().sessionmaker) as session:
                await self.record(session, outcome(exc))
            raise


async def audited_retry(audit: Audit, retry: Retry, *, not_retried: str, missing: str) -> bool:
    """Run `retry` and its audit row in one unit of work; 404 `missing` when there is no
    such row."""
    async with unit_of_work() as uow:
        retried = await retry(uow.session)
        await audit.record(uow.session, retry_outcome(retried, not_retried))
    if retried is None:
        raise NotFound(missing)
    return retried


class Cancelled(Protocol):
    """What a cancel reports for its audit row."""

    @property
    def from_status(self) -> str: ...

    @property
    def lease_owner(self) -> str | None: ...


C = TypeVar("C", bound=Cancelled)
Reason = str | None | Callable[[], Awaitable[str | None]]


async def audited_cancel(
    audit: Audit, reason: Reason, cancel: Callable[[AsyncSession, CancelRequest], Awaitable[C]]
) -> C:
    """Run an operator cancel (asked by the audit's operator, with this request's ids) and
    its audit row in one unit of work: outcome `cancelled` with the status it left (and
    the lease owner it fenced out); a refusal, reading the reason included, is recorded
    with its code in a transaction of its own."""
    given: dict[str, Any] = {}
    try:
        why = await reason() if callable(reason) else reason
        if why:
            given["reason"] = why
        request = CancelRequest(
            requested_by=audit.operator.name,
            reason=why,
            request_id=g.request_id,
            correlation_id=g.correlation_id,
        )
        async with unit_of_work() as uow:
            result = await cancel(uow.session, request)
            details = {**given, "from_status": result.from_status}
            if result.lease_owner:
                details["lease_owner"] = result.lease_owner
            await audit.record(uow.session, "cancelled", details)
    except NexusError as exc:
        async with transaction(nexus_state().sessionmaker) as session:
            await audit.record(session, exc.code, given or None)
        raise
    return result
