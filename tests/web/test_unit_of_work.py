"""unit_of_work: one transaction; after commit its outbox rows are published (or deferred)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from quart import Blueprint
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.jobs.models import OutboxRow
from nexus.jobs.outbox import enqueue
from nexus.messaging.messages import IngestRequested
from tests.support.processes import poll
from tests.support.webapp import Api, AppFactory, FakePublisher, serving
from web.envelope import Data
from web.request_ids import current_correlation_id, current_request_id
from web.uow import unit_of_work


def _blueprint() -> Blueprint:
    bp = Blueprint("test_uow", __name__, url_prefix="/_test")

    @bp.post("/enqueue/<int:count>")
    async def enqueue_some(count: int) -> Data[dict[str, object]]:
        async with unit_of_work() as uow:
            for _ in range(count):
                await enqueue(
                    uow.session,
                    "t.ingest",
                    "k",
                    IngestRequested(
                        media_id=uuid.uuid4(),
                        request_id=current_request_id(),
                        correlation_id=current_correlation_id(),
                    ),
                )
        return Data(
            data={
                "enqueue_dispatched": uow.enqueue_dispatched,
                "ids": [r.id for r in uow.outbox_rows],
            }
        )

    @bp.post("/enqueue-then-fail")
    async def enqueue_then_fail() -> Data[None]:
        async with unit_of_work() as uow:
            await enqueue(uow.session, "t.ingest", "k", IngestRequested(media_id=uuid.uuid4()))
            raise RuntimeError("boom")

    return bp


async def _api(build_app: AppFactory, publisher: FakePublisher) -> AsyncIterator[Api]:
    async with serving(build_app(publisher=publisher), _blueprint()) as api:
        yield api


@pytest.fixture
async def uapi(build_app: AppFactory, publisher: FakePublisher) -> AsyncIterator[Api]:
    async for api in _api(build_app, publisher):
        yield api


async def _rows(sm: async_sessionmaker[AsyncSession]) -> list[OutboxRow]:
    async with sm() as s:
        return list((await s.scalars(select(OutboxRow).order_by(OutboxRow.id))).all())


async def test_rows_are_published_after_commit(
    uapi: Api, publisher: FakePublisher, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    r = await uapi.post("/_test/enqueue/2", headers={"X-Request-ID": "uow-1"})
    assert r.status_code == 200
    data = (await r.get_json())["data"]
    assert data["enqueue_dispatched"] is True
    assert len(publisher.sent) == 2
    topic, key, value, headers = publisher.sent[0]
    assert (topic, key) == ("t.ingest", "k")
    assert json.loads(value)["request_id"] == "uow-1"
    assert headers["request_id"] == "uow-1"

    # Marked published shortly after (batched with other requests' rows), well before the
    # relay would look at them.
    async def marked() -> list[OutboxRow] | None:
        rows = await _rows(sessionmaker)
        return rows if all(row.published_at is not None for row in rows) else None

    rows = await poll(marked, deadline_s=2, interval=0.01, what="rows marked published")
    assert [row.id for row in rows] == data["ids"]
    assert [row.publish_attempts for row in rows] == [1, 1]


async def test_nothing_enqueued_means_not_dispatched(uapi: Api, publisher: FakePublisher) -> None:
    r = await uapi.post("/_test/enqueue/0")
    assert (await r.get_json())["data"]["enqueue_dispatched"] is False
    assert publisher.sent == []


async def test_publish_failure_never_fails_the_request(
    build_app: AppFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    failing = FakePublisher(fail=True)
    async for api in _api(build_app, failing):
        r = await api.post("/_test/enqueue/1")
        assert r.status_code == 200
        assert (await r.get_json())["data"]["enqueue_dispatched"] is False
        metrics = (await (await api.get("/metrics")).get_data()).decode()
        assert 'nexus_api_outbox_publish_total{outcome="deferred"} 1.0' in metrics
    rows = await _rows(sessionmaker)
    assert len(rows) == 1
    assert rows[0].published_at is None  # the relay will publish it
    assert rows[0].publish_attempts == 1


async def test_failure_in_the_unit_rolls_back_and_publishes_nothing(
    uapi: Api, publisher: FakePublisher, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    r = await uapi.post("/_test/enqueue-then-fail")
    assert r.status_code == 500
    assert publisher.sent == []
    assert await _rows(sessionmaker) == []
