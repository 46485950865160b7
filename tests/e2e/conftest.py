"""The end-to-end stack: the API and one agents worker as real processes on the session's
broker and the test's own database, and HTTP clients that act as users of it.

A module changes a setting by overriding `stack_settings` (it receives the default one).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from nexus.config import Settings
from tests.conftest import TEST_INTERNAL_SECRET, make_settings
from tests.support.processes import Child, poll, start_agents, start_api
from tests.support.services import Broker, asyncpg_dsn, free_port
from tests.support.webapp import make_token

SETTLED = ("ready_for_reading", "failed")


@dataclass
class Stack:
    settings: Settings
    dsn: str  # asyncpg DSN of the test's database
    api: Child
    agents: Child

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"


@pytest.fixture
def stack_settings(db_url: str, broker: Broker, storage_dir: Path) -> Settings:
    return make_settings(
        database_url=db_url,
        kafka_bootstrap=broker.bootstrap,
        api_port=free_port(),
        agents_web_port=free_port(),
        fetch_allow_hosts=["127.0.0.1"],  # the pages are served on 127.0.0.1
        ingest_retry_delays=(0.2, 0.2),
        storage_dir=storage_dir,
    )


@pytest_asyncio.fixture
async def stack(stack_settings: Settings, db_name: str, logs_dir: Path) -> AsyncIterator[Stack]:
    """API and agents, started side by side (each waits for its own readiness)."""
    started = await asyncio.gather(
        start_agents(stack_settings, logs_dir),
        start_api(stack_settings, logs_dir),
        return_exceptions=True,
    )
    children = [c for c in started if isinstance(c, Child)]
    failures = [e for e in started if isinstance(e, BaseException)]
    if failures:
        for child in children:
            child.stop()
        raise failures[0]
    agents, api = children
    try:
        yield Stack(stack_settings, asyncpg_dsn(db_name), api, agents)
    finally:
        api.stop()
        agents.stop()


class Client:
    """One user of the API over real HTTP (their own token, the BFF's internal header)."""

    def __init__(self, stack: Stack, user: uuid.UUID | None = None) -> None:
        self.user = user or uuid.uuid4()
        self.http = httpx.AsyncClient(
            base_url=stack.base_url,
            headers={
                "Authorization": f"Bearer {make_token(self.user)}",
                "X-Nexus-Internal": TEST_INTERNAL_SECRET,
            },
            timeout=30,
        )

    async def save(self, url: str) -> httpx.Response:
        return await self.http.post("/media/from_url", json={"url": url})

    async def accepted(self, url: str) -> str:
        """Save `url`, expecting a new pending media (202); its id."""
        resp = await self.save(url)
        assert resp.status_code == 202, resp.text
        media_id: str = resp.json()["data"]["media_id"]
        return media_id

    async def media(self, media_id: str) -> dict[str, Any]:
        resp = await self.http.get(f"/media/{media_id}")
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()["data"]
        return data

    async def settled(self, media_id: str, deadline_s: float = 60) -> dict[str, Any]:
        """The media once it is ready or failed (polled)."""

        async def done() -> dict[str, Any] | None:
            m = await self.media(media_id)
            return m if m["processing_status"] in SETTLED else None

        result: dict[str, Any] = await poll(done, deadline_s=deadline_s, what=f"media {media_id}")
        return result


@pytest_asyncio.fixture
async def clients(stack: Stack) -> AsyncIterator[Callable[[], Client]]:
    """`clients()` is a new user's client; all are closed after the test."""
    made: list[Client] = []

    def make() -> Client:
        made.append(Client(stack))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            await c.http.aclose()


@pytest.fixture
def client(clients: Callable[[], Client]) -> Client:
    """One user's client."""
    return clients()
