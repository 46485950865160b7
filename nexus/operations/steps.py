"""What a kind of operation is given to run, and the shapes it reads and writes.

A kind's `run` works in steps: each step is one transaction opened with
`context.unit_of_work()`, starts with `context.begin_step` (renews the lease, reads the
row as the last committed step left it) and ends with `context.save_step` (progress and
checkpoint, fenced by the lease). A step must be idempotent given the checkpoint it read:
an attempt that dies mid-step leaves nothing of the step behind, and the next attempt
repeats it from the same checkpoint.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.jobs import machine
from nexus.jobs.machine import Claim, LeaseLost
from nexus.jobs.states import JobStatus
from nexus.messaging.topics import Topics
from nexus.operations.jobs import JOB, TABLE

# One transaction whose outbox rows are published after commit (the agents' unit of work).
UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(frozen=True)
class OperationRow:
    """An `operations` row as the domain reads it."""

    id: uuid.UUID
    kind: str
    status: str
    params: dict[str, Any]
    progress: dict[str, Any]
    checkpoint: dict[str, Any]
    result: dict[str, Any] | None
    requested_by: str
    operator_key_id: uuid.UUID | None
    attempts: int
    last_error_code: str | None
    last_error_message: str | None
    request_id: str | None
    correlation_id: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> OperationRow:
        m = row._mapping
        return cls(**{name: m[name] for name in cls.__dataclass_fields__})

    def public(self) -> dict[str, Any]:
        """What operators see (API and CLI): no lease, no checkpoint; `error` is the last
        attempt's failure (a pending operation with one is waiting for its retry)."""
        error = (
            {"code": self.last_error_code, "message": self.last_error_message}
            if self.last_error_code is not None
            else None
        )
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "params": self.params,
            "progress": self.progress,
            "result": self.result,
            "error": error,
            "attempts": self.attempts,
            "requested_by": self.requested_by,
            "request_id": self.request_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class Step:
    """One step's writes: the new public counters and where the next step resumes."""

    progress: dict[str, Any]
    checkpoint: dict[str, Any]


@dataclass(frozen=True)
class RunContext:
    """What a kind's `run` needs: the row as claimed, its claim, and how to save a step."""

    operation: OperationRow
    claim: Claim
    unit_of_work: UnitOfWork
    topics: Topics
    chunk_size: int
    sleep: Callable[[float], Awaitable[None]]

    async def begin_step(self, session: AsyncSession) -> OperationRow:
        """Renew the lease (locks the row; `LeaseLost` when it was taken away) and read the
        row as the last committed step left it."""
        if not await machine.renew_lease(session, JOB, self.claim):
            raise LeaseLost(f"operation {self.operation.id}: lease lost between steps")
        row = (await session.execute(select(TABLE).where(TABLE.c.id == self.operation.id))).one()
        return OperationRow.of(row)

    async def wait(self, seconds: float) -> None:
        """Wait between steps (rate limits) without losing the lease: a wait longer than a
        third of the lease is cut into slices, the lease renewed after each."""
        remaining = max(0.0, seconds)
        lease = self.claim.lease_seconds or float("inf")
        while True:
            pause = min(remaining, lease / 3)
            await self.sleep(pause)
            remaining -= pause
            if remaining <= 0:
                return
            async with self.unit_of_work() as session:
                if not await machine.renew_lease(session, JOB, self.claim):
                    raise LeaseLost(f"operation {self.operation.id}: lease lost while waiting")

    async def save_step(self, session: AsyncSession, step: Step) -> None:
        """Save progress and checkpoint in the step's transaction, fenced by the lease."""
        saved = await session.scalar(
            update(TABLE)
            .where(
                TABLE.c.id == self.operation.id,
                TABLE.c.status == JobStatus.RUNNING.value,
                TABLE.c.lease_token == self.claim.lease_token,
            )
            .values(progress=step.progress, checkpoint=step.checkpoint)
            .returning(TABLE.c.id)
        )
        if saved is None:
            raise LeaseLost(f"operation {self.operation.id}: lease lost saving a step")


@dataclass(frozen=True)
class Kind:
    """A kind of operation: how to run it, its result, and the target of its audit rows."""

    name: str
    run: Callable[[RunContext], Awaitable[dict[str, Any]]]
    audit_target: Callable[[Mapping[str, Any]], dict[str, Any]]
