"""Running the `nexus` command in tests: in this process (argv → exit code and output) or
as a subprocess with a settings' environment; and plain SQL beside it."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest

from cli.main import main
from nexus.config import Settings
from tests.support.processes import settings_env
from tests.support.services import asyncpg_dsn


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`nexus *argv` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def run_ops(
    settings: Settings, *args: str, deadline_s: float = 90
) -> tuple[int, list[str], str]:
    """`nexus ops *args` as its own process: (exit code, stdout lines, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "ops",
        *args,
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), deadline_s)
    assert proc.returncode is not None, stderr
    return proc.returncode, stdout.decode().splitlines(), stderr.decode()


async def fetch(db_name: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(db_name))
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def sql(db_name: str, query: str, *args: object) -> list[asyncpg.Record]:
    """`fetch` for the synchronous tests that drive the CLI in this process."""
    return asyncio.run(fetch(db_name, query, *args))
