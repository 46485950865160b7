"""Operator keys (random tokens stored as SHA-256 hashes) and the operator audit trail.

Tokens are 256-bit random values, so a fast hash is enough: there is nothing to brute-force,
and lookups stay one indexed equality per request.

Refused operator requests (no or unknown key, disabled key, role too low, rate limited)
are audit rows too (`record_refusal`): action `auth.failed` / `auth.denied` /
`auth.rate_limited`, outcome the error code, details `{key_hash_prefix, role,
required_role, route}`. Only a prefix of the key's hash is kept: enough to tell keys
apart, useless to guess a token.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import Conflict, Forbidden, InvalidRequest, NotFound
from nexus.operators.models import OperatorAction, OperatorKey
from nexus.operators.roles import Role

TOKEN_PREFIX = "nxop_"
# Hex characters of a key's SHA-256 kept in refusal audit rows and logs.
KEY_HASH_PREFIX = 12


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OperatorIdentity:
    key_id: uuid.UUID
    name: str
    role: Role


@dataclass(frozen=True)
class CreatedKey:
    id: uuid.UUID
    name: str
    role: Role
    token: str  # shown once, never stored


async def create_key(session: AsyncSession, *, name: str, role: str) -> CreatedKey:
    """Create a key; raises InvalidRequest for a bad role/name, Conflict for a taken name."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidRequest("name must be 1 to 100 characters")
    try:
        parsed = Role(role)
    except ValueError:
        raise InvalidRequest(f"role must be one of {', '.join(r.value for r in Role)}") from None
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key_id = await session.scalar(
        pg_insert(OperatorKey)
        .values(name=name, key_hash=hash_token(token), role=parsed.value)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(OperatorKey.id)
    )
    if key_id is None:
        raise Conflict("E_INVALID_REQUEST", f"an operator key named {name!r} already exists")
    return CreatedKey(id=key_id, name=name, role=parsed, token=token)


@dataclass(frozen=True)
class KeyInfo:
    id: uuid.UUID
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    last_used_at: datetime | None


async def list_keys(session: AsyncSession) -> list[KeyInfo]:
    rows = (await session.scalars(select(OperatorKey).order_by(OperatorKey.created_at))).all()
    return [
        KeyInfo(r.id, r.name, r.role, r.created_at, r.disabled_at, r.last_used_at) for r in rows
    ]


async def disable_key(session: AsyncSession, name_or_id: str) -> KeyInfo:
    """Disable a key by name or id (idempotent); raises NotFound."""
    match = OperatorKey.name == name_or_id
    try:
        match = or_(match, OperatorKey.id == uuid.UUID(name_or_id))
    except ValueError:
        pass
    await session.execute(
        update(OperatorKey)
        .where(match, OperatorKey.disabled_at.is_(None))
        .values(disabled_at=func.now())
    )
    row = await session.scalar(select(OperatorKey).where(match))
    if row is None:
        raise NotFound(f"no operator key {name_or_id!r}")
    return KeyInfo(row.id, row.name, row.role, row.created_at, row.disabled_at, row.last_used_at)


async def find_key(session: AsyncSession, token: str) -> OperatorIdentity | None:
    """The enabled key whose token this is (its `last_used_at` refreshed at most once a
    minute, never waiting on a busy key's row); None for an unknown or disabled key."""
    row = (
        await session.execute(
            select(OperatorKey.id, OperatorKey.name, OperatorKey.role).where(
                OperatorKey.key_hash == hash_token(token), OperatorKey.disabled_at.is_(None)
            )
        )
    ).one_or_none()
    if row is None:
        return None
    # At most one write a minute per key, and never a wait: busy keys do not serialise.
    await session.execute(
        text(
            "UPDATE operator_keys SET last_used_at = now() WHERE id = ("
            "  SELECT id FROM operator_keys WHERE id = :k"
            "  AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"
            "  FOR UPDATE SKIP LOCKED)"
        ),
        {"k": row.id},
    )
    return OperatorIdentity(key_id=row.id, name=row.name, role=Role(row.role))


def role_too_low(identity: OperatorIdentity) -> Forbidden:
    return Forbidden(f"operator role {identity.role.value!r} may not do this")


@dataclass(frozen=True)
class Refusal:
    """An operator request refused before its view ran, as the audit trail keeps it."""

    code: str  # E_UNAUTHENTICATED | E_FORBIDDEN | E_RATE_LIMITED
    route: str  # "<METHOD> <route template>"
    required_role: Role
    token: str | None = None  # the bearer presented (only a prefix of its hash is kept)
    identity: OperatorIdentity | None = None

    @property
    def key_hash_prefix(self) -> str | None:
        return hash_token(self.token)[:KEY_HASH_PREFIX] if self.token else None

    @property
    def action(self) -> str:
        return {"E_FORBIDDEN": "auth.denied", "E_RATE_LIMITED": "auth.rate_limited"}.get(
            self.code, "auth.failed"
        )

    def details(self) -> dict[str, str | None]:
        return {
            "key_hash_prefix": self.key_hash_prefix,
            "role": self.identity.role.value if self.identity else None,
            "required_role": self.required_role.value,
            "route": self.route,
        }


async def record_refusal(
    session: AsyncSession, refusal: Refusal, *, request_id: str | None
) -> None:
    """One `operator_actions` row for a refused operator request (caller's transaction)."""
    who = refusal.identity
    if who is not None:
        actor = who.name
    elif refusal.key_hash_prefix is not None:
        actor = f"key:{refusal.key_hash_prefix}"
    else:
        actor = "anonymous"
    await record_action(
        session,
        actor=actor,
        action=refusal.action,
        target={"route": refusal.route},
        outcome=refusal.code,
        operator_key_id=who.key_id if who else None,
        details=refusal.details(),
        request_id=request_id,
    )


async def record_action(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: Mapping[str, Any],
    outcome: str,
    operator_key_id: uuid.UUID | None = None,
    details: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    """Append one row to `operator_actions` in the caller's transaction."""
    await session.execute(
        insert(OperatorAction).values(
            operator_key_id=operator_key_id,
            actor=actor[:255],
            action=action,
            target={k: str(v) for k, v in target.items()},
            outcome=outcome,
            details=dict(details) if details else None,
            request_id=request_id,
        )
    )
