"""Operator cancel routes (SPEC §10 "Cancel and retention"): backfill and ingest jobs.

Roles, 404, 409 for a finished job, the audit row of every call (refused ones included),
the ledger row of the transition, and requeue / retry bringing a cancelled job back.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.ingest import jobs as ingest_jobs
from nexus.messaging.topics import Topics
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.db import one, rows
from tests.support.webapp import Api, FakePublisher
from tests.web.test_job_transition_metrics import counted

CANCEL = "/internal/libraries/backfill-jobs/cancel"
REQUEUE = "/internal/libraries/backfill-jobs/requeue"
SM = async_sessionmaker[AsyncSession]


async def _job(sm: SM, status: str) -> dict[str, uuid.UUID]:
    """A job of its own in `status` (a running one leased by "w1")."""
    return await jobs.seed(sm, n_media=1, **jobs.values_for(status, lease_owner="w1"))


async def _actions(sm: SM) -> list[Any]:
    return await rows(
        sm,
        "SELECT actor, action, target, outcome, details, request_id "
        "FROM operator_actions ORDER BY id",
    )


def _ingest_cancel(media_id: uuid.UUID | str) -> str:
    return f"/internal/ingest-jobs/{media_id}/cancel"


async def _ledger(sm: SM, field: str, value: uuid.UUID) -> list[Any]:
    return await rows(
        sm,
        "SELECT from_status, to_status, error_code, error_message, actor, request_id "
        f"FROM job_events WHERE job_key->>'{field}' = :v ORDER BY id",
        v=str(value),
    )


# ---------------------------------------------------------------------- backfill


@pytest.mark.parametrize("status", ["pending", "running"])
async def test_cancel_moves_the_job_to_cancelled_and_audits(
    api: Api,
    tokens: dict[str, str],
    sessionmaker: SM,
    publisher: FakePublisher,
    settings: Settings,
    status: str,
) -> None:
    key = await _job(sessionmaker, status)
    r = await api.post(
        CANCEL,
        token=tokens["operator"],
        json=jobs.key_json(key, reason="bad tuple"),
        headers={"X-Request-ID": "req-cancel-1"},
    )
    assert r.status_code == 200, await r.get_json()
    data = (await r.get_json())["data"]
    assert data["status"] == "cancelled" and data["previous_status"] == status
    assert data["last_error_code"] == "E_CANCELLED" and data["finished_at"] is not None
    assert data["lease_owner"] == ("w1" if status == "running" else None)
    row = await jobs.job(sessionmaker, key, "status, last_error_code")
    assert row is not None and (row.status, row.last_error_code) == ("cancelled", "E_CANCELLED")
    [action] = await _actions(sessionmaker)
    assert (action.action, action.outcome, action.request_id) == (
        "backfill.cancel",
        "cancelled",
        "req-cancel-1",
    )
    assert action.target == {k: str(v) for k, v in key.items()}
    assert action.details["reason"] == "bad tuple" and action.details["from_status"] == status
    last = (await _ledger(sessionmaker, "user_id", key["user_id"]))[-1]
    assert last == (
        status,
        "cancelled",
        "E_CANCELLED",
        f"cancelled by {action.actor}: bad tuple",
        f"operator:{action.actor}",
        "req-cancel-1",
    )
    # The event announcing it went out after commit.
    assert [topic for topic, *_ in publisher.sent] == [Topics.from_settings(settings).events]

    metrics = (await (await api.get("/metrics")).get_data()).decode()
    assert (
        f'nexus_job_transitions_total{{from="{status}",job_type="backfill",to="cancelled"}} 1.0'
        in metrics
    ), [line for line in metrics.splitlines() if "transitions_total{" in line]

    # A requeue brings it back, counted from where the cancel left it.
    r = await api.post(REQUEUE, token=tokens["operator"], json=jobs.key_json(key))
    assert r.status_code == 200
    assert (await r.get_json())["data"]["status"] == "pending"
    assert await jobs.status(sessionmaker, key) == "pending"
    assert await counted(api) == {
        ("backfill", status, "cancelled"): 1,
        ("backfill", "cancelled", "pending"): 1,
    }


@pytest.mark.parametrize("finished", ["completed", "failed", "cancelled"])
async def test_cancel_of_a_finished_job_is_409_and_audited(
    api: Api, tokens: dict[str, str], sessionmaker: SM, finished: str
) -> None:
    key = await _job(sessionmaker, finished)
    before = await _ledger(sessionmaker, "user_id", key["user_id"])
    r = await api.post(CANCEL, token=tokens["operator"], json=jobs.key_json(key, reason="why"))
    assert r.status_code == 409
    error = (await r.get_json())["error"]
    assert error["code"] == "E_JOB_NOT_CANCELLABLE" and finished in error["message"]
    assert await jobs.status(sessionmaker, key) == finished
    assert await _ledger(sessionmaker, "user_id", key["user_id"]) == before
    [action] = await _actions(sessionmaker)
    assert (action.action, action.outcome) == ("backfill.cancel", "E_JOB_NOT_CANCELLABLE")
    assert action.details == {"reason": "why"}


async def test_cancel_of_a_missing_job_is_404_and_audited(
    api: Api, tokens: dict[str, str], sessionmaker: SM
) -> None:
    key = {k: uuid.uuid4() for k in jobs.KEY_COLUMNS}
    r = await api.post(CANCEL, token=tokens["operator"], json=jobs.key_json(key))
    assert r.status_code == 404 and (await r.get_json())["error"]["code"] == "E_NOT_FOUND"
    assert [(a.action, a.outcome) for a in await _actions(sessionmaker)] == [
        ("backfill.cancel", "E_NOT_FOUND")
    ]


async def test_cancel_roles_and_body(api: Api, tokens: dict[str, str], sessionmaker: SM) -> None:
    key = await _job(sessionmaker, "running")
    assert (await api.post(CANCEL, json=jobs.key_json(key))).status_code == 401
    r = await api.post(CANCEL, token=tokens["viewer"], json=jobs.key_json(key))
    assert r.status_code == 403 and (await r.get_json())["error"]["code"] == "E_FORBIDDEN"
    r = await api.post(CANCEL, token=tokens["operator"], json={"default_library_id": "x"})
    assert r.status_code == 400 and (await r.get_json())["error"]["code"] == "E_INVALID_REQUEST"
    r = await api.post(CANCEL, token=tokens["operator"], json=jobs.key_json(key, reason="x" * 1001))
    assert r.status_code == 400
    assert await jobs.status(sessionmaker, key) == "running"
    r = await api.post(CANCEL, token=tokens["admin"], json=jobs.key_json(key))
    assert r.status_code == 200


# ------------------------------------------------------------------------ ingest


async def _ingest_job(sm: SM, settings: Settings, *, media_status: str = "pending") -> uuid.UUID:
    async with transaction(sm) as s:
        (media_id,) = await f.media(s)
        await ingest_jobs.enqueue(
            s,
            media_id,
            Topics.from_settings(settings),
            actor="t",
            request_id=None,
            correlation_id=None,
        )
        await s.execute(
            text("UPDATE media SET processing_status = :p WHERE id = :m"),
            {"p": media_status, "m": media_id},
        )
    return media_id


async def _media(sm: SM, media_id: uuid.UUID) -> Any:
    return await one(
        sm,
        "SELECT m.processing_status, m.failure_stage, m.last_error_code, j.status "
        "FROM media m JOIN ingest_jobs j ON j.media_id = m.id WHERE m.id = :m",
        m=media_id,
    )


async def test_ingest_cancel_fails_the_media_and_retry_revives_it(
    api: Api, tokens: dict[str, str], sessionmaker: SM, settings: Settings
) -> None:
    media_id = await _ingest_job(sessionmaker, settings)
    r = await api.post(_ingest_cancel(media_id), token=tokens["operator"])  # no body
    assert r.status_code == 200, await r.get_json()
    data = (await r.get_json())["data"]
    assert data == {
        "media_id": str(media_id),
        "status": "cancelled",
        "previous_status": "pending",
        "lease_owner": None,
        "processing_status": "failed",
        "failure_stage": "extract",
    }
    assert tuple(await _media(sessionmaker, media_id)) == (
        "failed",
        "extract",
        "E_CANCELLED",
        "cancelled",
    )
    [action] = await _actions(sessionmaker)
    assert (action.action, action.outcome) == ("ingest.cancel", "cancelled")
    assert action.target == {"media_id": str(media_id)}
    assert (await _ledger(sessionmaker, "media_id", media_id))[-1][:3] == (
        "pending",
        "cancelled",
        "E_CANCELLED",
    )

    r = await api.post(_ingest_cancel(media_id), token=tokens["operator"], json={"reason": "x"})
    assert r.status_code == 409
    assert (await r.get_json())["error"]["code"] == "E_JOB_NOT_CANCELLABLE"

    r = await api.post(f"/internal/media/{media_id}/retry", token=tokens["operator"])
    assert r.status_code == 202
    assert tuple(await _media(sessionmaker, media_id)) == ("pending", None, None, "pending")
    # The refused cancel moved nothing; the retry reset the cancelled job.
    assert await counted(api) == {
        ("ingest", "pending", "cancelled"): 1,
        ("ingest", "cancelled", "pending"): 1,
    }
    assert [a.outcome for a in await _actions(sessionmaker)] == [
        "cancelled",
        "E_JOB_NOT_CANCELLABLE",
        "requeued",
    ]


async def test_ingest_cancel_404_roles_and_body(
    api: Api, tokens: dict[str, str], sessionmaker: SM, settings: Settings
) -> None:
    missing = uuid.uuid4()
    r = await api.post(_ingest_cancel(missing), token=tokens["operator"])
    assert r.status_code == 404 and (await r.get_json())["error"]["code"] == "E_NOT_FOUND"
    media_id = await _ingest_job(sessionmaker, settings)
    assert (await api.post(_ingest_cancel(media_id))).status_code == 401
    r = await api.post(_ingest_cancel(media_id), token=tokens["viewer"])
    assert r.status_code == 403
    r = await api.post(_ingest_cancel(media_id), token=tokens["operator"], json={"why": "x"})
    assert r.status_code == 400 and (await r.get_json())["error"]["code"] == "E_INVALID_REQUEST"
    r = await api.post(_ingest_cancel(media_id), token=tokens["operator"], json=[1])
    assert r.status_code == 400
    r = await api.post(_ingest_cancel("not-a-uuid"), token=tokens["operator"])
    assert r.status_code in (400, 404)
    assert (await _media(sessionmaker, media_id)).status == "pending"  # the job's
    actions = [(a.action, a.outcome) for a in await _actions(sessionmaker)]
    # The refused keys are audited by the operator guard (its own action names).
    assert [a for a in actions if a[0] == "ingest.cancel"] == [
        ("ingest.cancel", "E_NOT_FOUND"),
        ("ingest.cancel", "E_INVALID_REQUEST"),
        ("ingest.cancel", "E_INVALID_REQUEST"),
    ]
    assert sorted(a[1] for a in actions if a[0] != "ingest.cancel") == [
        "E_FORBIDDEN",
        "E_UNAUTHENTICATED",
    ]
