"""Web test fixtures: the real app on a real (cloned) database, a recording fake publisher."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import pytest_asyncio
from quart import Quart
from quart.typing import TestClientProtocol
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.messaging.publisher import PublishError
from tests.conftest import TEST_INTERNAL_SECRET, TEST_JWT_SECRET
from web.app import create_app


@dataclass
class FakePublisher:
    """Records what would have gone to Kafka; can be told to fail or to look down."""

    fail: bool = False
    up: bool = True
    sent: list[tuple[str, str | None, bytes, dict[str, str]]] = field(default_factory=list)

    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: dict[str, str]
    ) -> None:
        if self.fail:
            raise PublishError("broker down (fake)")
        self.sent.append((topic, key, value, headers))

    async def ping(self) -> bool:
        return self.up


def make_token(
    sub: object | None = None,
    *,
    secret: str = TEST_JWT_SECRET,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": str(sub or uuid.uuid4()),
        "iss": "nexus",
        "aud": "authenticated",
        "iat": now,
        "exp": now + 300,
    }
    payload.update(claims)
    for name in drop:
        payload.pop(name, None)
    return jwt.encode(payload, secret, algorithm="HS256")


class Api:
    """A test client that sends the internal header and an optional bearer by default."""

    def __init__(self, client: TestClientProtocol) -> None:
        self.client = client

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        internal: str | None = TEST_INTERNAL_SECRET,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        all_headers: dict[str, str] = {}
        if internal is not None:
            all_headers["X-Nexus-Internal"] = internal
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        return await self.client.open(path, method=method, headers=all_headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


AppFactory = Callable[..., Quart]


@pytest.fixture
def build_app(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: FakePublisher,
) -> AppFactory:
    """create_app with the test database and fake publisher; overrides by keyword."""

    def build(**overrides: Any) -> Quart:
        kwargs: dict[str, Any] = {
            "settings": settings,
            "sessionmaker": sessionmaker,
            "publisher": publisher,
        }
        kwargs.update(overrides)
        return create_app(**kwargs)

    return build


@pytest_asyncio.fixture
async def app(build_app: AppFactory) -> AsyncIterator[Quart]:
    app = build_app()
    async with app.test_app():
        yield app


@pytest.fixture
def api(app: Quart) -> Api:
    return Api(app.test_client())


async def body(response: Any) -> Any:
    return await response.get_json()
