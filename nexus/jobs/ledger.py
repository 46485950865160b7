"""The append-only `job_events` ledger: one row per job transition, same transaction."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.jobs.models import JobEvent


def json_key(key: Mapping[str, object]) -> dict[str, str]:
    return {name: str(value) for name, value in sorted(key.items())}


async def record(
    session: AsyncSession,
    *,
    job_type: str,
    key: Mapping[str, object],
    from_status: str | None,
    to_status: str,
    attempt: int,
    actor: str,
    error_code: str | None = None,
    error_message: str | None = None,
    request_id: str | None = None,
    correlation_id: str | None = None,
) -> None:
    await session.execute(
        insert(JobEvent).values(
            job_type=job_type,
            job_key=json_key(key),
            from_status=from_status,
            to_status=to_status,
            attempt=attempt,
            actor=actor[:255],
            error_code=error_code,
            error_message=(error_message or None) and error_message[:1000],
            request_id=request_id,
            correlation_id=correlation_id,
        )
    )
