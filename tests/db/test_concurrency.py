"""Races between two (or three) real transactions on a cloned database (SPEC §5, §6).

Interleavings are forced with locks, never with sleeps: the first transaction does its
work and keeps its locks, the second starts and we wait (by polling `pg_stat_activity`,
with a deadline) until it is blocked on a lock or done; only then does the first commit.
A third "gate" transaction holding a conflicting lock pauses the backfill worker in the
middle of a chunk. Every scenario is repeated with a seeded random choice of ordering
(first/second/free-running with small random jitter), and the exact outcome is asserted
each time. A deadlock surfaces as a database error (or a translated NexusError that no
assertion expects), so any deadlock fails the test.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.errors import NexusError
from nexus.jobs import machine
from nexus.jobs.machine import LeaseLost
from nexus.libraries import invites, service
from nexus.libraries.states import LibraryRole
from nexus.messaging.topics import Topics
from nexus.sharing import backfill, closure
from tests.support import factories as f
from tests.support.locks import lock_waiters

ROUNDS = 6
DEADLINE = 15.0

SM = async_sessionmaker[AsyncSession]
Op = Callable[[AsyncSession], Awaitable[Any]]


@pytest.fixture
def topics(settings: Settings) -> Topics:
    return Topics.from_settings(settings)


# ------------------------------------------------------------------------ harness


@dataclass
class Outcome:
    value: Any = None
    error: str | None = None  # the NexusError code

    @property
    def ok(self) -> bool:
        return self.error is None


async def _call(op: Op, session: AsyncSession) -> Outcome:
    try:
        return Outcome(value=await op(session))
    except NexusError as exc:
        return Outcome(error=exc.code)


async def _in_tx(sm: SM, op: Op) -> Outcome:
    """Run op in its own transaction: commit on success, roll back on a NexusError."""
    async with sm() as session:
        await session.begin()
        try:
            out = await _call(op, session)
        except BaseException:
            await session.rollback()
            raise
        if out.ok:
            await session.commit()
        else:
            await session.rollback()
        return out


async def _blocked_or_done(sm: SM, tasks: list[asyncio.Task[Any]], waiters: int = 1) -> bool:
    """Wait until `waiters` backends are blocked on a lock (True) or every task is done."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if all(t.done() for t in tasks):
            return False
        if await lock_waiters(sm) >= waiters:
            return True
        await asyncio.sleep(0.005)  # polling interval, not synchronisation
    raise AssertionError("neither blocked nor done before the deadline")


async def race(sm: SM, first: Op, second: Op) -> tuple[Outcome, Outcome, bool]:
    """first does its work holding its locks; second starts; once second is blocked (or
    finished) first commits. Returns both outcomes and whether second was blocked."""
    async with sm() as s1:
        await s1.begin()
        out1 = await _call(first, s1)
        task = asyncio.create_task(_in_tx(sm, second))
        try:
            blocked = await _blocked_or_done(sm, [task])
        finally:
            if out1.ok:
                await s1.commit()
            else:
                await s1.rollback()
    out2 = await asyncio.wait_for(task, DEADLINE)
    return out1, out2, blocked


async def free_race(sm: SM, a: Op, b: Op, rng: random.Random) -> tuple[Outcome, Outcome]:
    """Both at once, each after a small random jitter (randomisation, not synchronisation)."""

    async def go(op: Op) -> Outcome:
        await asyncio.sleep(rng.uniform(0, 0.01))
        return await _in_tx(sm, op)

    out_a, out_b = await asyncio.gather(go(a), go(b))
    return out_a, out_b


async def interleave(sm: SM, a: Op, b: Op, rng: random.Random) -> tuple[str, Outcome, Outcome]:
    """One round: a first, b first, or free-running; outcomes are returned as (a, b)."""
    mode = rng.choice(["a_first", "b_first", "free"])
    if mode == "a_first":
        out_a, out_b, _ = await race(sm, a, b)
    elif mode == "b_first":
        out_b, out_a, _ = await race(sm, b, a)
    else:
        out_a, out_b = await free_race(sm, a, b, rng)
    return mode, out_a, out_b


async def _no_violations(sm: SM) -> None:
    async with transaction(sm) as session:
        assert await f.closure_violations(session) == []


async def _scalar(sm: SM, sql: str, **params: Any) -> Any:
    async with transaction(sm) as session:
        return await session.scalar(text(sql), params)


# ---------------------------------------------------------------------- the world


async def _world(sm: SM, n_media: int = 3, *, b_joins_late: bool = False) -> dict[str, Any]:
    """Owner A of S with media; member B; invitee C with a pending invite.

    With `b_joins_late`, B became a member after the media were added (as after an
    accept): B has no edges yet, only the backfill would write them.
    """
    async with transaction(sm) as s:
        a, da = await f.account(s)
        b, db = await f.account(s)
        c, dc = await f.account(s)
        lib = (await service.create_library(s, a, "S")).id
        if not b_joins_late:
            await f.member(s, lib, b)
        ms = await f.owned_media(s, da, n=n_media)
        for m in ms:
            await service.add_media(s, a, lib, m)
        if b_joins_late:
            await f.member(s, lib, b)
        invite = await invites.create_invite(s, a, lib, c, LibraryRole.MEMBER)
    return {
        "a": a,
        "da": da,
        "b": b,
        "db": db,
        "c": c,
        "dc": dc,
        "s": lib,
        "media": ms,
        "invite": invite.id,
    }


def _remove_b(w: dict[str, Any]) -> Op:
    """A removes B from S."""

    async def op(session: AsyncSession) -> None:
        await service.remove_member(session, w["a"], w["s"], w["b"])

    return op


def _add_media(adder: uuid.UUID, lib: uuid.UUID, m: uuid.UUID) -> Op:
    async def op(session: AsyncSession) -> bool:
        return await service.add_media(session, adder, lib, m)

    return op


def _accept(w: dict[str, Any], topics: Topics) -> Op:
    async def op(session: AsyncSession) -> invites.AcceptResult:
        return await invites.accept_invite(
            session, w["c"], w["invite"], topics, request_id=None, correlation_id=None
        )

    return op


async def _count_backfill_outbox(sm: SM, topics: Topics, user: uuid.UUID) -> int:
    return int(
        await _scalar(
            sm,
            "SELECT count(*) FROM outbox WHERE topic = :t AND payload->>'user_id' = :u",
            t=topics.backfill,
            u=str(user),
        )
    )


async def _is_member(sm: SM, lib: uuid.UUID, user: uuid.UUID) -> bool:
    return bool(
        await _scalar(
            sm,
            "SELECT count(*) FROM memberships WHERE library_id = :l AND user_id = :u",
            l=lib,
            u=user,
        )
    )


async def _jobs_of(sm: SM, user: uuid.UUID) -> int:
    return int(
        await _scalar(
            sm, "SELECT count(*) FROM default_library_backfill_jobs WHERE user_id = :u", u=user
        )
    )


# ---------------------------------------------------------------------- invites


async def test_two_accepts_of_one_invite(sm_: SM, topics: Topics) -> None:
    for i in range(ROUNDS):
        rng = random.Random(100 + i)
        w = await _world(sm_)
        if rng.random() < 0.5:
            out1, out2, blocked = await race(sm_, _accept(w, topics), _accept(w, topics))
            assert blocked, "the second accept must wait for the invite lock"
        else:
            out1, out2 = await free_race(sm_, _accept(w, topics), _accept(w, topics), rng)
        assert out1.ok and out2.ok
        results = sorted([out1.value, out2.value], key=lambda r: r.idempotent)
        assert [r.idempotent for r in results] == [False, True]
        assert results[0].membership == results[1].membership is not None
        assert results[0].invite.status == results[1].invite.status == "accepted"
        assert {r.backfill_job_status for r in results} == {"pending"}
        assert await _is_member(sm_, w["s"], w["c"])
        assert await _jobs_of(sm_, w["c"]) == 1
        assert await _count_backfill_outbox(sm_, topics, w["c"]) == 1
    await _no_violations(sm_)


async def test_accept_racing_removal_of_another_member(sm_: SM, topics: Topics) -> None:
    """Both succeed in either order (they serialise on the library row): C is a member
    with a pending job; B is gone with its edges, default rows and job."""
    for i in range(ROUNDS):
        rng = random.Random(200 + i)
        w = await _world(sm_)
        async with transaction(sm_) as s:
            await f.backfill_job(s, w["db"], w["s"], w["b"])

        mode, acc, rem = await interleave(sm_, _accept(w, topics), _remove_b(w), rng)
        assert acc.ok and rem.ok, (mode, acc, rem)
        assert acc.value.idempotent is False and acc.value.backfill_job_status == "pending"
        assert await _is_member(sm_, w["s"], w["c"])
        assert not await _is_member(sm_, w["s"], w["b"])
        assert await _jobs_of(sm_, w["c"]) == 1
        assert await _jobs_of(sm_, w["b"]) == 0
        async with transaction(sm_) as s:
            assert {e for e in await f.edges(s) if e[0] == w["db"]} == set()
            assert await f.library_media_ids(s, w["db"]) == set()
    await _no_violations(sm_)


async def test_accept_racing_revoke_of_the_same_invite(sm_: SM, topics: Topics) -> None:
    """Exactly one wins; the loser gets 409 E_INVITE_NOT_PENDING. Accept won: member, job,
    one outbox row. Revoke won: no membership, no job, no outbox row."""
    for i in range(ROUNDS):
        rng = random.Random(300 + i)
        w = await _world(sm_)

        async def revoke(session: AsyncSession, w: dict[str, Any] = w) -> Any:
            return await invites.revoke_invite(session, w["a"], w["invite"])

        mode, acc, rev = await interleave(sm_, _accept(w, topics), revoke, rng)
        assert [acc.ok, rev.ok].count(True) == 1, (mode, acc, rev)
        loser = rev if acc.ok else acc
        assert loser.error == "E_INVITE_NOT_PENDING"
        status = await _scalar(
            sm_, "SELECT status FROM library_invitations WHERE id = :i", i=w["invite"]
        )
        if acc.ok:
            assert status == "accepted" and acc.value.idempotent is False
            assert await _is_member(sm_, w["s"], w["c"])
            assert await _jobs_of(sm_, w["c"]) == 1
            assert await _count_backfill_outbox(sm_, topics, w["c"]) == 1
        else:
            assert status == "revoked" and rev.value.idempotent is False
            assert not await _is_member(sm_, w["s"], w["c"])
            assert await _jobs_of(sm_, w["c"]) == 0
            assert await _count_backfill_outbox(sm_, topics, w["c"]) == 0


async def test_accept_racing_library_deletion(sm_: SM, topics: Topics) -> None:
    """Delete first: accept is 404 E_INVITE_NOT_FOUND. Accept first: it succeeds and the
    deletion then removes the membership and the job. Either way nothing is left."""
    for i in range(ROUNDS):
        rng = random.Random(400 + i)
        w = await _world(sm_)

        async def delete(session: AsyncSession, w: dict[str, Any] = w) -> None:
            await service.delete_library(session, w["a"], w["s"])

        mode, acc, dele = await interleave(sm_, _accept(w, topics), delete, rng)
        assert dele.ok, (mode, dele)
        assert acc.ok or acc.error == "E_INVITE_NOT_FOUND", (mode, acc)
        assert not await _is_member(sm_, w["s"], w["c"])
        assert await _jobs_of(sm_, w["c"]) == 0
        assert await _jobs_of(sm_, w["b"]) == 0
        async with transaction(sm_) as s:
            for d in (w["db"], w["dc"]):
                assert await f.library_media_ids(s, d) == set()
    await _no_violations(sm_)


# ------------------------------------------------------------------ media vs members


async def test_add_media_to_shared_racing_member_removal(sm_: SM) -> None:
    """Both succeed; B never keeps an edge or default row for the new media."""
    for i in range(ROUNDS):
        rng = random.Random(500 + i)
        w = await _world(sm_)
        async with transaction(sm_) as s:
            (m,) = await f.owned_media(s, w["da"])

        add = _add_media(w["a"], w["s"], m)
        mode, added, removed = await interleave(sm_, add, _remove_b(w), rng)
        assert added.ok and added.value is True and removed.ok, (mode, added, removed)
        async with transaction(sm_) as s:
            assert (w["da"], m, w["s"]) in await f.edges(s)
            assert {e for e in await f.edges(s) if e[0] == w["db"]} == set()
            assert await f.library_media_ids(s, w["db"]) == set()
        await _no_violations(sm_)


async def test_an_admin_adding_media_while_being_removed(sm_: SM) -> None:
    """B (admin) adds media while A removes B. If the removal commits first, B is no
    longer a member and the add is 404 E_LIBRARY_NOT_FOUND (it must not slip in with a
    stale authorisation); if the add commits first, it succeeds and B then loses the edge."""
    for i in range(ROUNDS):
        rng = random.Random(600 + i)
        w = await _world(sm_)
        async with transaction(sm_) as s:
            await service.set_member_role(s, w["a"], w["s"], w["b"], LibraryRole.ADMIN)
            (m,) = await f.owned_media(s, w["db"])

        add = _add_media(w["b"], w["s"], m)
        mode, added, removed = await interleave(sm_, add, _remove_b(w), rng)
        assert removed.ok, (mode, removed)
        if mode == "b_first":
            assert added.error == "E_LIBRARY_NOT_FOUND", (mode, added)
        else:
            assert added.ok or added.error == "E_LIBRARY_NOT_FOUND", (mode, added)
        in_s = m in await _lib_media(sm_, w["s"])
        assert in_s == added.ok
        async with transaction(sm_) as s:
            assert {e for e in await f.edges(s) if e[0] == w["db"]} == set()
            assert await f.library_media_ids(s, w["db"]) == {m}  # B's intrinsic only
        await _no_violations(sm_)


async def _lib_media(sm: SM, lib: uuid.UUID) -> set[uuid.UUID]:
    async with transaction(sm) as s:
        return await f.library_media_ids(s, lib)


async def test_add_to_another_library_racing_member_removal_keeps_the_default_row(
    sm_: SM,
) -> None:
    """m is in S (B has edge (dB, m, S)). A adds m to S2 (B is a member: new edge (dB, m,
    S2)) while B is removed from S (edge from S deleted, GC(dB, m)). The GC must not delete
    the default row the new edge justifies, whatever the order."""
    for i in range(ROUNDS):
        rng = random.Random(700 + i)
        w = await _world(sm_, n_media=1)
        (m,) = w["media"]
        async with transaction(sm_) as s:
            s2 = (await service.create_library(s, w["a"], "S2")).id
            await f.member(s, s2, w["b"])

        add = _add_media(w["a"], s2, m)
        mode, added, removed = await interleave(sm_, add, _remove_b(w), rng)
        assert added.ok and removed.ok, (mode, added, removed)
        async with transaction(sm_) as s:
            assert {e for e in await f.edges(s) if e[0] == w["db"]} == {(w["db"], m, s2)}
            assert await f.library_media_ids(s, w["db"]) == {m}, mode
        await _no_violations(sm_)


# ------------------------------------------------------------------------ backfill


async def _claimed(sm: SM, w: dict[str, Any]) -> machine.Claim:
    async with transaction(sm) as s:
        key = await f.backfill_job(s, w["db"], w["s"], w["b"])
    async with transaction(sm) as s:
        claim = await machine.claim(s, backfill.JOB, key, owner="test", lease_seconds=60)
    assert claim is not None
    return claim


async def _finish(sm: SM, claim: machine.Claim) -> str:
    """Complete the job as the worker would; 'gone' when revocation deleted it."""
    try:
        async with transaction(sm) as s:
            await machine.complete(s, backfill.JOB, claim, actor="test")
        return "completed"
    except LeaseLost:
        return "gone"


async def _gate_job_row(sm: SM, claim: machine.Claim) -> AsyncSession:
    """A transaction holding the job row: the worker blocks in `still_holds`, after it has
    locked the membership row for the chunk."""
    gate = sm()
    await gate.begin()
    await gate.execute(
        text(
            "SELECT 1 FROM default_library_backfill_jobs WHERE default_library_id = :d "
            "AND source_library_id = :s AND user_id = :u FOR UPDATE"
        ),
        {
            k: claim.key[c]
            for k, c in (("d", "default_library_id"), ("s", "source_library_id"), ("u", "user_id"))
        },
    )
    return gate


async def _gate_edge(sm: SM, d: uuid.UUID, m: uuid.UUID, s: uuid.UUID) -> AsyncSession:
    """A transaction holding an uncommitted edge (d, m, S): the worker's chunk blocks on it
    in its INSERT, after it has locked the chunk's library_media rows (FOR KEY SHARE)."""
    gate = sm()
    await gate.begin()
    await gate.execute(
        text("INSERT INTO default_library_closure_edges VALUES (:d, :m, :s)"),
        {"d": d, "m": m, "s": s},
    )
    return gate


async def _materialise_vs(
    sm: SM,
    claim: machine.Claim,
    other: Op,
    mode: str,
    gate_factory: Callable[[], Awaitable[AsyncSession]],
    rng: random.Random,
) -> Outcome:
    """Run the worker's materialise() against `other` in the given interleaving."""
    if mode == "other_first":
        async with sm() as s1:
            await s1.begin()
            out = await _call(other, s1)
            worker = asyncio.create_task(backfill.materialise(sm, claim, chunk_size=3))
            try:
                await _blocked_or_done(sm, [worker])
            finally:
                await (s1.commit() if out.ok else s1.rollback())
        await asyncio.wait_for(worker, DEADLINE)
        return out
    if mode == "worker_mid_chunk":
        gate = await gate_factory()
        try:
            worker = asyncio.create_task(backfill.materialise(sm, claim, chunk_size=3))
            assert await _blocked_or_done(sm, [worker]), "the worker must wait on the gate"
            other_task = asyncio.create_task(_in_tx(sm, other))
            await _blocked_or_done(sm, [other_task], waiters=2)
        finally:
            await gate.rollback()
            await gate.close()
        await asyncio.wait_for(worker, DEADLINE)
        return await asyncio.wait_for(other_task, DEADLINE)

    async def work() -> None:
        await asyncio.sleep(rng.uniform(0, 0.01))
        await backfill.materialise(sm, claim, chunk_size=3)

    async def go() -> Outcome:
        await asyncio.sleep(rng.uniform(0, 0.01))
        return await _in_tx(sm, other)

    _, out = await asyncio.gather(work(), go())
    return out


async def test_materialise_racing_member_removal(sm_: SM) -> None:
    """Strict revocation: whatever the interleaving, no edge (dB, *, S) and no default row
    of B survives the removal; the worker's job ends as gone (deleted with the membership)."""
    modes = ["other_first", "worker_mid_chunk", "free"]
    for i in range(ROUNDS):
        rng = random.Random(800 + i)
        mode = modes[i % 3] if i < 3 else rng.choice(modes)
        w = await _world(sm_, n_media=7, b_joins_late=True)
        claim = await _claimed(sm_, w)

        out = await _materialise_vs(
            sm_, claim, _remove_b(w), mode, lambda c=claim: _gate_job_row(sm_, c), rng
        )
        assert out.ok, (mode, out)
        assert await _finish(sm_, claim) == "gone"
        async with transaction(sm_) as s:
            assert {e for e in await f.edges(s) if e[0] == w["db"]} == set(), mode
            assert await f.library_media_ids(s, w["db"]) == set(), mode
        assert await _jobs_of(sm_, w["b"]) == 0
        await _no_violations(sm_)


async def test_remove_media_from_shared_racing_materialise(sm_: SM) -> None:
    """No edge survives for media no longer in S; every other media is materialised."""
    modes = ["other_first", "worker_mid_chunk", "free"]
    for i in range(ROUNDS):
        rng = random.Random(900 + i)
        mode = modes[i % 3] if i < 3 else rng.choice(modes)
        w = await _world(sm_, n_media=3, b_joins_late=True)  # one chunk of 3
        ordered = sorted(w["media"])
        victim = rng.choice(ordered[:-1]) if mode == "worker_mid_chunk" else rng.choice(ordered)
        claim = await _claimed(sm_, w)

        async def remove(
            session: AsyncSession, w: dict[str, Any] = w, m: uuid.UUID = victim
        ) -> None:
            await service.remove_media(session, w["a"], w["s"], m)

        out = await _materialise_vs(
            sm_,
            claim,
            remove,
            mode,
            lambda w=w, last=ordered[-1]: _gate_edge(sm_, w["db"], last, w["s"]),
            rng,
        )
        assert out.ok, (mode, out)
        assert await _finish(sm_, claim) == "completed"
        rest = set(w["media"]) - {victim}
        async with transaction(sm_) as s:
            assert {e for e in await f.edges(s) if e[0] == w["db"]} == {
                (w["db"], m, w["s"]) for m in rest
            }, mode
            assert await f.library_media_ids(s, w["db"]) == rest, mode
        await _no_violations(sm_)


@pytest.fixture
def sm_(sessionmaker: SM) -> SM:
    return sessionmaker


async def test_re_adding_media_racing_its_removal_from_shared(sm_: SM) -> None:
    """m is in S; B joined late (no edge for m yet). A re-adds m (idempotent, but it writes
    B's missing edge) while A removes m from S. Removal first: the re-add then adds m back
    (True) with edges for everyone. Re-add first: False, then the removal deletes every
    edge. Never an edge for media no longer in S (the removal locks the library row)."""
    for i in range(ROUNDS):
        rng = random.Random(1000 + i)
        w = await _world(sm_, n_media=1, b_joins_late=True)
        (m,) = w["media"]

        add = _add_media(w["a"], w["s"], m)

        async def remove(session: AsyncSession, w: dict[str, Any] = w, m: uuid.UUID = m) -> None:
            await service.remove_media(session, w["a"], w["s"], m)

        mode, added, removed = await interleave(sm_, add, remove, rng)
        assert added.ok and removed.ok, (mode, added, removed)
        in_s = m in await _lib_media(sm_, w["s"])
        async with transaction(sm_) as s:
            edges = {e for e in await f.edges(s) if e[2] == w["s"]}
        if in_s:
            assert added.value is True, mode
            assert edges == {(w["da"], m, w["s"]), (w["db"], m, w["s"])}, mode
        else:
            assert added.value is False, mode
            assert edges == set(), mode
        if mode == "b_first":
            assert in_s, mode
        await _no_violations(sm_)


async def test_materialise_racing_gc_of_another_source_keeps_the_default_row(sm_: SM) -> None:
    """B has m through S1 (edge (dB, m, S1)); B's backfill of S2 (which also holds m) is
    mid-chunk with edge (dB, m, S2) written but not committed when B is removed from S1
    (GC(dB, m)). The default row must survive: the new edge justifies it."""
    w = await _world(sm_, n_media=1)  # B has (dB, m, S) already
    (m,) = w["media"]
    async with transaction(sm_) as s:
        s2 = (await service.create_library(s, w["a"], "S2")).id
        await service.add_media(s, w["a"], s2, m)
        # `later` sorts after m, so the chunk writes m's edge before it meets the gate.
        later = uuid.UUID(int=(0xFFFFFFFF << 96) | uuid.uuid4().int >> 32)
        await s.execute(
            text("INSERT INTO media (id, kind, title) VALUES (:i, 'web_article', 'later')"),
            {"i": later},
        )
        await closure.add_to_default(s, w["da"], later)
        await service.add_media(s, w["a"], s2, later)
        await f.member(s, s2, w["b"])  # joins late: backfill pending
        key = await f.backfill_job(s, w["db"], s2, w["b"])
    async with transaction(sm_) as s:
        claim = await machine.claim(s, backfill.JOB, key, owner="t", lease_seconds=60)
    assert claim is not None
    assert m < later
    gate = await _gate_edge(sm_, w["db"], later, s2)  # the chunk stops after m's edge
    try:
        worker = asyncio.create_task(backfill.materialise(sm_, claim))
        assert await _blocked_or_done(sm_, [worker])

        removal = asyncio.create_task(_in_tx(sm_, _remove_b(w)))
        await _blocked_or_done(sm_, [removal], waiters=2)
    finally:
        await gate.rollback()
        await gate.close()
    await asyncio.wait_for(worker, DEADLINE)
    assert (await asyncio.wait_for(removal, DEADLINE)).ok
    await _finish(sm_, claim)
    async with transaction(sm_) as s:
        assert {e for e in await f.edges(s) if e[0] == w["db"]} == {
            (w["db"], m, s2),
            (w["db"], later, s2),
        }
        assert await f.library_media_ids(s, w["db"]) == {m, later}
