"""Operator keys for tests, and the headers an operator's HTTP client sends to the API."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.operators.service import CreatedKey, create_key, disable_key
from tests.conftest import TEST_INTERNAL_SECRET


async def operator_key(
    sm: async_sessionmaker[AsyncSession], role: str, *, name: str | None = None
) -> CreatedKey:
    """A new key with `role`, named `<role>-<random>` unless `name` is given."""
    async with transaction(sm) as s:
        return await create_key(s, name=name or f"{role}-{uuid.uuid4().hex[:8]}", role=role)


async def operator_token(
    sm: async_sessionmaker[AsyncSession], role: str, *, disabled: bool = False
) -> str:
    created = await operator_key(sm, role)
    if disabled:
        async with transaction(sm) as s:
            await disable_key(s, created.name)
    return created.token


def operator_headers(token: str, **extra: str) -> dict[str, str]:
    """What the BFF sends on an operator's behalf: the internal secret and the bearer."""
    return {"X-Nexus-Internal": TEST_INTERNAL_SECRET, "Authorization": f"Bearer {token}"} | extra
