"""The hottest reads cost one statement for a known user (bootstrap check, access and page
together) and still bootstrap a new or broken user like every route."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from quart import Quart
from sqlalchemy import delete, event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.libraries.models import Library, Membership
from tests.support.webapp import Api, make_token
from web.state import nexus_state


@contextlib.contextmanager
def statements(sm: async_sessionmaker[AsyncSession], app: Quart) -> Iterator[list[str]]:
    """Every SQL statement run by the app inside the block: on its engine through
    SQLAlchemy, on the engine's driver connections (`nexus.db.raw`, seen by asyncpg's
    query logger on every connection checked out meanwhile) and on its read pool
    (`nexus.db.readpool`)."""
    read_pool = nexus_state(app).read_pool
    assert read_pool is not None
    engine = sm.kw["bind"].sync_engine
    seen: list[str] = []
    drivers: list[Any] = []

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    def on_driver_query(record: Any) -> None:
        seen.append(record.query)

    def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        driver = dbapi_conn.driver_connection
        if driver not in drivers:
            driver.add_query_logger(on_driver_query)
            drivers.append(driver)

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine.pool, "checkout", on_checkout)
    read_pool.add_query_logger(on_driver_query)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine.pool, "checkout", on_checkout)
        read_pool.remove_query_logger(on_driver_query)
        for driver in drivers:
            driver.remove_query_logger(on_driver_query)


async def test_known_user_reads_are_one_statement_each(
    app: Quart, api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sub = uuid.uuid4()
    token = make_token(sub)
    me = (await (await api.get("/me", token=token)).get_json())["data"]
    default = me["default_library_id"]
    for path, status in (
        ("/libraries", 200),
        (f"/libraries/{default}/media?limit=50", 200),
        (f"/libraries/{uuid.uuid4()}/media", 404),
        (f"/media/{uuid.uuid4()}", 404),
        (f"/media/{uuid.uuid4()}/fragments", 404),
    ):
        with statements(sessionmaker, app) as seen:
            r = await api.get(path, token=token)
        assert r.status_code == status, path
        assert len(seen) == 1, (path, seen)


async def test_first_read_of_a_new_user_bootstraps_them(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sub = uuid.uuid4()
    r = await api.get("/libraries", token=make_token(sub))
    assert r.status_code == 200
    (lib,) = (await r.get_json())["data"]
    assert (lib["owner_user_id"], lib["is_default"], lib["role"]) == (str(sub), True, "admin")
    me = (await (await api.get("/me", token=make_token(sub))).get_json())["data"]
    assert me["default_library_id"] == lib["id"]


async def test_a_read_repairs_a_missing_membership(
    api: Api, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sub = uuid.uuid4()
    token = make_token(sub)
    me = (await (await api.get("/me", token=token)).get_json())["data"]
    async with sessionmaker() as s, s.begin():
        await s.execute(delete(Membership).where(Membership.user_id == sub))
    r = await api.get(f"/libraries/{me['default_library_id']}/media", token=token)
    # Not a 404: the statement saw the user unbootstrapped, the bootstrap repaired the
    # membership and the read ran again.
    assert r.status_code == 200
    assert (await r.get_json())["data"] == []
    r = await api.get(f"/media/{uuid.uuid4()}", token=token)
    assert r.status_code == 404
    async with sessionmaker() as s:
        members = await s.scalar(
            select(func.count()).select_from(Membership).where(Membership.user_id == sub)
        )
        libraries = await s.scalar(
            select(func.count()).select_from(Library).where(Library.owner_user_id == sub)
        )
    assert (members, libraries) == (1, 1)


async def test_the_read_pool_is_in_the_metrics(app: Quart, api: Api) -> None:
    assert (await api.get("/libraries", token=make_token(uuid.uuid4()))).status_code == 200
    body = (await (await api.get("/metrics")).get_data()).decode()
    size = nexus_state(app).settings.database_pool_size
    assert f"nexus_db_read_pool_size {float(size)}" in body
    assert "nexus_db_read_pool_checked_out 0.0" in body
    assert "nexus_db_pool_checked_out " in body
