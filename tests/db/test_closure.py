"""Closure edges, intrinsics, GC and read access, scenario by scenario (SPEC §5, §6)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.jobs import machine
from nexus.libraries import service
from nexus.sharing import backfill, closure
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.db import rows


async def _intrinsics(session: AsyncSession) -> set[tuple[uuid.UUID, uuid.UUID]]:
    rows = await session.execute(
        text("SELECT default_library_id, media_id FROM default_library_intrinsics")
    )
    return {(r[0], r[1]) for r in rows}


async def _jobs(session: AsyncSession) -> set[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    """Every backfill job's key."""
    keys = ", ".join(jobs.KEY_COLUMNS)
    return {(r[0], r[1], r[2]) for r in await rows(session, f"SELECT {keys} FROM {jobs.TABLE}")}


async def _world(session: AsyncSession) -> dict[str, Any]:
    """Alice owns S (and S2); Bob is a member of S."""
    alice, da = await f.account(session)
    bob, db = await f.account(session)
    s = (await service.create_library(session, alice, "S")).id
    await f.member(session, s, bob)
    return {"alice": alice, "da": da, "bob": bob, "db": db, "s": s}


async def _ok(session: AsyncSession) -> None:
    assert await f.closure_violations(session) == []


# ------------------------------------------------------------------ default library


async def test_add_and_remove_in_a_default_library(session: AsyncSession) -> None:
    w = await _world(session)
    (m,) = await f.media(session)
    await closure.add_to_default(session, w["da"], m)  # as ingestion does
    assert await _intrinsics(session) == {(w["da"], m)}
    assert m in await f.library_media_ids(session, w["da"])
    assert await closure.can_read_media(session, w["alice"], m)
    assert not await closure.can_read_media(session, w["bob"], m)
    await service.remove_media(session, w["alice"], w["da"], m)
    assert await _intrinsics(session) == set()
    assert await f.library_media_ids(session, w["da"]) == set()
    assert not await closure.can_read_media(session, w["alice"], m)
    await _ok(session)


# ------------------------------------------------------------------- shared library


async def test_add_to_shared_writes_an_edge_and_default_row_per_member(
    session: AsyncSession,
) -> None:
    w = await _world(session)
    (m,) = await f.owned_media(session, w["da"])
    assert await service.add_media(session, w["alice"], w["s"], m) is True
    assert await f.edges(session) == {(w["da"], m, w["s"]), (w["db"], m, w["s"])}
    assert m in await f.library_media_ids(session, w["s"])
    assert m in await f.library_media_ids(session, w["db"])
    assert await closure.can_read_media(session, w["bob"], m)
    await _ok(session)

    # Removing from S: edges gone; Bob's row GC'd; Alice's stays (intrinsic).
    await service.remove_media(session, w["alice"], w["s"], m)
    assert await f.edges(session) == set()
    assert await f.library_media_ids(session, w["s"]) == set()
    assert await f.library_media_ids(session, w["db"]) == set()
    assert await f.library_media_ids(session, w["da"]) == {m}
    assert not await closure.can_read_media(session, w["bob"], m)
    assert await closure.can_read_media(session, w["alice"], m)
    await _ok(session)


async def test_removing_from_default_keeps_a_row_an_edge_justifies(session: AsyncSession) -> None:
    w = await _world(session)
    (m,) = await f.owned_media(session, w["da"])
    await service.add_media(session, w["alice"], w["s"], m)
    await service.remove_media(session, w["alice"], w["da"], m)
    assert await _intrinsics(session) == set()
    assert await f.library_media_ids(session, w["da"]) == {m}  # the edge justifies it
    assert await closure.can_read_media(session, w["alice"], m)
    await _ok(session)
    # Repeating it is not an error: the row is still there.
    await service.remove_media(session, w["alice"], w["da"], m)
    await service.remove_media(session, w["alice"], w["s"], m)
    assert await f.library_media_ids(session, w["da"]) == set()
    assert not await closure.can_read_media(session, w["alice"], m)
    await _ok(session)


async def test_an_intrinsic_added_by_the_member_survives_removal_from_shared(
    session: AsyncSession,
) -> None:
    w = await _world(session)
    (m,) = await f.owned_media(session, w["da"])
    await service.add_media(session, w["alice"], w["s"], m)
    await service.add_media(session, w["bob"], w["db"], m)  # Bob keeps it
    await service.remove_media(session, w["alice"], w["s"], m)
    assert await f.library_media_ids(session, w["db"]) == {m}
    assert await closure.can_read_media(session, w["bob"], m)
    await _ok(session)


# -------------------------------------------------------------------- membership


async def test_member_removal_deletes_edges_gcs_rows_and_deletes_the_job(
    session: AsyncSession,
) -> None:
    w = await _world(session)
    s, bob, db = w["s"], w["bob"], w["db"]
    m_shared, m_kept, m_other = await f.owned_media(session, w["da"], n=3)
    for m in (m_shared, m_kept, m_other):
        await service.add_media(session, w["alice"], s, m)
    await service.add_media(session, bob, db, m_kept)  # intrinsic for Bob
    # m_other is also in S2, of which Bob is a member: another edge.
    carol, _ = await f.account(session)
    s2 = (await service.create_library(session, carol, "S2")).id
    await f.member(session, s2, bob)
    await f.member(session, s2, w["alice"], "admin")
    await service.add_media(session, w["alice"], s2, m_other)
    await f.backfill_job(session, db, s, bob)
    await f.backfill_job(session, db, s2, bob)
    await _ok(session)

    await service.remove_member(session, w["alice"], s, bob)
    assert {e for e in await f.edges(session) if e[0] == db} == {(db, m_other, s2)}
    assert await f.library_media_ids(session, db) == {m_kept, m_other}
    assert await _jobs(session) == {(db, s2, bob)}
    # Other members keep theirs.
    assert {e for e in await f.edges(session) if e[0] == w["da"]} == {
        (w["da"], m, s) for m in (m_shared, m_kept, m_other)
    } | {(w["da"], m_other, s2)}
    assert await closure.readable_media_ids(session, bob, [m_shared, m_kept, m_other]) == {
        m_kept,
        m_other,
    }
    await _ok(session)


async def test_leaving_is_the_same_cleanup(session: AsyncSession) -> None:
    w = await _world(session)
    (m,) = await f.owned_media(session, w["da"])
    await service.add_media(session, w["alice"], w["s"], m)
    await f.backfill_job(session, w["db"], w["s"], w["bob"])
    await service.remove_member(session, w["bob"], w["s"], w["bob"])
    assert await f.edges(session) == {(w["da"], m, w["s"])}
    assert await f.library_media_ids(session, w["db"]) == set()
    assert await _jobs(session) == set()
    assert not await closure.can_read_media(session, w["bob"], m)
    await _ok(session)


# ---------------------------------------------------------------------- deletion


async def test_library_deletion_gcs_before_the_cascade(session: AsyncSession) -> None:
    w = await _world(session)
    s, bob, db = w["s"], w["bob"], w["db"]
    m1, m2 = await f.owned_media(session, w["da"], n=2)
    await service.add_media(session, w["alice"], s, m1)
    await service.add_media(session, w["alice"], s, m2)
    s2 = (await service.create_library(session, w["alice"], "S2")).id
    await f.member(session, s2, bob)
    await service.add_media(session, w["alice"], s2, m2)
    await f.backfill_job(session, db, s, bob)
    await service.remove_media(session, w["alice"], w["da"], m1)  # only edges justify it now

    await service.delete_library(session, w["alice"], s)
    assert await f.edges(session) == {(w["da"], m2, s2), (db, m2, s2)}
    assert await f.library_media_ids(session, db) == {m2}
    assert await f.library_media_ids(session, w["da"]) == {m2}
    assert await _jobs(session) == set()
    assert not await closure.can_read_media(session, w["alice"], m1)
    assert not await closure.can_read_media(session, bob, m1)
    assert await closure.can_read_media(session, bob, m2)
    await _ok(session)


# ---------------------------------------------------------------------- transfer


async def test_owner_transfer_keeps_the_closure_and_the_old_owner_may_then_leave(
    session: AsyncSession,
) -> None:
    w = await _world(session)
    (m,) = await f.media(session)
    await closure.add_to_default(session, w["db"], m)  # Bob's media
    await service.add_media(session, w["bob"], w["db"], m)
    await service.set_member_role(session, w["alice"], w["s"], w["bob"], service.LibraryRole.ADMIN)
    await service.add_media(session, w["bob"], w["s"], m)
    before = await f.edges(session)
    await service.transfer_ownership(session, w["alice"], w["s"], w["bob"])
    assert await f.edges(session) == before
    await _ok(session)
    await service.remove_member(session, w["alice"], w["s"], w["alice"])
    assert await f.edges(session) == {(w["db"], m, w["s"])}
    assert await f.library_media_ids(session, w["da"]) == set()
    assert not await closure.can_read_media(session, w["alice"], m)
    await _ok(session)


# ------------------------------------------------------------- several libraries


async def test_a_row_survives_while_any_source_justifies_it(session: AsyncSession) -> None:
    w = await _world(session)
    bob, db = w["bob"], w["db"]
    (m,) = await f.owned_media(session, w["da"])
    s1 = w["s"]
    s2 = (await service.create_library(session, w["alice"], "S2")).id
    s3 = (await service.create_library(session, w["alice"], "S3")).id
    for lib in (s2, s3):
        await f.member(session, lib, bob)
    for lib in (s1, s2, s3):
        await service.add_media(session, w["alice"], lib, m)
    assert {e for e in await f.edges(session) if e[0] == db} == {(db, m, s) for s in (s1, s2, s3)}

    await service.remove_media(session, w["alice"], s1, m)  # edge source 1 gone
    assert await f.library_media_ids(session, db) == {m}
    await service.remove_member(session, bob, s2, bob)  # leave source 2
    assert await f.library_media_ids(session, db) == {m}
    assert await closure.can_read_media(session, bob, m)
    await _ok(session)
    await service.delete_library(session, w["alice"], s3)  # last source
    assert await f.library_media_ids(session, db) == set()
    assert not await closure.can_read_media(session, bob, m)
    await _ok(session)


# ------------------------------------------------------------------- read access


async def test_can_read_media_rules(session: AsyncSession) -> None:
    w = await _world(session)
    alice, bob, s = w["alice"], w["bob"], w["s"]
    bare, intrinsic, in_s, stale_edge = await f.media(session, n=4)
    missing = uuid.uuid4()
    # A bare default row (no intrinsic, no edge) grants nothing.
    await f.add_media(session, w["db"], [bare])
    await closure.add_to_default(session, w["db"], intrinsic)
    await f.add_media(session, s, [in_s])  # bob reads it through membership only
    # An edge from a library Bob is no longer a member of grants nothing.
    s_gone = await f.library(session, alice)
    await f.add_media(session, s_gone, [stale_edge])
    await session.execute(
        text("INSERT INTO default_library_closure_edges VALUES (:d, :m, :s)"),
        {"d": w["db"], "m": stale_edge, "s": s_gone},
    )
    await f.add_media(session, w["db"], [stale_edge])

    everything = [bare, intrinsic, in_s, stale_edge, missing]
    assert await closure.readable_media_ids(session, bob, everything) == {intrinsic, in_s}
    assert [await closure.can_read_media(session, bob, m) for m in everything] == [
        False,
        True,
        True,
        False,
        False,
    ]
    assert await closure.readable_media_ids(session, alice, everything) == {in_s, stale_edge}
    assert await closure.readable_media_ids(session, bob, []) == set()
    # Someone else's default library grants nothing either.
    assert not await closure.can_read_media(session, alice, intrinsic)
    # A non-member of everything reads nothing.
    stranger, _ = await f.account(session)
    assert await closure.readable_media_ids(session, stranger, everything) == set()


# ---------------------------------------------------------- backfill after accept


async def test_backfill_materialises_then_revocation_removes(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessionmaker) as session:
        w = await _world(session)
        ms = await f.owned_media(session, w["da"], n=5)
        for m in ms:
            await service.add_media(session, w["alice"], w["s"], m)
        carol, dc = await f.account(session)
        await f.member(session, w["s"], carol)
        key = await f.backfill_job(session, dc, w["s"], carol)
        assert await f.library_media_ids(session, dc) == set()
    async with transaction(sessionmaker) as session:
        claim = await machine.claim(session, backfill.JOB, key, owner="t", lease_seconds=30)
    assert claim is not None
    await backfill.materialise(sessionmaker, claim, chunk_size=2)
    async with transaction(sessionmaker) as session:
        await machine.complete(session, backfill.JOB, claim, actor="t")
        assert await f.library_media_ids(session, dc) == set(ms)
        assert {e for e in await f.edges(session) if e[0] == dc} == {(dc, m, w["s"]) for m in ms}
        await _ok(session)
        await service.remove_member(session, carol, w["s"], carol)
        assert await f.library_media_ids(session, dc) == set()
        assert await _jobs(session) == set()
        await _ok(session)
