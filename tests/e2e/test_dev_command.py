"""`nexus dev` end to end: it brings the whole stack up, and SIGTERM takes all of it down.

Case 1: nothing answers at NEXUS_DATABASE_URL or NEXUS_KAFKA_BOOTSTRAP, so `nexus dev` must
start the embedded PostgreSQL (data under ./var/pg of its working directory) and Tansu.
Case 2: the machine's PostgreSQL and the test broker answer, so it must use them (creating
the database).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

from nexus.db.migrate import alembic_config
from runtime.kafka import broker_answers
from tests.support.services import (
    ADMIN_DSN,
    Broker,
    drop_database,
    free_port,
    sqlalchemy_url,
    unique_name,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 45.0
STARTED = re.compile(r"^started (\w+) pid=(\d+)$", re.MULTILINE)


def _nexus_command() -> list[str]:
    script = Path(sys.executable).parent / "nexus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def _head_revision() -> str:
    head = ScriptDirectory.from_config(
        alembic_config("postgresql+asyncpg://x/y")
    ).get_current_head()
    assert head is not None
    return head


@dataclass
class DevRun:
    proc: subprocess.Popen[bytes]
    cwd: Path
    log_path: Path
    api_port: int
    agents_port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def started_pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in STARTED.findall(self.log())}

    def wait_for(self, what: str, check: Callable[[], bool], deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"nexus dev exited ({self.proc.returncode}) before {what}:\n{self.tail()}"
                )
            if check():
                return
            time.sleep(0.25)
        pytest.fail(f"timed out waiting for {what}:\n{self.tail()}")

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def _base_env(**nexus: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    if "NEXUS_TANSU_BIN" in os.environ:
        env["NEXUS_TANSU_BIN"] = os.environ["NEXUS_TANSU_BIN"]
    env.update(nexus)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[Callable[..., DevRun]]:
    runs: list[DevRun] = []

    def start(**nexus: str) -> DevRun:
        cwd = tmp_path / f"dev{len(runs)}"
        cwd.mkdir()
        api_port, agents_port = free_port(), free_port()
        env = _base_env(
            NEXUS_API_PORT=str(api_port),
            NEXUS_AGENTS_WEB_PORT=str(agents_port),
            NEXUS_TOPIC_PREFIX=f"dev{os.urandom(5).hex()}.",
            NEXUS_TOPIC_PARTITIONS="2",
            NEXUS_LOG_JSON="false",
            **nexus,
        )
        log_path = cwd / "nexus-dev.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*_nexus_command(), "dev"],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = DevRun(proc, cwd, log_path, api_port, agents_port)
        runs.append(run)
        return run

    yield start
    for run in runs:  # never leave anything behind, even when an assertion failed
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait(timeout=10)
        for pid in _processes_under(run.cwd) | set(run.started_pids().values()):
            _kill_group(pid)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _processes_under(folder: Path) -> set[int]:
    """Live processes whose working directory or command line refers to `folder`."""
    marker = str(folder.resolve())
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = ""
        if (cwd.startswith(marker) or marker in cmdline) and _alive(int(entry.name)):
            found.add(int(entry.name))
    return found


def _wait_stack_ready(run: DevRun) -> None:
    api = f"http://127.0.0.1:{run.api_port}"
    run.wait_for("API /health 200", _http_ok(f"{api}/health"), START_DEADLINE_S)
    run.wait_for("API /ready 200", _http_ok(f"{api}/ready"), START_DEADLINE_S)
    run.wait_for(
        "agents /nexus/ready 200",
        _http_ok(f"http://127.0.0.1:{run.agents_port}/nexus/ready"),
        START_DEADLINE_S,
    )


def _stop_and_check_nothing_left(run: DevRun, expected: set[str]) -> None:
    pids = run.started_pids()
    assert expected <= set(pids), run.tail()
    assert all(_alive(pid) for pid in pids.values()), run.tail()
    run.proc.send_signal(signal.SIGTERM)
    try:
        code = run.proc.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"nexus dev did not stop within {STOP_DEADLINE_S}s:\n{run.tail()}")
    assert code == 0, run.tail()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.1)
    assert {n: p for n, p in pids.items() if _alive(p)} == {}
    assert _processes_under(run.cwd) == set()


async def _db_revision(dsn: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()


def test_dev_starts_embedded_postgres_and_broker_and_stops_everything(
    start_dev: Callable[..., DevRun],
) -> None:
    pg_port, kafka_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    run = start_dev(
        NEXUS_ENV="local",
        NEXUS_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/nexus",
        NEXUS_KAFKA_BOOTSTRAP=bootstrap,
    )
    run.wait_for("the embedded PostgreSQL", lambda: "started postgres" in run.log(), 60)
    run.wait_for("migrations", lambda: "migrations applied" in run.log(), 90)

    # Database: embedded, data under ./var/pg of the working directory, migrated to head.
    assert (run.cwd / "var" / "pg" / "PG_VERSION").exists()
    dsn = f"postgresql://postgres@127.0.0.1:{pg_port}/nexus"
    assert asyncio.run(_db_revision(dsn)) == _head_revision()
    # Broker: started here and answering.
    assert asyncio.run(broker_answers(bootstrap))
    # local env without a JWT secret: a dev secret was generated for the API.
    assert (run.cwd / "var" / "dev-jwt-secret").exists()
    assert "nexus dev-token" in run.log()

    _wait_stack_ready(run)
    _stop_and_check_nothing_left(run, {"broker", "postgres", "api", "agents"})
    assert not asyncio.run(broker_answers(bootstrap, timeout_seconds=1.0))


def _on_servers(db_name: str, broker: Broker) -> dict[str, str]:
    """`nexus dev` on the test's PostgreSQL server (database `db_name`, which it creates)
    and its broker, in the test env (an explicit JWT secret)."""
    return {
        "NEXUS_ENV": "test",
        "NEXUS_JWT_HS256_SECRET": "dev-test-secret-with-enough-bytes-for-hs256",
        "NEXUS_DATABASE_URL": sqlalchemy_url(db_name),
        "NEXUS_KAFKA_BOOTSTRAP": broker.bootstrap,
    }


def test_dev_uses_a_server_that_answers_and_creates_the_database(
    start_dev: Callable[..., DevRun], broker: Broker
) -> None:
    name = unique_name("nexus_dev")
    try:
        run = start_dev(**_on_servers(name, broker))
        run.wait_for("migrations", lambda: "migrations applied" in run.log(), 90)
        log = run.log()
        assert f"created database {name}" in log
        assert "using the PostgreSQL server at 127.0.0.1:5432" in log
        assert f"using the broker at {broker.bootstrap}" in log
        assert not (run.cwd / "var" / "pg").exists()
        dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
        assert asyncio.run(_db_revision(dsn)) == _head_revision()

        _wait_stack_ready(run)
        _stop_and_check_nothing_left(run, {"api", "agents"})
        assert set(run.started_pids()) == {"api", "agents"}
        assert asyncio.run(broker_answers(broker.bootstrap))  # not ours: left running
    finally:
        asyncio.run(drop_database(name))


def test_dev_stops_everything_and_fails_when_a_child_dies(
    start_dev: Callable[..., DevRun], broker: Broker
) -> None:
    name = unique_name("nexus_dev")
    try:
        run = start_dev(**_on_servers(name, broker))
        run.wait_for("the agents worker", lambda: "started agents" in run.log(), 90)
        pids = run.started_pids()
        os.killpg(pids["api"], signal.SIGKILL)
        try:
            code = run.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"nexus dev kept running after its API died:\n{run.tail()}")
        assert code == 1, run.tail()
        assert "api" in run.log() and "exited unexpectedly" in run.log()
        assert not any(_alive(p) for p in pids.values())
        assert _processes_under(run.cwd) == set()
    finally:
        asyncio.run(drop_database(name))
