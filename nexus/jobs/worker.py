"""One attempt of one job: claim → work → complete, or classify the failure and record it.

Used by every job type. The work function may span several transactions (chunks); every
write it makes must be fenced by the claim (see `machine.still_holds`). Messages only name
a job: a duplicate or stale message finds nothing to claim and is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.errors import is_connection_error
from nexus.db.tx import autocommit, transaction
from nexus.db.types import JsonObject
from nexus.errors import ErrorKind, JobFailure, NexusError
from nexus.jobs import machine
from nexus.jobs.machine import Claim, JobKey, JobType, LeaseLost, Rider

log = logging.getLogger(__name__)

# Writes to make atomically with the job's completion (same transaction, lease checked).
Finalize = Callable[[AsyncSession], Awaitable[None]]
# Work may return a Finalize (or, cheaper, a `Rider`: its writes ride in the completion's
# own statement); it must fence every write of its own by the claim.
Work = Callable[[async_sessionmaker[AsyncSession], Claim], Awaitable[Finalize | Rider | None]]


@dataclass(frozen=True)
class Staged:
    """Work with a first step that rides in the claim's own statement.

    `start` is a `Rider` of the claim: its writes are fenced by the claim without a check
    of their own and cost no round trip of their own (the ingest worker marks its media
    `extracting` there); nothing of it is written when the claim misses. `work` gets the
    rider's result row (None when it returned no row).
    """

    start: Rider
    work: Callable[
        [async_sessionmaker[AsyncSession], Claim, JsonObject | None],
        Awaitable[Finalize | Rider | None],
    ]


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


# Domain errors of these kinds raised by job work cannot be fixed by trying again.
_TERMINAL_KINDS = frozenset(
    {ErrorKind.INVALID, ErrorKind.NOT_FOUND, ErrorKind.FORBIDDEN, ErrorKind.UNAUTHENTICATED}
)


def classify(exc: BaseException) -> tuple[bool, str, str]:
    """(terminal, code, message) for an exception raised by job work."""
    if isinstance(exc, JobFailure):
        return exc.terminal, exc.code, exc.message
    if isinstance(exc, NexusError):
        return exc.kind in _TERMINAL_KINDS, exc.code, exc.message
    if is_connection_error(exc):
        return False, "E_INTERNAL", "database unavailable during work"
    return False, "E_INTERNAL", f"unexpected {type(exc).__name__}"


async def run_job(
    sessionmaker: async_sessionmaker[AsyncSession],
    job: JobType,
    key: JobKey,
    work: Work | Staged,
    policy: JobPolicy,
    *,
    on_finish: OnFinish | None = None,
) -> Outcome:
    """Run one attempt. Database outages while claiming propagate (caller backs off).

    Round trips are the worker's main cost besides the work itself, so the claim (with a
    `Staged` start) is one autocommit statement, and so is the completion when the work
    returns a `Rider`. A `Rider` completion does not call `on_finish` for "completed": the
    rider carries everything the completion writes."""
    async with autocommit(sessionmaker) as conn:
        claimed = await machine.claim_with(
            conn,
            job,
            key,
            owner=policy.owner,
            lease_seconds=policy.lease_seconds,
            rider=work.start if isinstance(work, Staged) else None,
        )
    if claimed is None:
        return Outcome.NOOP
    claim, started = claimed
    try:
        if isinstance(work, Staged):
            finalize = await work.work(sessionmaker, claim, started)
        else:
            finalize = await work(sessionmaker, claim)
        if isinstance(finalize, Rider):
            async with autocommit(sessionmaker) as conn:
                await machine.complete(conn, job, claim, actor=policy.owner, rider=finalize)
            return Outcome.COMPLETED
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
        if not isinstance(exc, NexusError):
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
