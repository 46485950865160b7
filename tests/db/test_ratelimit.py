"""nexus.ratelimit on a real database: one upsert per hit, fixed windows, pruning."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus import ratelimit
from tests.support import factories


async def test_hits_count_up_within_a_window(session: AsyncSession) -> None:
    user = await factories.user(session)
    hits = [
        await ratelimit.hit(session, user, "ingest", limit=2, window_seconds=3600) for _ in range(3)
    ]
    assert [h.hits for h in hits] == [1, 2, 3]
    assert [h.allowed for h in hits] == [True, True, False]
    assert all(1 <= h.retry_after <= 3600 for h in hits)
    rows = await session.scalar(
        text("SELECT count(*) FROM rate_limit_windows WHERE user_id = :u"), {"u": user}
    )
    assert rows == 1


async def test_buckets_and_users_are_separate(session: AsyncSession) -> None:
    a, b = await factories.user(session), await factories.user(session)
    await ratelimit.hit(session, a, "ingest", limit=1)
    assert (await ratelimit.hit(session, a, "other", limit=1)).hits == 1
    assert (await ratelimit.hit(session, b, "ingest", limit=1)).hits == 1


async def test_check_raises_with_retry_after(session: AsyncSession) -> None:
    user = await factories.user(session)
    await ratelimit.check(session, user, "ingest", limit=1)
    try:
        await ratelimit.check(session, user, "ingest", limit=1)
    except ratelimit.RateLimited as exc:
        assert exc.code == "E_RATE_LIMITED" and exc.retry_after is not None
        assert 1 <= int(exc.retry_after or 0) <= 60
    else:
        raise AssertionError("the second hit must be refused")


async def test_prune_removes_old_windows_only(session: AsyncSession) -> None:
    user = await factories.user(session)
    await ratelimit.hit(session, user, "ingest", limit=5)
    await session.execute(
        text(
            "INSERT INTO rate_limit_windows (user_id, bucket, window_start, hits) "
            "VALUES (:u, 'ingest', now() - interval '2 hours', 7)"
        ),
        {"u": user},
    )
    assert await ratelimit.prune_windows(session, older_than=timedelta(hours=1)) == 1
    left = await session.scalar(
        text("SELECT count(*) FROM rate_limit_windows WHERE user_id = :u"), {"u": user}
    )
    assert left == 1
