"""The state tables are data: every allowed move can be built, every other one cannot."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest

from nexus.db.transitions import IllegalTransition, StateTable, Transition, either
from nexus.jobs import machine
from nexus.jobs.states import JOB_STATES, JobStatus
from nexus.libraries.states import INVITE_STATES
from nexus.media import transitions as media
from nexus.media.states import MEDIA_STATES
from nexus.webhooks.states import DELIVERY_STATES

TABLES: list[StateTable[Any]] = [JOB_STATES, MEDIA_STATES, INVITE_STATES, DELIVERY_STATES]


def _states(table: StateTable[Any]) -> list[StrEnum]:
    enum = type(next(iter(table.entered_from)))
    return list(enum)


def _pairs(table: StateTable[Any]) -> list[tuple[StrEnum, StrEnum]]:
    return [(a, b) for a in _states(table) for b in _states(table)]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.table)
def test_every_allowed_move_builds_and_every_other_is_refused(table: StateTable[Any]) -> None:
    allowed = set(table.edges())
    assert allowed, "a table with no transitions"
    for src, to in _pairs(table):
        if (src, to) in allowed:
            built = Transition(table, frozenset({src}), to)
            assert built.guard() == f"{table.status_column} IN ('{src.value}')"
        else:
            with pytest.raises(IllegalTransition, match="not in the state table"):
                Transition(table, frozenset({src}), to)


def test_a_move_with_one_refused_source_is_refused_whole() -> None:
    with pytest.raises(IllegalTransition, match=r"\['pending'\] → failed"):
        Transition(JOB_STATES, frozenset({JobStatus.RUNNING, JobStatus.PENDING}), JobStatus.FAILED)


def test_a_move_needs_a_source() -> None:
    with pytest.raises(IllegalTransition, match="needs a from-state"):
        Transition(JOB_STATES, frozenset(), JobStatus.PENDING)


def test_the_job_table_says_what_the_machine_does() -> None:
    # What the code does: requeue of a pending job (attempts reset) ...
    assert JOB_STATES.allows(JobStatus.PENDING, JobStatus.PENDING)
    # ... and what nothing does: a pending job never fails without running.
    assert not JOB_STATES.allows(JobStatus.PENDING, JobStatus.FAILED)
    assert machine.REQUEUE.from_states == {
        JobStatus.PENDING,
        JobStatus.FAILED,
        JobStatus.COMPLETED,
        JobStatus.CANCELLED,
    }
    # Operator cancel: from pending or running only; a cancelled job is finished.
    assert machine.CANCEL.from_states == {JobStatus.PENDING, JobStatus.RUNNING}
    assert {src for src, to in JOB_STATES.edges() if to is JobStatus.CANCELLED} == {
        JobStatus.PENDING,
        JobStatus.RUNNING,
    }
    for finished in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        assert not JOB_STATES.allows(finished, JobStatus.CANCELLED)


def test_a_bound_job_machine_renders_the_guarded_update_on_its_table() -> None:
    bound = JOB_STATES.bound("ingest_jobs", ("media_id",))
    sql = machine.CLAIM.on(bound).update_sql(
        where=bound.key_sql(), guard="next_attempt_at <= now()", returning="attempts"
    )
    assert sql == (
        "UPDATE ingest_jobs SET status = 'running' WHERE (media_id = :key_media_id) "
        "AND status IN ('pending') AND (next_attempt_at <= now()) RETURNING attempts"
    )
    with pytest.raises(IllegalTransition, match="does not follow"):
        machine.CLAIM.on(MEDIA_STATES)  # type: ignore[arg-type]


def test_either_guards_on_both_branches_sources() -> None:
    sql = either("attempts > 3", machine.GIVE_UP, machine.RETRY).update_sql(
        where="id = :key_id", returning="status"
    )
    assert "SET status = CASE WHEN attempts > 3 THEN 'failed' ELSE 'pending' END" in sql
    assert "status IN ('running')" in sql


def test_media_riders_are_guarded_by_their_transition() -> None:
    started = media.start_cte("started", returning="id")
    assert "processing_status = 'extracting'" in started
    assert "processing_status IN ('extracting', 'pending')" in started
    assert "EXISTS (SELECT 1 FROM moved)" in started
    assert "processing_status IN ('extracting')" in media.still_extracting()
