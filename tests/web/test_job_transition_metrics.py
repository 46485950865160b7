"""`nexus_job_transitions_total` on the API (issue #12): every job the API creates or
resets is counted once, by the status it left, after its transaction committed.

Each test app has its own registry, so the whole counter is compared: a path counted
twice, with the wrong labels, or not at all shows as a different dict.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Blueprint, request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.library_api import User
from tests.support.webapp import Api, AppFactory, serving
from tests.web.test_backfill_jobs import BULK, REQUEUE, _job
from tests.web.test_media_retry import failed_media
from tests.web.test_uploads import pdf_bytes, uploaded
from web.envelope import Data
from web.state import nexus_state
from web.uow import unit_of_work

SM = async_sessionmaker[AsyncSession]
Counted = dict[tuple[str, str, str], float]


async def counted(api: Api) -> Counted:
    """The API's `nexus_job_transitions_total` samples, by (job_type, from, to)."""
    body = (await (await api.get("/metrics")).get_data()).decode()
    return {
        (s.labels["job_type"], s.labels["from"], s.labels["to"]): s.value
        for family in text_string_to_metric_families(body)
        if family.name == "nexus_job_transitions"
        for s in family.samples
        if s.name == "nexus_job_transitions_total"
    }


# -------------------------------------------------------------------- requeue


@pytest.mark.parametrize("status", ["failed", "cancelled", "completed", "pending"])
async def test_http_requeue_counts_the_status_it_left(
    api: Api, tokens: dict[str, str], sessionmaker: SM, status: str
) -> None:
    key = await _job(sessionmaker, status)
    r = await api.post(REQUEUE, token=tokens["operator"], json=jobs.key_json(key))
    assert r.status_code == 200, await r.get_json()
    assert (await r.get_json())["data"]["idempotent"] is False
    assert await counted(api) == {("backfill", status, "pending"): 1}


async def test_requeue_that_changes_nothing_counts_nothing(
    api: Api, tokens: dict[str, str], sessionmaker: SM
) -> None:
    running = await _job(sessionmaker, "running")
    r = await api.post(REQUEUE, token=tokens["operator"], json=jobs.key_json(running))
    assert r.status_code == 200 and (await r.get_json())["data"]["idempotent"] is True
    missing = {k: uuid.uuid4() for k in running}
    r = await api.post(REQUEUE, token=tokens["operator"], json=jobs.key_json(missing))
    assert r.status_code == 404
    assert await counted(api) == {}


async def test_bulk_requeue_counts_the_operation_it_creates(
    api: Api, tokens: dict[str, str], sessionmaker: SM
) -> None:
    await _job(sessionmaker, "failed", last_error_code="E_X")
    body = {"error_code": "E_X", "rate_per_second": 1000}
    r = await api.post(BULK, token=tokens["admin"], json=body)  # dry run: writes nothing
    assert r.status_code == 200
    assert await counted(api) == {}
    r = await api.post(BULK, token=tokens["admin"], json={**body, "dry_run": False})
    assert r.status_code == 202, await r.get_json()
    # The jobs themselves are reset by the agents running the operation.
    assert await counted(api) == {("operation", "none", "pending"): 1}


# ---------------------------------------------------------------------- media


async def test_media_retry_counts_the_ingest_job_reset(
    api: Api, alice: User, tokens: dict[str, str], sessionmaker: SM
) -> None:
    mine = await failed_media(sessionmaker, alice)
    r = await alice.post(f"/media/{mine}/retry")
    assert r.status == 202, r.json
    assert await counted(api) == {("ingest", "failed", "pending"): 1}
    # Not failed any more: 409, nothing counted.
    assert (await alice.post(f"/media/{mine}/retry")).code == "E_MEDIA_NOT_RETRYABLE"
    other = await failed_media(sessionmaker, alice)
    r = await api.post(f"/internal/media/{other}/retry", token=tokens["operator"])
    assert r.status_code == 202, await r.get_json()
    assert await counted(api) == {("ingest", "failed", "pending"): 2}


async def test_created_ingest_jobs_are_counted_once(api: Api, alice: User) -> None:
    url = "https://example.com/articles/counted"
    assert (await alice.post("/media/from_url", json={"url": url})).status == 202
    assert (await alice.post("/media/from_url", json={"url": url})).status == 200  # duplicate
    assert await counted(api) == {("ingest", "none", "pending"): 1}

    media_id = await uploaded(alice, pdf_bytes())
    assert (await alice.post(f"/media/{media_id}/ingest")).status == 202
    assert (await alice.post(f"/media/{media_id}/ingest")).status == 202  # already queued
    assert await counted(api) == {("ingest", "none", "pending"): 2}


# -------------------------------------------------------------------- invites


@pytest.mark.parametrize("existing", [None, "completed", "running"])
async def test_invite_accept_counts_the_backfill_job(
    api: Api, alice: User, bob: User, sessionmaker: SM, existing: str | None
) -> None:
    lib = await alice.create_library("Club")
    if existing is not None:  # left a library once, and was invited back
        async with transaction(sessionmaker) as s:
            values = jobs.values_for(existing)
            await f.backfill_job(s, bob.default_library_id, lib, bob.id, **values)
    invite = await alice.invite(lib, bob)
    r = await bob.post(f"/libraries/invites/{invite}/accept")
    assert r.status == 200, r.json
    again = await bob.post(f"/libraries/invites/{invite}/accept")  # idempotent repeat
    assert again.data["idempotent"] is True
    expected = {
        None: {("backfill", "none", "pending"): 1},
        "completed": {("backfill", "completed", "pending"): 1},
        "running": {},  # left running: no change
    }[existing]
    assert await counted(api) == expected


# ------------------------------------------------------------------- rollback


def _failing_requeue() -> Blueprint:
    bp = Blueprint("test_requeue_rollback", __name__, url_prefix="/_test")

    @bp.post("/requeue-then-fail")
    async def requeue_then_fail() -> Data[None]:
        body = await request.get_json()
        key = backfill.BackfillKey(*(uuid.UUID(body[k]) for k in backfill.JOB.key_columns))
        async with unit_of_work() as uow:
            await backfill.requeue(
                uow.session,
                key,
                Topics.from_settings(nexus_state().settings),
                actor="test",
                request_id=None,
                correlation_id=None,
            )
            raise RuntimeError("after the reset, before the commit")

    return bp


@pytest.fixture
async def rollback_api(build_app: AppFactory) -> AsyncIterator[Api]:
    async with serving(build_app(), _failing_requeue()) as api:
        yield api


async def test_a_rolled_back_reset_is_not_counted(rollback_api: Api, sessionmaker: SM) -> None:
    key = await _job(sessionmaker, "failed")
    r = await rollback_api.post("/_test/requeue-then-fail", json=jobs.key_json(key))
    assert r.status_code == 500
    assert await jobs.status(sessionmaker, key) == "failed"
    assert await counted(rollback_api) == {}
