"""Operator job routes: single requeue, job lists, timeline, bulk requeue, ingest list."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.db import rows
from tests.support.processes import poll
from tests.support.webapp import Api, FakePublisher

REQUEUE = "/internal/libraries/backfill-jobs/requeue"
BULK = "/internal/libraries/backfill-jobs/requeue-bulk"
LIST = "/internal/backfill-jobs"
TIMELINE = "/internal/backfill-jobs/timeline"
NOW = datetime.now(UTC)
# SPEC §7, restated on purpose: the shapes are the contract, not what the code happens to
# build. The key, a requeue's reply, and a job item of the list.
KEY = {"default_library_id", "source_library_id", "user_id"}
REQUEUE_REPLY = KEY | {
    "status",
    "attempts",
    "last_error_code",
    "updated_at",
    "finished_at",
    "idempotent",
    "enqueue_dispatched",
}
JOB_ITEM = KEY | {
    "status",
    "attempts",
    "last_error_code",
    "last_error_message",
    "next_attempt_at",
    "lease_owner",
    "lease_expires_at",
    "created_at",
    "updated_at",
    "finished_at",
}


async def _job(
    sm: async_sessionmaker[AsyncSession], status: str, **values: Any
) -> dict[str, uuid.UUID]:
    """A job of its own in `status` (a running one leased by "w1")."""
    values = jobs.values_for(
        status, now=NOW, lease_owner="w1", lease_for=timedelta(minutes=5), **values
    )
    return await jobs.seed(sm, n_media=1, **values)


async def _actions(sm: async_sessionmaker[AsyncSession]) -> list[Any]:
    return await rows(
        sm,
        "SELECT actor, action, target, outcome, details, request_id "
        "FROM operator_actions ORDER BY id",
    )


async def _status(sm: async_sessionmaker[AsyncSession], key: dict[str, uuid.UUID]) -> Any:
    return await jobs.job(sm, key, "status, attempts, last_error_code, finished_at, updated_at")


# ----------------------------------------------------------------- single requeue


async def test_requeue_resets_a_failed_job_and_audits(
    api: Api,
    tokens: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: FakePublisher,
) -> None:
    key = await _job(sessionmaker, "failed", last_error_code="E_INTERNAL", last_error_message="x")
    r = await api.post(
        REQUEUE,
        token=tokens["operator"],
        json=jobs.key_json(key, reason="retry it"),
        headers={"X-Request-ID": "req-requeue-1"},
    )
    assert r.status_code == 200
    data = (await r.get_json())["data"]
    assert set(data) == REQUEUE_REPLY
    assert data["status"] == "pending" and data["attempts"] == 0
    assert data["last_error_code"] is None and data["finished_at"] is None
    assert data["idempotent"] is False and data["enqueue_dispatched"] is True
    assert len(publisher.sent) == 1 and publisher.sent[0][0].endswith("backfill")
    [action] = await _actions(sessionmaker)
    assert action.action == "backfill.requeue" and action.outcome == "requeued"
    assert action.details == {"reason": "retry it"} and action.request_id == "req-requeue-1"
    assert action.target == {k: str(v) for k, v in key.items()}


async def test_requeue_of_a_running_job_is_an_idempotent_noop(
    api: Api,
    tokens: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: FakePublisher,
) -> None:
    key = await _job(sessionmaker, "running")
    before = await _status(sessionmaker, key)
    r = await api.post(REQUEUE, token=tokens["admin"], json=jobs.key_json(key))
    data = (await r.get_json())["data"]
    assert r.status_code == 200
    assert data["status"] == "running" and data["idempotent"] is True
    assert data["enqueue_dispatched"] is False
    assert await _status(sessionmaker, key) == before
    assert publisher.sent == []
    assert [a.outcome for a in await _actions(sessionmaker)] == ["noop_running"]


async def test_requeue_of_a_missing_job_is_404_and_audited(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = {k: uuid.uuid4() for k in jobs.KEY_COLUMNS}
    r = await api.post(REQUEUE, token=tokens["operator"], json=jobs.key_json(key))
    assert r.status_code == 404
    assert (await r.get_json())["error"]["code"] == "E_NOT_FOUND"
    assert [a.outcome for a in await _actions(sessionmaker)] == ["not_found"]


async def test_requeue_roles(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = await _job(sessionmaker, "completed")
    r = await api.post(REQUEUE, json=jobs.key_json(key))
    assert r.status_code == 401
    r = await api.post(REQUEUE, token=tokens["viewer"], json=jobs.key_json(key))
    assert r.status_code == 403 and (await r.get_json())["error"]["code"] == "E_FORBIDDEN"
    assert (await _status(sessionmaker, key)).status == "completed"
    # Only the two refusals are audited (issue #11.8); no requeue was attempted.
    assert [(a.action, a.outcome) for a in await _actions(sessionmaker)] == [
        ("auth.failed", "E_UNAUTHENTICATED"),
        ("auth.denied", "E_FORBIDDEN"),
    ]
    r = await api.post(REQUEUE, token=tokens["operator"], json={"default_library_id": "x"})
    assert r.status_code == 400


# ----------------------------------------------------------------------- lists


async def test_list_filters_order_and_pagination(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    keys = []
    for i, status in enumerate(["failed", "completed", "pending", "failed", "running"]):
        extra = {"last_error_code": "E_FETCH_FAILED"} if status == "failed" else {}
        keys.append(
            await _job(sessionmaker, status, updated_at=NOW - timedelta(minutes=i), **extra)
        )
    r = await api.get(f"{LIST}?limit=2", token=tokens["viewer"])
    body = await r.get_json()
    assert r.status_code == 200 and body["page"]["has_more"] is True
    seen = [item["user_id"] for item in body["data"]]
    item = body["data"][0]
    assert set(item) == JOB_ITEM
    cursor = body["page"]["next_cursor"]
    while cursor:
        body = await (
            await api.get(f"{LIST}?limit=2&cursor={cursor}", token=tokens["viewer"])
        ).get_json()
        seen += [item["user_id"] for item in body["data"]]
        cursor = body["page"]["next_cursor"]
    assert seen == [str(k["user_id"]) for k in keys]  # newest updated_at first

    r = await api.get(f"{LIST}?status=failed", token=tokens["viewer"])
    assert [i["user_id"] for i in (await r.get_json())["data"]] == [
        str(keys[0]["user_id"]),
        str(keys[3]["user_id"]),
    ]
    r = await api.get(f"{LIST}?user_id={keys[2]['user_id']}", token=tokens["viewer"])
    assert [i["status"] for i in (await r.get_json())["data"]] == ["pending"]
    r = await api.get(
        f"{LIST}?default_library_id={keys[4]['default_library_id']}"
        f"&source_library_id={keys[4]['source_library_id']}",
        token=tokens["viewer"],
    )
    [running] = (await r.get_json())["data"]
    assert running["lease_owner"] == "w1"
    r = await api.get(f"{LIST}?error_code=E_FETCH_FAILED", token=tokens["viewer"])
    assert len((await r.get_json())["data"]) == 2
    cut = (NOW - timedelta(minutes=2, seconds=30)).isoformat().replace("+00:00", "Z")
    r = await api.get(f"{LIST}?updated_before={cut}", token=tokens["viewer"])
    assert [i["user_id"] for i in (await r.get_json())["data"]] == [
        str(keys[3]["user_id"]),
        str(keys[4]["user_id"]),
    ]
    r = await api.get(f"{LIST}?updated_after={cut}", token=tokens["viewer"])
    assert len((await r.get_json())["data"]) == 3


@pytest.mark.parametrize(
    "query",
    ["status=bogus", "user_id=nope", "limit=0", "limit=201", "updated_before=2024-01-01T00:00:00"],
)
async def test_list_rejects_bad_queries(api: Api, tokens: dict[str, str], query: str) -> None:
    r = await api.get(f"{LIST}?{query}", token=tokens["viewer"])
    assert r.status_code == 400 and (await r.get_json())["error"]["code"] == "E_INVALID_REQUEST"


async def test_list_bad_cursor_and_auth(api: Api, tokens: dict[str, str]) -> None:
    r = await api.get(f"{LIST}?cursor=abc", token=tokens["viewer"])
    assert (await r.get_json())["error"]["code"] == "E_INVALID_CURSOR"
    assert (await api.get(LIST)).status_code == 401
    assert (await api.get(f"{LIST}?status=bogus")).status_code == 401  # key before schema


async def test_ingest_jobs_list(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with transaction(sessionmaker) as s:
        media = await f.media(s, n=3)
        for i, m in enumerate(media):
            await s.execute(
                text(
                    "INSERT INTO ingest_jobs (media_id, status, updated_at, finished_at) "
                    "VALUES (:m, :st, :u, :fin)"
                ),
                {
                    "m": m,
                    "st": "failed" if i == 1 else "pending",
                    "u": NOW - timedelta(minutes=i),
                    "fin": NOW if i == 1 else None,
                },
            )
    r = await api.get("/internal/ingest-jobs?limit=2", token=tokens["viewer"])
    body = await r.get_json()
    assert [i["media_id"] for i in body["data"]] == [str(m) for m in media[:2]]
    nxt = await api.get(
        f"/internal/ingest-jobs?limit=2&cursor={body['page']['next_cursor']}",
        token=tokens["viewer"],
    )
    assert [i["media_id"] for i in (await nxt.get_json())["data"]] == [str(media[2])]
    r = await api.get(
        f"/internal/ingest-jobs?status=failed&media_id={media[1]}", token=tokens["viewer"]
    )
    assert [i["status"] for i in (await r.get_json())["data"]] == ["failed"]
    r = await api.get(
        f"/internal/ingest-jobs?cursor={body['page']['next_cursor']}&limit=2",
        token=tokens["viewer"],
    )
    assert r.status_code == 200
    bf = await api.get(f"{LIST}?cursor={body['page']['next_cursor']}", token=tokens["viewer"])
    assert (await bf.get_json())["error"]["code"] == "E_INVALID_CURSOR"  # other list's cursor


# -------------------------------------------------------------------- timeline


async def test_timeline_lists_events_outbox_and_actions_in_order(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = await _job(sessionmaker, "failed", last_error_code="E_INTERNAL")
    other = await _job(sessionmaker, "failed")
    for k in (key, other):
        assert (
            await api.post(REQUEUE, token=tokens["operator"], json=jobs.key_json(k))
        ).status_code == 200

    async def all_marked() -> bool:  # publish marks are batched, a moment after the reply
        async with sessionmaker() as s:
            return not await s.scalar(
                text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            )

    await poll(all_marked, deadline_s=2, interval=0.01, what="outbox rows marked")
    r = await api.get(f"{TIMELINE}?{_query(key)}", token=tokens["viewer"])
    assert r.status_code == 200
    body = await r.get_json()
    kinds = [e["kind"] for e in body["data"]]
    assert kinds == ["operator_action", "job_event", "outbox"]
    action, event, message = body["data"]
    assert action["action"] == "backfill.requeue" and action["outcome"] == "requeued"
    assert (event["from_status"], event["to_status"]) == ("failed", "pending")
    assert message["topic"].endswith("backfill")
    assert message["payload"]["user_id"] == str(key["user_id"])
    assert message["published_at"] is not None
    ats = [e["at"] for e in body["data"]]
    assert ats == sorted(ats, key=datetime.fromisoformat)
    assert body["job"]["status"] == "pending" and body["job"]["user_id"] == str(key["user_id"])


def _query(key: dict[str, uuid.UUID]) -> str:
    return "&".join(f"{k}={v}" for k, v in key.items())


async def test_timeline_404_and_validation(api: Api, tokens: dict[str, str]) -> None:
    key = {k: uuid.uuid4() for k in jobs.KEY_COLUMNS}
    r = await api.get(f"{TIMELINE}?{_query(key)}", token=tokens["viewer"])
    assert r.status_code == 404 and (await r.get_json())["error"]["code"] == "E_NOT_FOUND"
    r = await api.get(
        f"{TIMELINE}?default_library_id={key['default_library_id']}", token=tokens["viewer"]
    )
    assert r.status_code == 400


async def test_timeline_of_a_deleted_job_still_shows_history(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = await _job(sessionmaker, "completed")
    await api.post(REQUEUE, token=tokens["operator"], json=jobs.key_json(key))
    async with transaction(sessionmaker) as s:
        await s.execute(
            text("DELETE FROM default_library_backfill_jobs WHERE user_id = :u"),
            {"u": key["user_id"]},
        )
    body = await (await api.get(f"{TIMELINE}?{_query(key)}", token=tokens["viewer"])).get_json()
    assert body["job"] is None and len(body["data"]) == 3


# ------------------------------------------------------------------------ bulk


async def _bulk_fixture(
    sm: async_sessionmaker[AsyncSession],
) -> dict[str, list[dict[str, uuid.UUID]]]:
    jobs: dict[str, list[dict[str, uuid.UUID]]] = {"failed": [], "running": [], "completed": []}
    for i in range(5):
        jobs["failed"].append(
            await _job(
                sm,
                "failed",
                last_error_code="E_FETCH_FAILED",
                updated_at=NOW - timedelta(seconds=i),
            )
        )
    for _ in range(2):
        jobs["running"].append(await _job(sm, "running", last_error_code="E_FETCH_FAILED"))
    jobs["completed"].append(await _job(sm, "completed"))
    return jobs


async def test_bulk_roles(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert (await api.post(BULK, json={})).status_code == 401
    for role in ("viewer", "operator"):
        r = await api.post(BULK, token=tokens[role], json={})
        assert r.status_code == 403 and (await r.get_json())["error"]["code"] == "E_FORBIDDEN"
    r = await api.post(BULK, token=tokens["admin"], json={})
    assert r.status_code == 200 and (await r.get_json())["data"]["dry_run"] is True
    r = await api.post(BULK, token=tokens["admin"], json={"stauts": "failed", "dry_run": False})
    assert r.status_code == 400  # a misspelt filter never widens a real run
    r = await api.post(BULK, token=tokens["admin"], json={"limit": 10_001})
    assert r.status_code == 400
    # Only the three refusals are audited (issue #11.8); no requeue was attempted.
    assert [a.action for a in await _actions(sessionmaker)] == [
        "auth.failed",
        "auth.denied",
        "auth.denied",
    ]


async def test_bulk_dry_run_counts_and_samples(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    jobs = await _bulk_fixture(sessionmaker)
    r = await api.post(BULK, token=tokens["admin"], json={"error_code": "E_FETCH_FAILED"})
    data = (await r.get_json())["data"]
    assert data["dry_run"] is True and data["count"] == 5 and data["skipped_running"] == 2
    assert [s["user_id"] for s in data["sample"]] == [str(k["user_id"]) for k in jobs["failed"]]
    r = await api.post(BULK, token=tokens["admin"], json={"limit": 2})
    assert (await r.get_json())["data"]["count"] == 2
    async with sessionmaker() as s:
        assert (
            await s.scalar(
                text("SELECT count(*) FROM default_library_backfill_jobs WHERE status = 'pending'")
            )
            == 0
        )
    assert await _actions(sessionmaker) == []


async def _operation(sm: async_sessionmaker[AsyncSession], operation_id: str) -> Any:
    async with sm() as s:
        return (
            await s.execute(
                text("SELECT * FROM operations WHERE id = :i"), {"i": uuid.UUID(operation_id)}
            )
        ).one()


async def test_bulk_real_run_answers_202_and_records_the_operation(
    api: Api,
    tokens: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: FakePublisher,
) -> None:
    """A real run is not done in the request: it records an operation (pending job row,
    ledger row, message on the operations topic) and an audit row, and answers 202."""
    jobs = await _bulk_fixture(sessionmaker)
    before = {k["user_id"]: await _status(sessionmaker, k) for v in jobs.values() for k in v}
    r = await api.post(
        BULK,
        token=tokens["admin"],
        headers={"X-Request-ID": "bulk-req-1"},
        json={
            "error_code": "E_FETCH_FAILED",
            "dry_run": False,
            "rate_per_second": 20,
            "reason": "fix",
        },
    )
    assert r.status_code == 202
    data = (await r.get_json())["data"]
    assert data["dry_run"] is False and data["status"] == "pending"
    location = f"/internal/operations/{data['operation_id']}"
    assert data["location"] == location and r.headers["Location"] == location

    op = await _operation(sessionmaker, data["operation_id"])
    assert (op.kind, op.status, op.attempts) == ("backfill.requeue_bulk", "pending", 0)
    assert op.params["error_code"] == "E_FETCH_FAILED" and op.params["rate_per_second"] == 20
    assert op.params["reason"] == "fix" and "dry_run" not in op.params
    assert op.requested_by.startswith("admin-") and op.request_id == "bulk-req-1"
    assert (op.progress, op.result) == ({}, None)
    # Nothing was requeued by the request itself.
    assert {k["user_id"]: await _status(sessionmaker, k) for v in jobs.values() for k in v} == (
        before
    )
    [(topic, key, value, _)] = publisher.sent
    assert topic.endswith("operations") and key == data["operation_id"]
    assert json.loads(value)["operation_id"] == data["operation_id"]
    async with sessionmaker() as s:
        ledger = (
            await s.execute(
                text(
                    "SELECT from_status, to_status FROM job_events "
                    "WHERE job_type = 'operation' AND job_key ->> 'id' = :i"
                ),
                {"i": data["operation_id"]},
            )
        ).all()
    assert [tuple(row) for row in ledger] == [(None, "pending")]
    [action] = await _actions(sessionmaker)
    assert (action.action, action.outcome) == ("backfill.requeue_bulk", "accepted")
    assert action.target == {"error_code": "E_FETCH_FAILED"}
    assert action.details["operation_id"] == data["operation_id"]
    assert action.request_id == "bulk-req-1"

    r = await api.get(location, token=tokens["viewer"])
    assert r.status_code == 200
    shown = (await r.get_json())["data"]
    assert shown["id"] == data["operation_id"] and shown["status"] == "pending"
    assert shown["kind"] == "backfill.requeue_bulk" and shown["params"] == op.params
    assert shown["progress"] == {} and shown["result"] is None and shown["error"] is None


async def test_operation_shows_progress_error_and_result(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    r = await api.post(BULK, token=tokens["admin"], json={"dry_run": False})
    operation_id = (await r.get_json())["data"]["operation_id"]
    path = f"/internal/operations/{operation_id}"
    partial = {"total": 3, "processed": 2, "requeued": 1, "skipped_running": 1, "not_found": 0}
    done = {**partial, "processed": 3, "requeued": 2}

    async def update(sql: str, **params: Any) -> dict[str, Any]:
        async with transaction(sessionmaker) as s:
            await s.execute(
                text(f"UPDATE operations SET {sql} WHERE id = :i"),
                {"i": uuid.UUID(operation_id), **params},
            )
        return (await (await api.get(path, token=tokens["viewer"])).get_json())["data"]

    # A failed attempt that will be retried: its progress so far and its error.
    shown = await update(
        "attempts = 1, progress = CAST(:p AS jsonb), checkpoint = '{\"after\": [1]}', "
        "last_error_code = 'E_INTERNAL', last_error_message = 'database unavailable'",
        p=json.dumps(partial),
    )
    assert (shown["status"], shown["attempts"], shown["progress"]) == ("pending", 1, partial)
    assert shown["error"] == {"code": "E_INTERNAL", "message": "database unavailable"}
    assert shown["result"] is None and "checkpoint" not in shown
    # Completed by the next attempt.
    shown = await update(
        "status = 'completed', attempts = 2, finished_at = now(), last_error_code = NULL, "
        "last_error_message = NULL, progress = CAST(:p AS jsonb), result = CAST(:p AS jsonb)",
        p=json.dumps(done),
    )
    assert (shown["status"], shown["result"], shown["error"]) == ("completed", done, None)
    assert shown["finished_at"] is not None


async def test_operation_route_checks_key_id_and_existence(
    api: Api, tokens: dict[str, str]
) -> None:
    path = f"/internal/operations/{uuid.uuid4()}"
    r = await api.get(path)
    assert r.status_code == 401 and (await r.get_json())["error"]["code"] == "E_UNAUTHENTICATED"
    r = await api.get(path, internal=None, token=tokens["admin"])
    assert r.status_code == 403 and (await r.get_json())["error"]["code"] == "E_INTERNAL_ONLY"
    r = await api.get(path, token=tokens["viewer"])
    body = await r.get_json()
    assert r.status_code == 404 and body["error"]["code"] == "E_NOT_FOUND"
    assert body["error"]["request_id"]
    r = await api.get("/internal/operations/not-a-uuid", token=tokens["viewer"])
    assert r.status_code == 400
    assert (await r.get_json())["error"]["code"] == "E_INVALID_REQUEST"


async def test_bulk_real_run_validates_before_recording(
    api: Api, tokens: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    for body in (
        {"dry_run": False, "rate_per_second": 0},
        {"dry_run": False, "status": "exploded"},
        {"dry_run": False, "updated_before": "2026-01-01T00:00:00"},  # naive: ambiguous
        {"dry_run": False, "user_id": "nope"},
    ):
        r = await api.post(BULK, token=tokens["admin"], json=body)
        assert r.status_code == 400, body
        assert (await r.get_json())["error"]["code"] == "E_INVALID_REQUEST"
    async with sessionmaker() as s:
        assert await s.scalar(text("SELECT count(*) FROM operations")) == 0
    assert await _actions(sessionmaker) == []


# ---------------------------------------------------------------- backlog health


async def test_stats_and_metrics_report_backlog_health(
    build_app: Any,
    settings: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    tokens: dict[str, str],
) -> None:
    tuned = settings.model_copy(
        update={
            "backlog_degraded_pending_count": 2,
            "backlog_degraded_p95_seconds": 3600.0,
            "backlog_alert_after_seconds": 600.0,
        }
    )
    for minutes in (1, 2, 20):
        await _job(
            sessionmaker, "pending", next_attempt_at=datetime.now(UTC) - timedelta(minutes=minutes)
        )
    app = build_app(settings=tuned)
    async with app.test_app():
        api = Api(app.test_client())
        data = (await (await api.get("/internal/stats", token=tokens["viewer"])).get_json())["data"]
        health = data["backfill_backlog"]
        assert health["pending_count"] == 3 and health["degraded"] is True
        assert health["alerting"] is False and health["sustained_pending_count"] == 1
        assert 19 * 60 < health["oldest_pending_age_seconds"] < 21 * 60
        metrics = (await (await api.get("/metrics")).get_data()).decode()
    assert "nexus_backfill_backlog_pending 3.0" in metrics
    assert "nexus_backfill_backlog_degraded 1.0" in metrics
    assert "nexus_backfill_backlog_alerting 0.0" in metrics
    assert "nexus_db_gauges_up 1.0" in metrics
