"""Every allowed transition of every state table works on the real database, and a
guarded update that misses is an explicit no-op or an error, never silence."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.db import transitions
from nexus.db.transitions import Apply, Missed, Moved, StateTable, Transition, TransitionMissed
from nexus.jobs.states import JobStatus
from nexus.libraries.states import INVITE_STATES, InviteStatus
from nexus.media.states import MEDIA_STATES, ProcessingStatus
from nexus.sharing.backfill import JOB
from nexus.webhooks.states import DELIVERY_STATES, DeliveryStatus
from tests.support import factories as f

JOBS = JOB.states

# Columns that must agree with a job's status (the table's check constraints).
_JOB_COLUMNS = {
    JobStatus.RUNNING: "lease_token = gen_random_uuid(), lease_expires_at = now() + "
    "interval '1 minute', finished_at = NULL",
    JobStatus.COMPLETED: "lease_token = NULL, lease_expires_at = NULL, finished_at = now()",
    JobStatus.FAILED: "lease_token = NULL, lease_expires_at = NULL, finished_at = now()",
    JobStatus.CANCELLED: "lease_token = NULL, lease_expires_at = NULL, finished_at = now()",
    JobStatus.PENDING: "lease_token = NULL, lease_expires_at = NULL, finished_at = NULL",
}
_INVITE_COLUMNS = {
    InviteStatus.PENDING: "responded_at = NULL",
    **{s: "responded_at = now()" for s in InviteStatus if s is not InviteStatus.PENDING},
}


async def _job_in(session: AsyncSession, status: JobStatus) -> dict[str, Any]:
    sc = await f.sharing_scenario(session, n_media=0)
    key = await f.backfill_job(session, sc["d"], sc["s"], sc["viewer"])
    await session.execute(
        text(
            f"UPDATE {JOBS.table} SET status = :status, {_JOB_COLUMNS[status]} "
            f"WHERE {JOBS.key_sql()}"
        ),
        {"status": status.value, **{f"key_{k}": v for k, v in key.items()}},
    )
    return key


async def _media_in(session: AsyncSession, status: ProcessingStatus) -> dict[str, Any]:
    (media_id,) = await f.media(session)
    await session.execute(
        text("UPDATE media SET processing_status = :status WHERE id = :media_id"),
        {"status": status.value, "media_id": media_id},
    )
    return {"id": media_id}


async def _invite_in(session: AsyncSession, status: InviteStatus) -> dict[str, Any]:
    admin, invitee = await f.user(session), await f.user(session)
    library_id = await f.library(session, admin)
    invite_id = await session.scalar(
        text(
            f"INSERT INTO library_invitations (library_id, inviter_user_id, invitee_user_id, "
            f"role, status, responded_at) VALUES (:library_id, :admin, :invitee, 'member', "
            f":status, {'NULL' if status is InviteStatus.PENDING else 'now()'}) RETURNING id"
        ),
        {"library_id": library_id, "admin": admin, "invitee": invitee, "status": status.value},
    )
    return {"id": invite_id}


_DELIVERY_COLUMNS = {
    DeliveryStatus.DELIVERED: "delivered_at = now()",
    **{s: "delivered_at = NULL" for s in DeliveryStatus if s is not DeliveryStatus.DELIVERED},
}


async def _delivery_in(session: AsyncSession, status: DeliveryStatus) -> dict[str, Any]:
    delivery_id = await session.scalar(
        text(
            "WITH sub AS (INSERT INTO webhook_subscriptions (url, secret, event_types) "
            "VALUES ('https://example.com/hook', 'secret', ARRAY['*']) RETURNING id) "
            "INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, body, "
            f"status, delivered_at) SELECT id, :event_id, 'media.ready', '{{}}', :status, "
            f"{'now()' if status is DeliveryStatus.DELIVERED else 'NULL'} FROM sub RETURNING id"
        ),
        {"event_id": uuid.uuid4(), "status": status.value},
    )
    return {"id": delivery_id}


SETUPS = {
    JOBS.table: (JOBS, _job_in, _JOB_COLUMNS),
    MEDIA_STATES.table: (MEDIA_STATES, _media_in, None),
    INVITE_STATES.table: (INVITE_STATES, _invite_in, _INVITE_COLUMNS),
    DELIVERY_STATES.table: (DELIVERY_STATES, _delivery_in, _DELIVERY_COLUMNS),
}


async def _status(session: AsyncSession, table: StateTable[Any], key: dict[str, Any]) -> str:
    found = await session.scalar(
        text(f"SELECT {table.status_column} FROM {table.table} WHERE {table.key_sql()}"),
        {f"key_{k}": v for k, v in key.items()},
    )
    return str(found)


@pytest.mark.parametrize("name", list(SETUPS))
async def test_every_allowed_transition_moves_the_row(session: AsyncSession, name: str) -> None:
    table, make, columns = SETUPS[name]
    if table is JOBS:  # the walk includes operator cancel, from pending and from running
        assert {
            (JobStatus.PENDING, JobStatus.CANCELLED),
            (JobStatus.RUNNING, JobStatus.CANCELLED),
            (JobStatus.CANCELLED, JobStatus.PENDING),
        } <= set(table.edges())
    for src, to in table.edges():
        key = await make(session, src)
        move = Transition(table, frozenset({src}), to)
        change = Apply(move, set_also=columns[to] if columns else "", returning="1 AS moved")
        moved = await transitions.apply(session, change, key)
        assert isinstance(moved, Moved), (src, to)
        assert await _status(session, table, key) == to.value, (src, to)


@pytest.mark.parametrize("name", list(SETUPS))
async def test_a_row_in_another_state_is_a_miss_that_raises_unless_declared(
    session: AsyncSession, name: str
) -> None:
    table, make, columns = SETUPS[name]
    for to, sources in table.entered_from.items():
        enum: type[StrEnum] = type(to)
        for outsider in (s for s in enum if s not in sources):
            key = await make(session, outsider)
            change = Apply(Transition(table, sources, to), set_also=columns[to] if columns else "")
            with pytest.raises(TransitionMissed, match=f"in state '{outsider.value}'"):
                await transitions.apply(session, change, key)
            assert await _status(session, table, key) == outsider.value
            declared = await transitions.apply(session, change, key, noop_if={outsider})
            assert declared == Missed(outsider)


async def test_a_missing_row_raises_unless_declared(session: AsyncSession) -> None:
    move = Transition(MEDIA_STATES, frozenset({ProcessingStatus.FAILED}), ProcessingStatus.PENDING)
    key = {"id": uuid.uuid4()}
    with pytest.raises(TransitionMissed, match="row missing"):
        await transitions.apply(session, Apply(move), key)
    assert await transitions.apply(session, Apply(move), key, noop_if={None}) == Missed(None)
