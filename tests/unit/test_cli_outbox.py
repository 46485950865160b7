"""`nexus ops outbox list|retry` against a real database."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run_cli, sql


def test_list_and_retry_a_parked_row(
    cli_db: str,
    db_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = sql(
        db_name,
        "INSERT INTO outbox (topic, key, payload, publish_attempts, last_error, parked_at) "
        "VALUES ('t.ingest', 'k', '{}', 10, 'too large', now()), ('t.ingest', 'k', '{}', 0, "
        "NULL, NULL) RETURNING id",
    )
    parked, waiting = (r["id"] for r in rows)
    code, out, _ = run_cli(capsys, "ops", "outbox", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [r["id"] for r in listed] == [parked] and listed[0]["last_error"] == "too large"
    code, out, _ = run_cli(capsys, "ops", "outbox", "list")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["ID", "TOPIC"]
    code, out, _ = run_cli(capsys, "ops", "outbox", "retry", str(parked))
    assert code == 0 and "due now" in out
    code, out, _ = run_cli(capsys, "ops", "outbox", "retry", str(waiting))
    assert code == 0 and "not parked" in out
    code, _, err = run_cli(capsys, "ops", "outbox", "retry", "999999")
    assert code == 1 and "no outbox row" in err
    code, out, _ = run_cli(capsys, "ops", "outbox", "list")
    assert code == 0 and out.strip() == "no parked outbox rows"
    actions = sql(db_name, "SELECT actor, outcome FROM operator_actions ORDER BY id")
    assert [a["outcome"] for a in actions] == ["retried", "not_parked", "not_found"]
    assert all(a["actor"].startswith("cli:") for a in actions)
