"""Sending due deliveries: claim → POST (signed) → record, restart-safe.

`deliver_due` is what the agents' leader timer runs. Each round:

1. **Claim** (one transaction): deliveries `pending`, due and of an active subscription,
   oldest due first, at most `batch`, `FOR UPDATE SKIP LOCKED`; each claimed row's
   `attempts` is incremented and `next_attempt_at` pushed past the send deadline, so a
   worker that dies mid-send leaves a row that is simply due again later (that attempt
   counts). Rows that already used every attempt are marked `dead` first.
2. **Send** outside any transaction, concurrently (at most `CONCURRENCY`): `POST` of the
   stored body with `X-Nexus-Event-Id`, `X-Nexus-Event-Type` and `X-Nexus-Signature`
   (`nexus.webhooks.signing`), through `post_checked` (the fetcher's SSRF rules, checked and
   pinned at delivery time).
3. **Record** each outcome with a statement fenced by the attempt number claimed (a
   stale sender can never overwrite a newer attempt): `delivered`, `pending` with the next
   time (`nexus.webhooks.policy`), or `dead`.

At least once: a receiver may see an event twice (a crash between its 2xx and step 3, or
a timeout after it processed the request); receivers dedupe by `X-Nexus-Event-Id`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.errors import NexusError, TerminalError
from nexus.fetching.fetch import FetchPolicy, Resolver, post_checked
from nexus.webhooks import policy, signing

CONCURRENCY = 10
# Past the send deadline before a claimed row is due again (a crashed sender's row).
CLAIM_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class Due:
    id: int
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    body: str
    attempt: int
    url: str
    secret: str


@dataclass(frozen=True)
class Sent:
    due: Due
    outcome: policy.Outcome


async def claim_due(
    session: AsyncSession, *, batch: int, max_attempts: int, hold_seconds: float
) -> list[Due]:
    await session.execute(
        text(
            "UPDATE webhook_deliveries SET status = 'dead', updated_at = now(),"
            " last_error = left(coalesce(last_error || '; ', '') || 'attempts exhausted', 1000)"
            " WHERE status = 'pending' AND next_attempt_at <= now() AND attempts >= :max"
        ),
        {"max": max_attempts},
    )
    rows = await session.execute(
        text(
            "WITH due AS ("
            " SELECT d.id FROM webhook_deliveries d"
            " JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active"
            " WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
            " ORDER BY d.next_attempt_at, d.id LIMIT :batch FOR UPDATE OF d SKIP LOCKED)"
            " UPDATE webhook_deliveries d SET attempts = d.attempts + 1, updated_at = now(),"
            " next_attempt_at = now() + make_interval(secs => :hold)"
            " FROM due, webhook_subscriptions s"
            " WHERE d.id = due.id AND s.id = d.subscription_id"
            " RETURNING d.id, d.subscription_id, d.event_id, d.event_type, d.body,"
            " d.attempts AS attempt, s.url, s.secret"
        ),
        {"batch": batch, "hold": hold_seconds},
    )
    return sorted((Due(**r._mapping) for r in rows), key=lambda d: d.id)


def signed_headers(due: Due, *, timestamp: int | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        signing.EVENT_ID_HEADER: str(due.event_id),
        signing.EVENT_TYPE_HEADER: due.event_type,
        signing.SIGNATURE_HEADER: signing.sign(due.secret, due.body.encode(), timestamp=timestamp),
    }


async def send(due: Due, fetch_policy: FetchPolicy, resolver: Resolver | None = None) -> Sent:
    """One attempt; never raises for the receiver's or the network's faults."""
    body = due.body.encode()
    try:
        result = await post_checked(
            due.url, body, signed_headers(due), policy=fetch_policy, resolver=resolver
        )
    except TerminalError as exc:
        return Sent(due, policy.Outcome("dead", None, f"{exc.code}: {exc.message}"))
    except NexusError as exc:
        return Sent(due, policy.Outcome("retry", None, f"{exc.code}: {exc.message}"))
    return Sent(due, policy.from_status(result.status, result.headers))


async def record(session: AsyncSession, sent: Sent, backoff: policy.Backoff) -> policy.Outcome:
    """Write one attempt's outcome, fenced by its attempt number; returns the final kind."""
    outcome = policy.final(sent.outcome, sent.due.attempt, backoff)
    delay = backoff.delay(sent.due.attempt, outcome.retry_after)
    await session.execute(
        text(
            "UPDATE webhook_deliveries SET updated_at = now(),"
            " status = CASE WHEN CAST(:kind AS varchar) = 'retry' THEN 'pending'"
            "   ELSE CAST(:kind AS varchar) END,"
            " last_status_code = :code, last_error = :error,"
            " delivered_at = CASE WHEN CAST(:kind AS varchar) = 'delivered' THEN now() END,"
            " next_attempt_at = CASE WHEN CAST(:kind AS varchar) = 'retry'"
            "   THEN now() + make_interval(secs => :delay) ELSE next_attempt_at END"
            " WHERE id = :id AND status = 'pending' AND attempts = :attempt"
        ),
        {
            "kind": outcome.kind,
            "code": outcome.status_code,
            "error": (outcome.error or None) and str(outcome.error)[:1000],
            "delay": delay,
            "id": sent.due.id,
            "attempt": sent.due.attempt,
        },
    )
    return outcome


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    fetch_policy: FetchPolicy,
    backoff: policy.Backoff,
    batch: int,
    resolver: Resolver | None = None,
) -> list[Sent]:
    """One round (module docstring); returns what was sent, with final outcomes."""
    async with transaction(sessionmaker) as session:
        claimed = await claim_due(
            session,
            batch=batch,
            max_attempts=backoff.max_attempts,
            hold_seconds=fetch_policy.timeout + CLAIM_MARGIN_SECONDS,
        )
    if not claimed:
        return []
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(due: Due) -> Sent:
        async with gate:
            return await send(due, fetch_policy, resolver)

    results: Sequence[Sent] = await asyncio.gather(*(one(d) for d in claimed))
    recorded: list[Sent] = []
    async with transaction(sessionmaker) as session:
        for sent in results:
            recorded.append(Sent(sent.due, await record(session, sent, backoff)))
    return recorded
