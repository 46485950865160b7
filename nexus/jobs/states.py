"""The job state machine shared by backfill and ingest jobs (ARCHITECTURE §4).

`TRANSITIONS` is data the code obeys: every status write of `nexus.jobs.machine` is a
`nexus.db.transitions.Transition` of `JOB_STATES`, refused when built if this table does
not allow it (`tests/unit/test_state_tables.py` and `tests/db/test_state_tables.py` walk it).
"""

from __future__ import annotations

from enum import StrEnum

from nexus.db.transitions import StateTable


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by an operator (SPEC §10 "Cancel and retention")


# Finished: `finished_at` is set exactly in these (a CHECK of every job table).
TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# Requeue (operator, invite accept, media retry): every state but running goes back to
# pending with its attempts reset; a running job is left alone (a no-op). A state added
# to the enum is requeueable without touching this line.
REQUEUEABLE = frozenset(s for s in JobStatus if s is not JobStatus.RUNNING)

# to-state -> states it may be entered from.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.RUNNING: frozenset({JobStatus.PENDING}),  # claim
    JobStatus.COMPLETED: frozenset({JobStatus.RUNNING}),  # complete
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}),  # terminal or exhausted; rescue
    JobStatus.CANCELLED: frozenset({JobStatus.PENDING, JobStatus.RUNNING}),  # operator cancel
    # retry and rescue (running), requeue (REQUEUEABLE, pending itself included: attempts 0)
    JobStatus.PENDING: frozenset({JobStatus.RUNNING}) | REQUEUEABLE,
}

# The machine on no table yet: `JobType.states` binds it to each job table.
JOB_STATES: StateTable[JobStatus] = StateTable("<job table>", "status", (), TRANSITIONS)
