from __future__ import annotations

from collections.abc import AsyncIterator

import httpcore
import pytest
import pytest_asyncio

from tests.fetch.server import LocalServer, serving


@pytest_asyncio.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with serving() as srv:
        yield srv


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connect the fetcher really makes, as (address, port)."""
    seen: list[tuple[str, int]] = []
    original = httpcore.AnyIOBackend.connect_tcp

    async def spy(self: httpcore.AnyIOBackend, host: str, port: int, **kwargs: object) -> object:
        seen.append((host, port))
        return await original(self, host, port, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", spy)
    return seen
