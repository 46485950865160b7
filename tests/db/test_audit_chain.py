"""Tamper-evident ledgers (issue #11.8, SPEC §10 "Audit"): `operator_actions` is one hash
chain, `job_events` one chain per job key; `nexus ops audit verify` finds edited and
deleted rows; concurrent inserts still make one straight chain."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.audit.chain import row_hash, verify
from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.ingest import jobs as ingest_jobs
from nexus.jobs import machine
from nexus.messaging.topics import Topics
from nexus.operators.service import record_action
from tests.support import factories as f
from tests.support.cli import run_ops
from tests.support.locks import wait_until_blocked

Sm = async_sessionmaker[AsyncSession]


async def _action(sm: Sm, n: int) -> None:
    async with transaction(sm) as s:
        await record_action(s, actor=f"op{n}", action="test.action", target={"n": n}, outcome="ok")


async def _ingest_history(sm: Sm, settings: Settings) -> uuid.UUID:
    """A media whose ingest job went pending → running → completed (three ledger rows)."""
    topics = Topics.from_settings(settings)
    async with transaction(sm) as s:
        (media_id,) = await f.media(s)
        await ingest_jobs.enqueue(
            s, media_id, topics, actor="test", request_id="r", correlation_id="c"
        )
    async with transaction(sm) as s:
        claim = await machine.claim(
            s, ingest_jobs.JOB, {"media_id": media_id}, owner="w1", lease_seconds=30
        )
        assert claim is not None
    async with transaction(sm) as s:
        await machine.complete(s, ingest_jobs.JOB, claim, actor="w1")
    return media_id


async def _verify(sm: Sm) -> Any:
    async with sm() as s:
        conn = await s.connection()
        return await verify(conn)


async def _cli(settings: Settings, *args: str) -> tuple[int, list[str]]:
    code, lines, _ = await run_ops(settings, "audit", "verify", *args, deadline_s=60)
    return code, lines


async def test_rows_are_chained_when_inserted(sessionmaker: Sm, settings: Settings) -> None:
    for n in range(3):
        await _action(sessionmaker, n)
    media_id = await _ingest_history(sessionmaker, settings)
    async with sessionmaker() as s:
        actions = (
            await s.execute(text("SELECT prev_hash, hash FROM operator_actions ORDER BY id"))
        ).all()
        events = (
            await s.execute(
                text(
                    "SELECT prev_hash, hash, to_status FROM job_events "
                    "WHERE job_key->>'media_id' = :m ORDER BY id"
                ),
                {"m": str(media_id)},
            )
        ).all()
    assert actions[0].prev_hash is None
    assert [a.prev_hash for a in actions[1:]] == [a.hash for a in actions[:-1]]
    assert [e.to_status for e in events] == ["pending", "running", "completed"]
    assert events[0].prev_hash is None
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert len({a.hash for a in actions} | {e.hash for e in events}) == 6


async def test_an_untouched_ledger_verifies_clean(sessionmaker: Sm, settings: Settings) -> None:
    for n in range(3):
        await _action(sessionmaker, n)
    await _ingest_history(sessionmaker, settings)
    await _ingest_history(sessionmaker, settings)
    report = await _verify(sessionmaker)
    assert report.problems == []
    assert report.rows == {"operator_actions": 3, "job_events": 6}
    assert report.chains == {"operator_actions": 1, "job_events": 2}
    code, lines = await _cli(settings)
    assert code == 0, lines
    assert json.loads(lines[-1])["clean"] is True


async def test_verify_names_an_edited_and_a_deleted_row(
    sessionmaker: Sm, settings: Settings
) -> None:
    for n in range(4):
        await _action(sessionmaker, n)
    media_id = await _ingest_history(sessionmaker, settings)
    async with transaction(sessionmaker) as s:
        ids = (await s.scalars(text("SELECT id FROM operator_actions ORDER BY id"))).all()
        edited = ids[1]
        await s.execute(
            text("UPDATE operator_actions SET outcome = 'forged' WHERE id = :i"), {"i": edited}
        )
        events = (
            await s.scalars(
                text("SELECT id FROM job_events WHERE job_key->>'media_id' = :m ORDER BY id"),
                {"m": str(media_id)},
            )
        ).all()
        await s.execute(text("DELETE FROM job_events WHERE id = :i"), {"i": events[1]})

    code, lines = await _cli(settings)

    assert code == 1
    problems = lines[:-1]
    assert json.loads(lines[-1])["problems"] == 2 == len(problems)
    assert problems[0].startswith(f"operator_actions id {edited}: edited")
    assert f"id {events[2]}: missing_before" in problems[1]
    assert f"rows between id {events[0]} and id {events[2]} were deleted" in problems[1]
    assert str(media_id) in problems[1]


async def test_verify_sees_a_rewritten_hash_and_a_deleted_chain_start(
    sessionmaker: Sm, settings: Settings
) -> None:
    """Recomputing an edited row's own hash moves the evidence to the next link; deleting
    the first rows of a chain leaves a first row that points at nothing."""
    for n in range(3):
        await _action(sessionmaker, n)
    media_id = await _ingest_history(sessionmaker, settings)
    async with transaction(sessionmaker) as s:
        first = (await s.execute(text("SELECT * FROM operator_actions ORDER BY id LIMIT 1"))).one()
        forged = row_hash(
            "operator_actions",
            None,
            [str(first.id), None, first.actor, first.action, '{"n": "0"}', "forged", None, None],
        )
        await s.execute(
            text("UPDATE operator_actions SET outcome = 'forged', hash = :h WHERE id = :i"),
            {"h": forged, "i": first.id},
        )
        await s.execute(
            text(
                "DELETE FROM job_events WHERE id = (SELECT min(id) FROM job_events "
                "WHERE job_key->>'media_id' = :m)"
            ),
            {"m": str(media_id)},
        )
    kinds = {(p.table, p.kind) for p in (await _verify(sessionmaker)).problems}
    assert ("operator_actions", "edited") in kinds  # its `at` was not part of the forgery
    assert ("operator_actions", "missing_before") in kinds
    assert ("job_events", "chain_start_missing") in kinds


async def test_concurrent_inserts_make_one_chain_in_id_order(sessionmaker: Sm) -> None:
    """T1 holds the chain (an insert, not committed); T2 draws its id and waits; T1 inserts
    again and commits. T2 must link to T1's last row and sort after it."""
    async with sessionmaker() as first:
        await first.begin()
        await record_action(first, actor="t1", action="a", target={}, outcome="ok")
        second = asyncio.create_task(_action(sessionmaker, 2))
        await wait_until_blocked(sessionmaker, second)
        await record_action(first, actor="t1", action="b", target={}, outcome="ok")
        await first.commit()
    await second
    many = [asyncio.create_task(_action(sessionmaker, n)) for n in range(10, 20)]
    await asyncio.gather(*many)
    async with sessionmaker() as s:
        actors = (await s.scalars(text("SELECT actor FROM operator_actions ORDER BY id"))).all()
    assert actors[:3] == ["t1", "t1", "op2"]
    report = await _verify(sessionmaker)
    assert report.problems == [] and report.rows["operator_actions"] == 13


async def test_a_recorded_head_reveals_a_deleted_tail(sessionmaker: Sm, settings: Settings) -> None:
    """Deleting the newest rows leaves a clean-looking chain; the head kept from an earlier
    run does not."""
    for n in range(3):
        await _action(sessionmaker, n)
    code, lines = await _cli(settings)
    head = json.loads(lines[-1])["heads"]["operator_actions"]
    anchor = f"{head['id']}:{head['hash']}"
    await _action(sessionmaker, 3)
    code, lines = await _cli(settings, "--expect-head", anchor)
    assert code == 0, lines  # the chain grew past the head: fine
    async with transaction(sessionmaker) as s:
        await s.execute(text("DELETE FROM operator_actions WHERE id >= :i"), {"i": head["id"]})
    code, lines = await _cli(settings)
    assert code == 0  # without the anchor the shorter chain looks intact
    code, lines = await _cli(settings, "--expect-head", anchor)
    assert code == 1
    assert lines[0] == (
        f"operator_actions id {head['id']}: anchor_missing: the recorded head is gone: "
        "rows were deleted"
    )
    code, _ = await _cli(settings, "--expect-head", "12:nothex")
    assert code == 2


async def test_inserts_under_a_snapshot_isolation_are_refused(sessionmaker: Sm) -> None:
    """Their head read would be stale (a fork): only READ COMMITTED may append."""
    async with sessionmaker() as s:
        await s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        with pytest.raises(DBAPIError, match="hash-chained"):
            await record_action(s, actor="x", action="a", target={}, outcome="ok")
        await s.rollback()
