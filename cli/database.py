"""Database helpers for the CLI: does a server answer, create the database if missing."""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import URL, make_url

MAINTENANCE_DB = "postgres"


def parse_url(database_url: str) -> URL:
    return make_url(database_url)


def with_host_port(database_url: str, host: str, port: int) -> str:
    """The same URL pointing at another server (credentials and database kept)."""
    return parse_url(database_url).set(host=host, port=port).render_as_string(hide_password=False)


def host_port(database_url: str) -> tuple[str, int]:
    url = parse_url(database_url)
    return url.host or "127.0.0.1", url.port or 5432


async def _connect(url: URL, database: str, connect_timeout: float) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        database=database,
        timeout=connect_timeout,
    )


async def server_answers(database_url: str, *, connect_timeout: float = 3.0) -> bool:
    """True when a PostgreSQL server speaks the protocol at the URL's host:port.

    Any server-side refusal (bad password, missing database) still means a server answers;
    only a connection failure (refused, timeout, not PostgreSQL) means none does.
    """
    url = parse_url(database_url)
    try:
        conn = await _connect(url, MAINTENANCE_DB, connect_timeout)
    except asyncpg.PostgresError:
        return True
    except (OSError, TimeoutError, asyncpg.InterfaceError):
        return False
    await conn.close()
    return True


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(database_url: str, *, connect_timeout: float = 10.0) -> bool:
    """Create the URL's database if it does not exist; True when it was created.

    Connects to the `postgres` maintenance database with the URL's credentials. Safe when
    several processes race: a concurrent creation counts as "already there".
    """
    url = parse_url(database_url)
    name = url.database
    if not name:
        raise ValueError("the database URL names no database")
    conn = await _connect(url, MAINTENANCE_DB, connect_timeout)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()
