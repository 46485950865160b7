"""Two replays racing over the same dead letters: each letter is sent exactly once."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.deadletters import service as deadletters
from nexus.jobs import outbox

WORK = ("t.backfill",)


async def _seed(sm: async_sessionmaker[AsyncSession], n: int) -> list[int]:
    async with sm() as s, s.begin():
        return [
            await deadletters.record(
                s,
                deadletters.Captured(
                    original_topic="t.backfill",
                    partition=0,
                    offset=i,
                    key=f"k{i}",
                    value=b'{"n": %d}' % i,
                    headers={},
                    error_code=deadletters.HANDLER_FAILED,
                    error_message="boom",
                    worker_id="w",
                ),
            )
            for i in range(n)
        ]


async def _replay(s: AsyncSession, actor: str) -> deadletters.ReplayResult:
    return await deadletters.replay(
        s,
        deadletters.Filters(replayed=False),
        work_topics=WORK,
        limit=10,
        dry_run=False,
        operator=deadletters.Operator(actor=actor),
    )


async def test_concurrent_replays_never_send_a_letter_twice(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _seed(sessionmaker, 3)
    async with sessionmaker() as a, sessionmaker() as b:
        await a.begin()
        first = await _replay(a, "ann")  # holds the rows until it commits
        await b.begin()
        second = await _replay(b, "bob")  # skips the locked rows
        await a.commit()
        await b.commit()
        assert [x.id for x, _ in first.replayed] == ids and second.replayed == []
        assert len(outbox.enqueued(a)) == 3 and outbox.enqueued(b) == []
    async with sessionmaker() as s, s.begin():
        assert (await _replay(s, "cy")).replayed == []  # already replayed: left alone
        rows = (await s.execute(text("SELECT count(*), min(replay_count) FROM dead_letters"))).one()
        sent = await s.scalar(text("SELECT count(*) FROM outbox WHERE topic = 't.backfill'"))
        actors = (await s.execute(text("SELECT DISTINCT actor FROM operator_actions"))).scalars()
        assert tuple(rows) == (3, 1) and sent == 3 and set(actors) == {"ann"}


async def test_a_redelivered_offset_updates_its_letter(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    [first] = await _seed(sessionmaker, 1)
    [again] = await _seed(sessionmaker, 1)
    async with sessionmaker() as s:
        assert again == first
        assert await s.scalar(text("SELECT count(*) FROM dead_letters")) == 1
