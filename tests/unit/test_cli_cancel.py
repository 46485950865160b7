"""`nexus ops cancel` against a real database: backfill and ingest jobs, refusals audited."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from tests.support.services import asyncpg_dsn
from tests.unit.test_cli import cli_db, run_cli  # noqa: F401  (fixture)


async def _sql(db_name: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(db_name))
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def _q(db_name: str, query: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(_sql(db_name, query, *args))


def test_cancel_a_backfill_and_an_ingest_job(
    cli_db: str,  # noqa: F811
    db_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    owner, user = (
        r["id"]
        for r in _q(db_name, "INSERT INTO users SELECT FROM generate_series(1, 2) RETURNING id")
    )
    d = _q(
        db_name,
        "INSERT INTO libraries (owner_user_id, name, is_default) VALUES ($1, 'My Library', true) "
        "RETURNING id",
        user,
    )[0]["id"]
    s = _q(
        db_name,
        "INSERT INTO libraries (owner_user_id, name) VALUES ($1, 'shared') RETURNING id",
        owner,
    )[0]["id"]
    _q(
        db_name,
        "INSERT INTO default_library_backfill_jobs (default_library_id, source_library_id, "
        "user_id) VALUES ($1, $2, $3)",
        d,
        s,
        user,
    )
    tuple_args = ["--default-library", str(d), "--source-library", str(s), "--user", str(user)]
    code, out, _ = run_cli(capsys, "ops", "cancel", *tuple_args, "--reason", "bad")
    assert code == 0, out
    shown = json.loads(out)
    assert (shown["status"], shown["previous_status"]) == ("cancelled", "pending")
    [job] = _q(db_name, "SELECT status, last_error_message FROM default_library_backfill_jobs")
    assert job["status"] == "cancelled" and job["last_error_message"].endswith(": bad")
    code, _, err = run_cli(capsys, "ops", "cancel", *tuple_args)
    assert code == 1 and "E_JOB_NOT_CANCELLABLE" in err

    code, _, err = run_cli(capsys, "ops", "cancel", "--media", str(uuid.uuid4()))
    assert code == 1 and "E_NOT_FOUND" in err
    code, _, _ = run_cli(capsys, "ops", "cancel", "--user", str(user))
    assert code == 2
    code, _, _ = run_cli(capsys, "ops", "cancel", "--media", str(uuid.uuid4()), *tuple_args)
    assert code == 2

    actions = _q(db_name, "SELECT action, outcome, actor FROM operator_actions ORDER BY id")
    assert [(a["action"], a["outcome"]) for a in actions] == [
        ("backfill.cancel", "cancelled"),
        ("backfill.cancel", "E_JOB_NOT_CANCELLABLE"),
        ("ingest.cancel", "E_NOT_FOUND"),
    ]
    assert all(a["actor"].startswith("cli:") for a in actions)
