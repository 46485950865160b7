"""`nexus ops cancel` against a real database: backfill and ingest jobs, refusals audited."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.cli import run_cli, sql


def test_cancel_a_backfill_and_an_ingest_job(
    cli_db: str,
    db_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    owner, user = (
        r["id"]
        for r in sql(db_name, "INSERT INTO users SELECT FROM generate_series(1, 2) RETURNING id")
    )
    d = sql(
        db_name,
        "INSERT INTO libraries (owner_user_id, name, is_default) VALUES ($1, 'My Library', true) "
        "RETURNING id",
        user,
    )[0]["id"]
    s = sql(
        db_name,
        "INSERT INTO libraries (owner_user_id, name) VALUES ($1, 'shared') RETURNING id",
        owner,
    )[0]["id"]
    sql(
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
    [job] = sql(db_name, "SELECT status, last_error_message FROM default_library_backfill_jobs")
    assert job["status"] == "cancelled" and job["last_error_message"].endswith(": bad")
    code, _, err = run_cli(capsys, "ops", "cancel", *tuple_args)
    assert code == 1 and "E_JOB_NOT_CANCELLABLE" in err

    code, _, err = run_cli(capsys, "ops", "cancel", "--media", str(uuid.uuid4()))
    assert code == 1 and "E_NOT_FOUND" in err
    code, _, _ = run_cli(capsys, "ops", "cancel", "--user", str(user))
    assert code == 2
    code, _, _ = run_cli(capsys, "ops", "cancel", "--media", str(uuid.uuid4()), *tuple_args)
    assert code == 2

    actions = sql(db_name, "SELECT action, outcome, actor FROM operator_actions ORDER BY id")
    assert [(a["action"], a["outcome"]) for a in actions] == [
        ("backfill.cancel", "cancelled"),
        ("backfill.cancel", "E_JOB_NOT_CANCELLABLE"),
        ("ingest.cancel", "E_NOT_FOUND"),
    ]
    assert all(a["actor"].startswith("cli:") for a in actions)
