"""What the domain reports for metrics, without knowing how they are exported.

The processes implement `Recorder` with Prometheus (`runtime/metrics.py`); the domain
never imports a metrics library. Every label value passed here comes from a closed set
(job type names, job statuses, outcome names, the project's own topics), so the exported
series stay bounded whatever the input.
"""

from __future__ import annotations

from typing import Protocol

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
