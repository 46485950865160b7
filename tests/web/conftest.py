"""Web test fixtures: the real app on a real (cloned) database, a recording fake publisher,
and the users the tests talk as (alice, bob, carol: each bootstrapped through GET /me)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from quart import Quart
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from tests.support.library_api import User, new_user
from tests.support.operators import operator_token
from tests.support.webapp import Api, AppFactory, FakePublisher, make_token
from web.app import create_app

# The helpers used to live here; tests written against that keep importing them from here.
__all__ = ["Api", "AppFactory", "FakePublisher", "make_token"]


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


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


@pytest.fixture
async def alice(api: Api) -> User:
    return await new_user(api)


@pytest.fixture
async def bob(api: Api) -> User:
    return await new_user(api)


@pytest.fixture
async def carol(api: Api) -> User:
    return await new_user(api)


@pytest.fixture
async def tokens(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """An operator key's token for each role."""
    return {r: await operator_token(sessionmaker, r) for r in ("viewer", "operator", "admin")}
