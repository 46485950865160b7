"""One attempt of one job: claim → work → complete, or classify the failure and record it.

Used by every job type. The work function may span several transactions (chunks); every
write it makes must be fenced by the claim (see `machine.still_holds`). Messages only name
a job: a duplicate or stale message finds nothing to claim and is a no-op.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus import tracing
from nexus.db.errors import is_connection_error
from nexus.db.tx import autocommit, transaction
from nexus.errors import ErrorKind, JobFailure, NexusError
from nexus.jobs import machine
from nexus.jobs.machine import Claim, JobType, LeaseLost, Rider
from nexus.jobs.states import JobStatus
from nexus.metrics import NULL_RECORDER, Recorder

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
        [async_sessionmaker[AsyncSession], Claim, dict[str, Any] | None],
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
    key: Mapping[str, Any],
    work: Work | Staged,
    policy: JobPolicy,
    *,
    on_finish: OnFinish | None = None,
    metrics: Recorder = NULL_RECORDER,
) -> Outcome:
    """Run one attempt; its transitions, wait and duration are reported to `metrics`.
    Database outages while claiming propagate (caller backs off).

    Round trips are the worker's main cost besides the work itself, so the claim (with a
    `Staged` start) is one autocommit statement, and so is the completion when the work
    returns a `Rider`. A `Rider` completion does not call `on_finish` for "completed": the
    rider carries everything the completion writes."""
    with tracing.span(f"job {job.name}") as span:
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
            span.set_attribute("nexus.job.outcome", Outcome.NOOP.value)
            return Outcome.NOOP
        claim, started = claimed
        metrics.job_transition(job.name, JobStatus.PENDING, JobStatus.RUNNING)
        if claim.queued_seconds is not None:
            metrics.job_queued(job.name, claim.queued_seconds)
        fields: dict[str, str | int] = {
            "job_type": job.name,
            "job_key": job_key(key),
            "attempt": claim.attempt,
        }
        began = time.perf_counter()
        # Lines logged during the attempt (fetch, extraction, failures) carry the job fields.
        with structlog.contextvars.bound_contextvars(**fields):
            outcome, error = await _attempt(
                sessionmaker, job, claim, started, work, policy, on_finish
            )
            _log_outcome(outcome, error, claim, fields, began)
        _count_outcome(metrics, job, outcome, time.perf_counter() - began)
        if span.is_recording():
            span.set_attributes({f"nexus.{name}": value for name, value in fields.items()})
            span.set_attribute("nexus.job.outcome", outcome.value)
        return outcome


# The transition each outcome of a claimed attempt made (a lost lease made none of its own).
_OUTCOME_TO = {
    Outcome.COMPLETED: JobStatus.COMPLETED,
    Outcome.RETRY: JobStatus.PENDING,
    Outcome.FAILED: JobStatus.FAILED,
}


def _count_outcome(metrics: Recorder, job: JobType, outcome: Outcome, seconds: float) -> None:
    metrics.job_run(job.name, outcome.value, seconds)
    to_status = _OUTCOME_TO.get(outcome)
    if to_status is not None:
        metrics.job_transition(job.name, JobStatus.RUNNING, to_status)
    if outcome is Outcome.RETRY:
        metrics.job_retried(job.name)


def job_key(key: Mapping[str, Any]) -> str:
    """The job's key as one log field: `name=value` pairs in key column order."""
    return ",".join(f"{name}={value}" for name, value in key.items())


def _log_outcome(
    outcome: Outcome,
    error: tuple[str, str] | None,
    claim: Claim,
    fields: dict[str, Any],
    began: float,
) -> None:
    extra: dict[str, Any] = {
        **fields,
        "outcome": outcome.value,
        "duration_ms": round((time.perf_counter() - began) * 1000, 2),
        "request_id": claim.request_id,
        "correlation_id": claim.correlation_id,
    }
    if error is not None:
        extra["error_code"], extra["error_message"] = error
    log.info("job %s", outcome.value, extra=extra)


async def _attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
    job: JobType,
    claim: Claim,
    started: dict[str, Any] | None,
    work: Work | Staged,
    policy: JobPolicy,
    on_finish: OnFinish | None,
) -> tuple[Outcome, tuple[str, str] | None]:
    """The attempt after its claim: (outcome, (error code, message) when it failed)."""
    try:
        if isinstance(work, Staged):
            finalize = await work.work(sessionmaker, claim, started)
        else:
            finalize = await work(sessionmaker, claim)
        if isinstance(finalize, Rider):
            with tracing.span(f"complete {job.name}"):
                async with autocommit(sessionmaker) as conn:
                    await machine.complete(conn, job, claim, actor=policy.owner, rider=finalize)
            return Outcome.COMPLETED, None
        with tracing.span(f"complete {job.name}"):
            await _complete(sessionmaker, job, claim, finalize, policy, on_finish)
        return Outcome.COMPLETED, None
    except LeaseLost:
        return Outcome.LEASE_LOST, None
    except Exception as exc:
        terminal, code, message = classify(exc)
        if not isinstance(exc, NexusError):
            log.exception("job work raised")
        outcome = await _record_failure(
            sessionmaker, job, claim, policy, code, message, terminal, on_finish
        )
        return outcome, (code, message)


async def _complete(
    sessionmaker: async_sessionmaker[AsyncSession],
    job: JobType,
    claim: Claim,
    finalize: Finalize | None,
    policy: JobPolicy,
    on_finish: OnFinish | None,
) -> None:
    async with transaction(sessionmaker) as session:
        # complete() first: its fenced UPDATE locks the job row, so the finaliser's
        # writes can only commit while this attempt still holds the lease.
        await machine.complete(session, job, claim, actor=policy.owner)
        if finalize is not None:
            await finalize(session)
        if on_finish is not None:
            await on_finish(session, claim, "completed", None)


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
