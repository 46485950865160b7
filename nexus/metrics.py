"""What the domain reports for metrics, without knowing how they are exported.

The processes implement `Recorder` with Prometheus (`runtime/metrics.py`); the domain
never imports a metrics library. Every label value passed here comes from a closed set
(job type names, job statuses, outcome names, the project's own topics), so the exported
series stay bounded whatever the input.

Job status changes made in a caller's transaction (creations, requeues and retries,
cancels) are noted on its session by the job code (`note_transition`) and counted by the
process's unit of work once the transaction committed (`noted_transitions`,
`count_transitions`), like the outbox rows it publishes: a rolled-back change is never
counted, and no route or handler counts by hand. The worker counts the transitions of
its own attempts (claim, outcome, rescue, release) where their outcome is known.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

# The job status a created job comes "from" in `nexus_job_transitions_total`.
CREATED = "none"
# Outcomes of a webhook delivery attempt (SPEC §10); anything else is counted as "other".
WEBHOOK_OUTCOMES = ("delivered", "retry", "dead_lettered")


class Recorder(Protocol):
    def job_transition(self, job_type: str, from_status: str, to_status: str) -> None:
        """A job moved from `from_status` (`CREATED` for a new job) to `to_status`."""

    def job_queued(self, job_type: str, seconds: float) -> None:
        """A job was claimed `seconds` after it became due (pending → running)."""

    def job_run(self, job_type: str, outcome: str, seconds: float) -> None:
        """One attempt (claim to its outcome) took `seconds`."""

    def job_retried(self, job_type: str) -> None:
        """A failed attempt was scheduled to be tried again."""

    def job_rescued(self, job_type: str, count: int) -> None:
        """`count` jobs whose lease expired were taken back from their worker."""

    def dead_lettered(self, topic: str) -> None:
        """A message of `topic` went to the dead-letter topic."""

    def webhook_delivery(self, outcome: str) -> None:
        """A webhook delivery attempt ended with `outcome` (one of `WEBHOOK_OUTCOMES`)."""


class NullRecorder:
    """Records nothing (tests and tools that do not export metrics)."""

    def job_transition(self, job_type: str, from_status: str, to_status: str) -> None:
        pass

    def job_queued(self, job_type: str, seconds: float) -> None:
        pass

    def job_run(self, job_type: str, outcome: str, seconds: float) -> None:
        pass

    def job_retried(self, job_type: str) -> None:
        pass

    def job_rescued(self, job_type: str, count: int) -> None:
        pass

    def dead_lettered(self, topic: str) -> None:
        pass

    def webhook_delivery(self, outcome: str) -> None:
        pass


NULL_RECORDER: Recorder = NullRecorder()


@dataclass(frozen=True)
class JobTransition:
    """One job status change, as `nexus_job_transitions_total` labels it."""

    job_type: str
    from_status: str  # `CREATED` for a new job
    to_status: str


_NOTED = "nexus.job_transitions"


def note_transition(
    session: AsyncSession, job_type: str, from_status: str | None, to_status: str
) -> None:
    """Remember that `session`'s transaction moved a job from `from_status` (None: it
    created the job) to `to_status`. Nothing is counted until a unit of work reports the
    committed transaction; a session without one (a tool, a test) counts nothing."""
    origin = CREATED if from_status is None else str(from_status)
    moved = JobTransition(job_type, origin, str(to_status))
    session.info.setdefault(_NOTED, []).append(moved)


def noted_transitions(session: AsyncSession) -> list[JobTransition]:
    """The transitions noted in this session's transaction, in order (count after commit)."""
    return list(session.info.get(_NOTED, []))


def count_transitions(recorder: Recorder, transitions: Iterable[JobTransition]) -> None:
    """Count committed transitions, one increment each."""
    for moved in transitions:
        recorder.job_transition(moved.job_type, moved.from_status, moved.to_status)
