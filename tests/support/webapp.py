"""The web test client and its fakes: a recording publisher, user tokens, an API client.

Fixtures that build them live in tests/web/conftest.py; e2e and support modules import
these directly.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from quart import Blueprint, Quart
from quart.typing import TestClientProtocol

from nexus.messaging.publisher import PublishError
from tests.conftest import TEST_INTERNAL_SECRET, TEST_JWT_SECRET

AppFactory = Callable[..., Quart]


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


@asynccontextmanager
async def serving(app: Quart, *blueprints: Blueprint) -> AsyncIterator[Api]:
    """A client of `app` started with test-only `blueprints` added to its routes."""
    for bp in blueprints:
        app.register_blueprint(bp)
    async with app.test_app():
        yield Api(app.test_client())
