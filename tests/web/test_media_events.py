"""GET /media/{id}/events: server-sent status events driven by Postgres NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from tests.support.library_api import User, execute, insert_media, new_user, scalar
from tests.support.processes import poll
from tests.support.webapp import Api, AppFactory

Sm = async_sessionmaker[AsyncSession]
DEADLINE = 10.0


class Stream:
    """An open SSE response read chunk by chunk from the Quart test connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.buffer = b""
        self.ended = False

    async def next_frame(self, wait: float = DEADLINE) -> str | None:
        """The next complete frame (event or comment); None once the stream ended."""
        async with asyncio.timeout(wait):
            while b"\n\n" not in self.buffer:
                if self.ended:
                    return None
                chunk = await self.conn.receive()
                if chunk == b"":
                    self.ended = True
                self.buffer += chunk
        frame, _, self.buffer = self.buffer.partition(b"\n\n")
        return frame.decode()

    async def next_fields(self, wait: float = DEADLINE) -> dict[str, str] | None:
        """The next event's fields (`id`, `event`, `data`), keep-alives skipped."""
        while True:
            frame = await self.next_frame(wait)
            if frame is None:
                return None
            if frame.startswith(":"):
                continue
            return dict(line.split(": ", 1) for line in frame.splitlines())

    async def next_event(self, wait: float = DEADLINE) -> dict[str, Any] | None:
        lines = await self.next_fields(wait)
        if lines is None:
            return None
        assert lines["event"] == "status"
        data: dict[str, Any] = json.loads(lines["data"])
        return data

    async def assert_ended(self) -> None:
        assert await self.next_event() is None
        async with asyncio.timeout(DEADLINE):
            await self.conn._task  # the handler returned


@contextlib.asynccontextmanager
async def open_stream(
    api: Api, user: User, media_id: uuid.UUID, *, last_event_id: str | None = None
) -> AsyncIterator[Stream]:
    headers = {"Authorization": f"Bearer {user.token}", "X-Nexus-Internal": "test-internal-secret"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with api.client.request(f"/media/{media_id}/events", method="GET", headers=headers) as c:
        await c.send_complete()
        stream = Stream(c)
        try:
            yield stream
        finally:
            if not stream.ended:
                await c.disconnect()


def status_of(event: dict[str, Any] | None) -> str | None:
    return None if event is None else event["processing_status"]


async def set_status(sm: Sm, m: uuid.UUID, status: str, **extra: str) -> None:
    sets = "".join(f", {k} = '{v}'" for k, v in extra.items())
    await execute(
        sm,
        f"UPDATE media SET processing_status = CAST(:s AS processing_status){sets} WHERE id = :m",
        s=status,
        m=m,
    )


async def test_events_follow_the_lifecycle_and_end(alice: User, api: Api, sessionmaker: Sm) -> None:
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    async with open_stream(api, alice, m) as stream:
        first = await stream.next_event()
        assert stream.conn.status_code == 200
        assert stream.conn.headers["Content-Type"].startswith("text/event-stream")
        assert first == {
            "media_id": str(m),
            "processing_status": "pending",
            "failure_stage": None,
            "last_error_code": None,
        }
        await set_status(sessionmaker, m, "extracting")
        await set_status(sessionmaker, m, "ready_for_reading")
        assert status_of(await stream.next_event()) == "extracting"
        assert status_of(await stream.next_event()) == "ready_for_reading"
        await stream.assert_ended()


async def test_failure_event_carries_stage_and_code(
    alice: User, api: Api, sessionmaker: Sm
) -> None:
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    async with open_stream(api, alice, m) as stream:
        assert status_of(await stream.next_event()) == "pending"
        # A change that leaves the status alone sends nothing; a retry (pending with code) does.
        await execute(sessionmaker, "UPDATE media SET title = 'x' WHERE id = :m", m=m)
        await set_status(sessionmaker, m, "extracting")
        await set_status(sessionmaker, m, "pending", last_error_code="E_FETCH_TIMEOUT")
        await set_status(
            sessionmaker, m, "failed", failure_stage="extract", last_error_code="E_FETCH_FAILED"
        )
        assert status_of(await stream.next_event()) == "extracting"
        retried = await stream.next_event()
        assert retried is not None
        assert (retried["processing_status"], retried["last_error_code"]) == (
            "pending",
            "E_FETCH_TIMEOUT",
        )
        failed = await stream.next_event()
        assert failed is not None
        assert (failed["processing_status"], failed["failure_stage"]) == ("failed", "extract")
        assert failed["last_error_code"] == "E_FETCH_FAILED"
        await stream.assert_ended()


@pytest.mark.parametrize("status", ["ready_for_reading", "ready", "failed"])
async def test_terminal_media_sends_one_event(
    alice: User, api: Api, sessionmaker: Sm, status: str
) -> None:
    m = await insert_media(sessionmaker, status=status, intrinsic_for=alice.default_library_id)
    async with open_stream(api, alice, m) as stream:
        assert status_of(await stream.next_event()) == status
        await stream.assert_ended()


async def test_unreadable_or_missing_is_404(alice: User, api: Api, sessionmaker: Sm) -> None:
    bob = await new_user(api)
    m = await insert_media(sessionmaker, intrinsic_for=bob.default_library_id)
    for target in (m, uuid.uuid4()):
        assert (await alice.get(f"/media/{target}/events")).outcome == (404, "E_MEDIA_NOT_FOUND")
    r = await api.get(f"/media/{m}/events")  # no JWT
    assert r.status_code == 401
    r = await api.get(f"/media/{m}/events", token=bob.token, internal=None)
    assert r.status_code == 403  # the internal header applies to the stream too
    r = await api.get("/media/not-a-uuid/events", token=bob.token)
    assert r.status_code == 400


async def test_one_listen_connection_serves_every_subscriber(
    alice: User, api: Api, sessionmaker: Sm
) -> None:
    ids = [await insert_media(sessionmaker, intrinsic_for=alice.default_library_id) for _ in "ab"]
    async with open_stream(api, alice, ids[0]) as s1, open_stream(api, alice, ids[1]) as s2:
        assert status_of(await s1.next_event()) == "pending"
        assert status_of(await s2.next_event()) == "pending"
        listeners = await scalar(
            sessionmaker,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'LISTEN%'",
        )
        assert listeners == 1
        await set_status(sessionmaker, ids[1], "failed")
        await set_status(sessionmaker, ids[0], "extracting")
        assert status_of(await s2.next_event()) == "failed"
        await s2.assert_ended()
        assert status_of(await s1.next_event()) == "extracting"


async def test_merged_media_follows_the_winner(alice: User, api: Api, sessionmaker: Sm) -> None:
    loser = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    winner = await insert_media(
        sessionmaker, status="ready_for_reading", intrinsic_for=alice.default_library_id
    )
    async with open_stream(api, alice, loser) as stream:
        assert status_of(await stream.next_event()) == "pending"
        async with sessionmaker() as s, s.begin():
            from sqlalchemy import text

            await s.execute(
                text("INSERT INTO media_merges (from_media_id, into_media_id) VALUES (:l, :w)"),
                {"l": loser, "w": winner},
            )
            await s.execute(text("DELETE FROM media WHERE id = :l"), {"l": loser})
        event = await stream.next_event()
        assert event is not None
        assert (event["media_id"], event["processing_status"]) == (
            str(winner),
            "ready_for_reading",
        )
        await stream.assert_ended()


@pytest.fixture
async def fast_app(build_app: AppFactory, settings: Settings) -> AsyncIterator[Quart]:
    quick = settings.model_copy(
        update={"media_events_reread_seconds": 0.3, "media_events_keepalive_seconds": 0.2}
    )
    app = build_app(settings=quick)
    async with app.test_app():
        yield app


async def test_safety_reread_and_keepalive(fast_app: Quart, sessionmaker: Sm) -> None:
    """Without the trigger (a lost notification) the periodic re-read still sees changes;
    idle streams get keep-alive comments."""
    api = Api(fast_app.test_client())
    alice = await new_user(api)
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    await execute(sessionmaker, "ALTER TABLE media DISABLE TRIGGER media_status_notify")
    async with open_stream(api, alice, m) as stream:
        assert status_of(await stream.next_event()) == "pending"
        assert await stream.next_frame() == ": keep-alive"
        await set_status(sessionmaker, m, "ready_for_reading")
        assert status_of(await stream.next_event()) == "ready_for_reading"
        await stream.assert_ended()


async def test_listener_reconnects(alice: User, api: Api, sessionmaker: Sm) -> None:
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    async with open_stream(api, alice, m) as stream:
        assert status_of(await stream.next_event()) == "pending"
        killed = await scalar(
            sessionmaker,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        assert killed == 1
        await set_status(sessionmaker, m, "extracting")  # may be sent while nobody listens

        async def relistened() -> bool:
            n = await scalar(
                sessionmaker,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query ILIKE 'LISTEN%' AND state = 'idle'",
            )
            return bool(n)

        await poll(relistened, deadline_s=DEADLINE, what="the listener to reconnect")
        assert status_of(await stream.next_event()) == "extracting"  # re-read on reconnect
        await set_status(sessionmaker, m, "ready_for_reading")
        assert status_of(await stream.next_event()) == "ready_for_reading"
        await stream.assert_ended()


# ------------------------------------------------------------------ bounds (issue 11 §5)


@pytest.fixture
async def bounded_api(build_app: AppFactory, settings: Settings) -> AsyncIterator[Api]:
    bounded = settings.model_copy(update={"sse_max_streams_per_user": 2, "sse_max_seconds": 2.0})
    app = build_app(settings=bounded)
    async with app.test_app():
        yield Api(app.test_client())


async def test_open_streams_per_user_are_limited(bounded_api: Api, sessionmaker: Sm) -> None:
    api = bounded_api
    alice, bob = await new_user(api), await new_user(api)
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    n = await insert_media(sessionmaker, intrinsic_for=bob.default_library_id)
    async with open_stream(api, alice, m) as s1, open_stream(api, alice, m) as s2:
        assert status_of(await s1.next_event()) == "pending"
        assert status_of(await s2.next_event()) == "pending"
        async with asyncio.timeout(DEADLINE):  # without a limit this would be a stream
            r = await alice.get(f"/media/{m}/events")
        assert r.outcome == (429, "E_TOO_MANY_STREAMS")
        assert int(r.headers["Retry-After"]) >= 1
        async with open_stream(api, bob, n) as other:  # another user is not affected
            assert status_of(await other.next_event()) == "pending"
    # Closed streams give their slots back.
    async with open_stream(api, alice, m) as s3, open_stream(api, alice, m) as s4:
        assert status_of(await s3.next_event()) == "pending"
        assert status_of(await s4.next_event()) == "pending"


async def test_a_finished_stream_frees_its_slot(bounded_api: Api, sessionmaker: Sm) -> None:
    alice = await new_user(bounded_api)
    done = await insert_media(sessionmaker, status="ready", intrinsic_for=alice.default_library_id)
    for _ in range(5):  # more than the limit, one after the other
        async with open_stream(bounded_api, alice, done) as stream:
            assert status_of(await stream.next_event()) == "ready"
            await stream.assert_ended()


async def test_a_stream_ends_after_its_maximum_duration(bounded_api: Api, sessionmaker: Sm) -> None:
    alice = await new_user(bounded_api)
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    async with open_stream(bounded_api, alice, m) as stream:
        assert status_of(await stream.next_event()) == "pending"
        end = await stream.next_fields()
        assert end is not None
        assert end["event"] == "end"
        assert json.loads(end["data"]) == {"reason": "max_duration"}
        assert "id" not in end  # the client resumes from the last status it received
        await stream.assert_ended()


async def test_last_event_id_resumes_without_repeating(
    alice: User, api: Api, sessionmaker: Sm
) -> None:
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    async with open_stream(api, alice, m) as stream:
        fields = await stream.next_fields()
        assert fields is not None and json.loads(fields["data"])["processing_status"] == "pending"
        last_id = fields["id"]
    async with open_stream(api, alice, m, last_event_id=last_id) as resumed:
        # The client already has `pending`: the first event is the next change.
        await set_status(sessionmaker, m, "extracting")
        fields = await resumed.next_fields()
        assert fields is not None
        assert json.loads(fields["data"])["processing_status"] == "extracting"
        assert fields["id"] != last_id
        stale_id = last_id
        last_id = fields["id"]
    # Changes while disconnected: an older id gets the current state at once.
    async with open_stream(api, alice, m, last_event_id=stale_id) as behind:
        assert status_of(await behind.next_event()) == "extracting"
    # A terminal state is always sent, so a resumed client learns the stream is over.
    await set_status(sessionmaker, m, "ready_for_reading")
    async with open_stream(api, alice, m) as stream:
        fields = await stream.next_fields()
        assert fields is not None
        final_id = fields["id"]
    async with open_stream(api, alice, m, last_event_id=final_id) as resumed:
        assert status_of(await resumed.next_event()) == "ready_for_reading"
        await resumed.assert_ended()
