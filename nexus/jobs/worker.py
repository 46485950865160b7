"""One attempt of one job: claim → work → complete, or classify the failure and record it.

Used by every job type. The work function may span several transactions (chunks); every
write it makes must be fenced by the claim (see `machine.still_holds`). Messages only name
a job: a duplicate or stale message finds nothing to claim and is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.errors import is_connection_error
from nexus.db.tx import transaction
from nexus.errors import NexusError, TerminalError, TransientError
from nexus.jobs import machine
from nexus.jobs.machine import Claim, JobType, LeaseLost

log = logging.getLogger(__name__)

# Writes to make atomically with the job's completion (same transaction, lease checked).
Finalize = Callable[[AsyncSession], Awaitable[None]]
# Work may return a Finalize; it must fence every write of its own by the claim.
Work = Callable[[async_sessionmaker[AsyncSession], Claim], Awaitable[Finalize | None]]
S = TypeVar("S")


@dataclass(frozen=True)
class Staged(Generic[S]):
    """Work with a first step that runs inside the claim's own transaction.

    The claim's UPDATE holds the job row, so `start`'s writes are fenced without a check
    of their own and cost no transaction of their own (the ingest worker marks its media
    `extracting` there). If `start` raises, the claim rolls back with it: the job stays
    pending for the scheduler to re-drive. `work` gets what `start` returned.
    """

    start: Callable[[AsyncSession, Claim], Awaitable[S]]
    work: Callable[[async_sessionmaker[AsyncSession], Claim, S], Awaitable[Finalize | None]]


@dataclass(frozen=True)
class JobError:
    code: str
    message: str
    terminal: bool


# Called in the transaction of the transition: outcome is "completed", "retry" or "failed".
OnFinish = Callable[[AsyncSession, Claim, str, JobError | None], Awaitable[None]]


class Outcome(StrEnum):
    NOOP = "noop"
    COMPLETED = "completed"
    RETRY = "retry_scheduled"
    FAILED = "failed"
    LEASE_LOST = "lease_lost"


@dataclass(frozen=True)
class JobPolicy:
    owner: str
    lease_seconds: float
    delays: Sequence[float]


def classify(exc: BaseException) -> tuple[bool, str, str]:
    """(terminal, code, message) for an exception raised by job work."""
    if isinstance(exc, TerminalError):
        return True, exc.code, exc.message
    if isinstance(exc, TransientError):
        return False, exc.code, exc.message
    if isinstance(exc, NexusError):
        return exc.kind.value in ("invalid", "not_found", "forbidden"), exc.code, exc.message
    if is_connection_error(exc):
        return False, "E_INTERNAL", "database unavailable during work"
    return False, "E_INTERNAL", f"unexpected {type(exc).__name__}"


async def run_job(
    sessionmaker: async_sessionmaker[AsyncSession],
    job: JobType,
    key: Mapping[str, Any],
    work: Work | Staged[Any],
    policy: JobPolicy,
    *,
    on_finish: OnFinish | None = None,
) -> Outcome:
    """Run one attempt. Database outages while claiming propagate (caller backs off)."""
    started: Any = None
    async with transaction(sessionmaker) as session:
        claim = await machine.claim(
            session, job, key, owner=policy.owner, lease_seconds=policy.lease_seconds
        )
        if claim is not None and isinstance(work, Staged):
            started = await work.start(session, claim)
    if claim is None:
        return Outcome.NOOP
    try:
        if isinstance(work, Staged):
            finalize = await work.work(sessionmaker, claim, started)
        else:
            finalize = await work(sessionmaker, claim)
        async with transaction(sessionmaker) as session:
            # complete() first: its fenced UPDATE locks the job row, so the finaliser's
            # writes can only commit while this attempt still holds the lease.
            await machine.complete(session, job, claim, actor=policy.owner)
            if finalize is not None:
                await finalize(session)
            if on_finish is not None:
                await on_finish(session, claim, "completed", None)
        return Outcome.COMPLETED
    except LeaseLost:
        log.warning("lease lost", extra={"job_type": job.name, "key": str(dict(key))})
        return Outcome.LEASE_LOST
    except Exception as exc:
        terminal, code, message = classify(exc)
        if not isinstance(exc, TerminalError | TransientError | NexusError):
            log.exception("job work raised", extra={"job_type": job.name})
        return await _record_failure(
            sessionmaker, job, claim, policy, code, message, terminal, on_finish
        )


async def _record_failure(
    sessionmaker: async_sessionmaker[AsyncSession],
    job: JobType,
    claim: Claim,
    policy: JobPolicy,
    code: str,
    message: str,
    terminal: bool,
    on_finish: OnFinish | None,
) -> Outcome:
    try:
        async with transaction(sessionmaker) as session:
            status = await machine.fail(
                session,
                job,
                claim,
                code=code,
                message=message,
                delays=policy.delays,
                terminal=terminal,
                actor=policy.owner,
            )
            if on_finish is not None:
                outcome = "failed" if status == "failed" else "retry"
                await on_finish(session, claim, outcome, JobError(code, message, terminal))
    except LeaseLost:
        return Outcome.LEASE_LOST
    return Outcome.FAILED if status == "failed" else Outcome.RETRY
