"""Operator cancel of one job (SPEC §10 "Cancel and retention"), for every job type.

`machine.cancel` is the transition; this adds the operator's vocabulary: a missing job is
`NotFound` (the caller picks the code), a finished one (completed, failed or cancelled) is
409 `E_JOB_NOT_CANCELLABLE`, and the recorded message names who cancelled and why.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import Conflict, NotFound
from nexus.jobs import machine
from nexus.jobs.machine import Cancelled, JobKey, JobType


class CancelRequest(TypedDict):
    """Who asks for a cancel and why, and the ids its ledger row and events carry; every
    job type's cancel takes these as keywords (`**request`)."""

    requested_by: str
    reason: str | None
    request_id: str | None
    correlation_id: str | None


def cancel_message(requested_by: str, reason: str | None) -> str:
    """The job's `last_error_message` and the ledger row's message."""
    return f"cancelled by {requested_by}" + (f": {reason}" if reason else "")


async def cancel_job(
    session: AsyncSession,
    job: JobType,
    key: JobKey,
    *,
    not_found: str,
    actor: str | None = None,
    **request: Unpack[CancelRequest],
) -> Cancelled:
    """Cancel a pending or running job in the caller's transaction (with its ledger row,
    whose actor is `actor`, by default `operator:<requested_by>`).

    Raises `NotFound(not_found)` when there is no job, `Conflict(E_JOB_NOT_CANCELLABLE)`
    when it is finished already."""
    requested_by = request["requested_by"]
    try:
        done = await machine.cancel(
            session,
            job,
            key,
            actor=actor or f"operator:{requested_by}",
            message=cancel_message(requested_by, request["reason"]),
            request_id=request["request_id"],
            correlation_id=request["correlation_id"],
        )
    except machine.NotCancellable as exc:
        raise Conflict(
            "E_JOB_NOT_CANCELLABLE",
            f"only a pending or running job can be cancelled (it is {exc.status})",
            details={"status": exc.status},
        ) from None
    if done is None:
        raise NotFound(not_found)
    return done
