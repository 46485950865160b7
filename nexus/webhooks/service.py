"""Webhook subscriptions (admins manage them) and deliveries (one per event and matching
subscription). Services take the caller's session and never commit.

Guarantees:
- A subscription URL passes the fetcher's request-time rules when it is created
  (`validate_url`, `E_INVALID_URL`); every delivery re-checks and pins the address.
- The secret is generated here (`whsec_` + 32 random bytes) unless the admin supplies one
  that passes `nexus.secret_rules`; it is returned once, by `create_subscription`, and is
  never part of a listed or fetched subscription.
- `record_event` writes one delivery per active subscription whose `event_types` match,
  created before the event was sent; `(subscription_id, event_id)` is unique, so an event
  the topic redelivers adds nothing.
- Deactivating a subscription kills its pending deliveries in the same statement's
  transaction; nothing is sent for an inactive subscription.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus import secret_rules
from nexus.db.types import Record
from nexus.errors import InvalidRequest, NotFound
from nexus.fetching.urls import InvalidUrl, is_allowed_host, parse_url, validate_url
from nexus.messaging.messages import DomainEvent
from nexus.webhooks import states

DeliveryStatus = Literal["pending", "delivered", "dead"]
MAX_EVENT_TYPES = 50
_EVENT_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-*")


class Subscription(Record):
    """A subscription without its secret."""

    id: uuid.UUID
    url: str
    event_types: list[str]
    active: bool
    description: str | None
    created_by: str | None
    created_at: datetime
    deactivated_at: datetime | None


class Delivery(Record):
    """One delivery of an event to a subscription."""

    id: int
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime


_SUB_COLUMNS = "id, url, event_types, active, description, created_by, created_at, deactivated_at"
_DELIVERY_COLUMNS = (
    "id, subscription_id, event_id, event_type, status, attempts, last_status_code, "
    "last_error, next_attempt_at, delivered_at, created_at, updated_at"
)


def generate_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _check_event_types(event_types: Sequence[str]) -> list[str]:
    cleaned = sorted({t.strip() for t in event_types if t.strip()})
    if not cleaned or len(cleaned) > MAX_EVENT_TYPES:
        raise InvalidRequest(f"event_types needs 1..{MAX_EVENT_TYPES} event names (or '*')")
    for name in cleaned:
        if len(name) > 128 or not set(name) <= _EVENT_TYPE_CHARS:
            raise InvalidRequest(f"event type {name[:40]!r} is not a valid event name")
    return cleaned


def _check_secret(secret: str) -> str:
    reason = secret_rules.weakness(secret)
    if len(secret) < 24 or len(secret) > 255 or reason is not None:
        raise InvalidRequest(
            f"secret {reason or 'must be 24..255 characters'}; omit it to have one generated"
        )
    return secret


async def create_subscription(
    session: AsyncSession,
    *,
    url: str,
    event_types: Sequence[str],
    secret: str | None = None,
    description: str | None = None,
    created_by: str | None = None,
    allow_hosts: Sequence[str] = (),
    allowed_ports: Sequence[int] = (80, 443),
) -> tuple[Subscription, str]:
    """Insert an active subscription; returns it and its secret (the only time the secret
    leaves the database). Raises `E_INVALID_URL` (the fetcher's URL rules, and a port the
    fetcher would refuse at delivery time) or `E_INVALID_REQUEST`."""
    checked_url = validate_url(url, allow_hosts=allow_hosts)
    parsed = parse_url(checked_url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if port not in allowed_ports and not is_allowed_host(parsed.host, allow_hosts):
        raise InvalidUrl(f"port {port} is not allowed")
    types = _check_event_types(event_types)
    key = _check_secret(secret) if secret is not None else generate_secret()
    row = (
        await session.execute(
            text(
                "INSERT INTO webhook_subscriptions (url, secret, event_types, description,"
                " created_by) VALUES (:url, :secret, :event_types, :description, :created_by)"
                f" RETURNING {_SUB_COLUMNS}"
            ),
            {
                "url": checked_url,
                "secret": key,
                "event_types": types,
                "description": description,
                "created_by": created_by,
            },
        )
    ).one()
    return Subscription(**row._mapping), key


async def list_subscriptions(
    session: AsyncSession, *, limit: int, after_id: uuid.UUID | None = None
) -> list[Subscription]:
    """Subscriptions in id order, `limit + 1` rows (for paging); secrets never included."""
    rows = await session.execute(
        text(
            f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions"
            " WHERE CAST(:after_id AS uuid) IS NULL OR id > :after_id ORDER BY id LIMIT :limit"
        ),
        {"after_id": after_id, "limit": limit + 1},
    )
    return [Subscription(**r._mapping) for r in rows]


async def get_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> Subscription:
    row = (
        await session.execute(
            text(f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions WHERE id = :id"),
            {"id": subscription_id},
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return Subscription(**row._mapping)


async def deactivate_subscription(
    session: AsyncSession, subscription_id: uuid.UUID
) -> tuple[Subscription, int]:
    """Deactivate (idempotent) and mark its pending deliveries `dead`; returns the
    subscription and how many deliveries were stopped. Raises `NotFound`."""
    await session.execute(
        text(
            "UPDATE webhook_subscriptions SET active = false, deactivated_at = now()"
            " WHERE id = :id AND active"
        ),
        {"id": subscription_id},
    )
    # GIVE_UP for its pending deliveries (none pending: nothing to stop).
    stopped = (await session.execute(_STOP, {"subscription_id": subscription_id})).all()
    subscription = await get_subscription(session, subscription_id)
    return subscription, len(stopped)


_STOP = text(
    states.GIVE_UP.update_sql(
        where="subscription_id = :subscription_id",
        set_also="updated_at = now(), last_error = 'subscription deactivated'",
        returning="id",
    )
)
# RETRY of a dead delivery, only while its subscription is active.
_RETRY = text(
    states.RETRY.update_sql(
        where="webhook_deliveries.id = :delivery_id AND s.id = webhook_deliveries.subscription_id"
        " AND s.active",
        set_also="attempts = 0, next_attempt_at = now(), updated_at = now()",
        from_="webhook_subscriptions s",
        qualifier="webhook_deliveries",
        returning="webhook_deliveries.id",
    )
)


async def record_event(session: AsyncSession, event: DomainEvent) -> int:
    """One pending delivery per matching active subscription; returns how many were new."""
    result = await session.execute(
        text(
            "INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, body)"
            " SELECT id, :event_id, :event_type, :body FROM webhook_subscriptions"
            " WHERE active AND event_types && ARRAY[:event_type, '*']::varchar[]"
            " AND created_at <= :sent_at"
            " ON CONFLICT (subscription_id, event_id) DO NOTHING"
        ),
        {
            "event_id": event.message_id,
            "event_type": event.event,
            "body": event.model_dump_json(),
            "sent_at": event.sent_at,
        },
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def list_deliveries(
    session: AsyncSession,
    *,
    limit: int,
    status: DeliveryStatus | None = None,
    subscription_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    before_id: int | None = None,
) -> list[Delivery]:
    """Deliveries newest first (id descending), `limit + 1` rows (for paging)."""
    rows = await session.execute(
        text(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries"
            " WHERE (CAST(:status AS varchar) IS NULL OR status = :status)"
            " AND (CAST(:subscription_id AS uuid) IS NULL OR subscription_id = :subscription_id)"
            " AND (CAST(:event_id AS uuid) IS NULL OR event_id = :event_id)"
            " AND (CAST(:before_id AS bigint) IS NULL OR id < :before_id)"
            " ORDER BY id DESC LIMIT :limit"
        ),
        {
            "status": status,
            "subscription_id": subscription_id,
            "event_id": event_id,
            "before_id": before_id,
            "limit": limit + 1,
        },
    )
    return [Delivery(**r._mapping) for r in rows]


async def retry_delivery(session: AsyncSession, delivery_id: int) -> bool | None:
    """Give a `dead` delivery of an active subscription a fresh start (attempts 0, due
    now). True when it was retried; False when it was not dead or its subscription is
    inactive; None when there is no such delivery."""
    retried = await session.scalar(_RETRY, {"delivery_id": delivery_id})
    if retried is not None:
        return True
    exists = await session.scalar(
        text("SELECT 1 FROM webhook_deliveries WHERE id = :id"), {"id": delivery_id}
    )
    return False if exists else None
