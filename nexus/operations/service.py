"""Create, read and run background operations.

An operation is requested by a route (or the CLI) with `create`: one `operations` row in
state pending, its ledger row and the outbox message that names it, in the caller's
transaction. The agents run it as a job (`run_job` with `make_work`): the kind's `run`
processes the work in steps, each step one transaction that renews the lease, does a
bounded amount of work and saves `progress` and `checkpoint` fenced by the lease, so a
rescued or retried attempt resumes where the last committed step stopped. The completion
writes `result`; `on_finish` writes the summary audit row and announces the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.errors import TerminalError
from nexus.jobs import ledger, outbox
from nexus.jobs.machine import Claim, DueJob
from nexus.jobs.states import JobStatus
from nexus.jobs.worker import Finalize, JobError, OnFinish, Work
from nexus.messaging.messages import DomainEvent
from nexus.messaging.topics import Topics
from nexus.metrics import note_transition
from nexus.operations.jobs import JOB, TABLE, request_message
from nexus.operations.kinds import kind_of
from nexus.operations.steps import OperationRow, RunContext, UnitOfWork
from nexus.operators.service import record_action


async def create(
    session: AsyncSession,
    *,
    kind: str,
    params: Mapping[str, Any],
    requested_by: str,
    operator_key_id: uuid.UUID | None,
    topics: Topics,
    request_id: str | None,
    correlation_id: str | None,
) -> OperationRow:
    """A pending operation, its ledger row and its message, in the caller's transaction."""
    kind_of(kind)  # a kind nobody can run is a bug of the caller
    row = (
        await session.execute(
            insert(TABLE)
            .values(
                kind=kind,
                params=dict(params),
                requested_by=requested_by[:255],
                operator_key_id=operator_key_id,
                request_id=request_id,
                correlation_id=correlation_id,
                dispatched_at=func.now(),  # its message is written below (outbox)
            )
            .returning(*TABLE.c)
        )
    ).one()
    operation = OperationRow.of(row)
    await ledger.record(
        session,
        job_type=JOB.name,
        key={"id": operation.id},
        from_status=None,
        to_status=JobStatus.PENDING.value,
        attempt=0,
        actor=requested_by,
        request_id=request_id,
        correlation_id=correlation_id,
    )
    note_transition(session, JOB.name, None, JobStatus.PENDING)
    message = request_message(DueJob.of(JOB, row))
    await outbox.enqueue(session, topics.operations, message.key, message)
    return operation


async def get(session: AsyncSession, operation_id: uuid.UUID) -> OperationRow | None:
    row = (await session.execute(select(TABLE).where(TABLE.c.id == operation_id))).one_or_none()
    return None if row is None else OperationRow.of(row)


@dataclass(frozen=True)
class OperationDeps:
    topics: Topics
    unit_of_work: UnitOfWork
    chunk_size: int
    sleep: Callable[[float], Awaitable[None]]


def make_work(deps: OperationDeps) -> Work:
    """The job work of one attempt: run the operation's kind, then store its result."""

    async def work(sessionmaker: async_sessionmaker[AsyncSession], claim: Claim) -> Finalize | None:
        async with sessionmaker() as session:
            operation = await get(session, claim.key["id"])
        if operation is None:  # claimed a moment ago: only a bug deletes it meanwhile
            raise TerminalError("E_NOT_FOUND", "operation row vanished")
        kind = kind_of(operation.kind)
        context = RunContext(
            operation=operation,
            claim=claim,
            unit_of_work=deps.unit_of_work,
            topics=deps.topics,
            chunk_size=deps.chunk_size,
            sleep=deps.sleep,
        )
        result = await kind.run(context)

        async def store_result(session: AsyncSession) -> None:
            # After complete(): the row is locked by this transaction and completed.
            await session.execute(
                update(TABLE).where(TABLE.c.id == operation.id).values(result=result)
            )

        return store_result

    return work


def on_finish(topics: Topics) -> OnFinish:
    """Audit row (action = kind) and `operation.completed|failed` event, in the
    transaction of the final transition; retries are neither audited nor announced."""

    async def finish(
        session: AsyncSession, claim: Claim, status: str, error: JobError | None
    ) -> None:
        if status == "retry":
            return
        operation = await get(session, claim.key["id"])
        if operation is None:
            return
        details: dict[str, Any] = {"operation_id": str(operation.id), **operation.progress}
        if error is not None:
            details["error"] = {"code": error.code, "message": error.message}
        try:
            target = kind_of(operation.kind).audit_target(operation.params)
        except TerminalError:
            target = {"operation_id": operation.id}
        await record_action(
            session,
            actor=operation.requested_by,
            action=operation.kind,
            target=target,
            outcome=status,
            operator_key_id=operation.operator_key_id,
            details=details,
            request_id=operation.request_id,
        )
        event = DomainEvent(
            event=f"operation.{status}",
            entity_id=str(operation.id),
            data={"kind": operation.kind, "progress": operation.progress},
            request_id=claim.request_id,
            correlation_id=claim.correlation_id,
        )
        await outbox.enqueue(session, topics.events, event.key, event)

    return finish
