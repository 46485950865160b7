"""`nexus ops dead-letter list|show|replay` and `nexus ops workers` against a real
database (the broker is absent: replayed rows stay in the outbox for the relay)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.cli import run_cli, sql


def test_list_show_and_replay(
    cli_db: str,
    db_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXUS_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    rows = sql(
        db_name,
        'INSERT INTO dead_letters (original_topic, partition, "offset", key, value, '
        "error_code, error_message) VALUES "
        "('nexus.backfill', 0, 1, 'k1', convert_to('{\"a\": 1}', 'UTF8'), "
        "'E_HANDLER_FAILED', 'boom'), "
        "('nexus.events', 0, 2, 'k2', convert_to('{}', 'UTF8'), 'E_MESSAGE_INVALID', 'x') "
        "RETURNING id",
    )
    work, foreign = (r["id"] for r in rows)

    code, out, _ = run_cli(capsys, "ops", "dead-letter", "list", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [foreign, work]
    code, out, _ = run_cli(capsys, "ops", "dead-letter", "list", "--topic", "backfill")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["ID", "ORIGINAL_TOPIC"]
    assert len(out.splitlines()) == 2 and out.splitlines()[1].split()[0] == str(work)
    code, out, _ = run_cli(capsys, "ops", "dead-letter", "show", str(work))
    shown = json.loads(out)
    assert base64.b64decode(shown["value"]) == b'{"a": 1}' and shown["value_text"] == '{"a": 1}'
    code, _, err = run_cli(capsys, "ops", "dead-letter", "show", "999999")
    assert code == 1 and "no dead letter" in err

    code, out, _ = run_cli(capsys, "ops", "dead-letter", "replay", "--dry-run")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and lines[-1] == {
        "summary": "would replay",
        "count": 1,
        "skipped": {"not_a_work_topic": 1},
    }
    assert sql(db_name, "SELECT id FROM outbox") == []

    code, out, err = run_cli(capsys, "ops", "dead-letter", "replay")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert lines[0]["id"] == work and lines[-1]["count"] == 1
    [row] = sql(db_name, "SELECT topic, key, payload FROM outbox")
    assert (row["topic"], row["key"], json.loads(row["payload"])) == (
        "nexus.backfill",
        "k1",
        {"a": 1},
    )
    actions = sql(db_name, "SELECT actor, outcome FROM operator_actions ORDER BY id")
    assert [a["outcome"] for a in actions] == ["replayed", "skipped_not_a_work_topic"]
    assert all(a["actor"].startswith("cli:") for a in actions)
    # Replayed letters are not sent again unless asked for.
    code, out, _ = run_cli(capsys, "ops", "dead-letter", "replay", "--topic", "backfill")
    assert json.loads(out.splitlines()[-1])["count"] == 0
    code, out, _ = run_cli(
        capsys, "ops", "dead-letter", "replay", "--id", str(work), "--include-replayed"
    )
    assert json.loads(out.splitlines()[-1])["count"] == 1
    code, out, _ = run_cli(capsys, "ops", "dead-letter", "list", "--replayed", "--json")
    assert [(r["id"], r["replay_count"]) for r in json.loads(out)] == [(work, 2)]
    with pytest.raises(SystemExit) as usage:
        run_cli(capsys, "ops", "dead-letter", "list", "--error-code", "E_NOPE")
    assert usage.value.code == 2


def test_workers(
    cli_db: str,
    db_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sql(
        db_name,
        "INSERT INTO workers (id, host, pid, status, assigned, version, last_heartbeat_at) "
        "VALUES ('live-1', 'h', 1, 'running', '[\"t.backfill:0\"]', 'v', now()), "
        "('gone-1', 'h', 2, 'stopped', '[]', 'v', now())",
    )
    code, out, _ = run_cli(capsys, "ops", "workers", "--json")
    assert code == 0 and [w["id"] for w in json.loads(out)] == ["live-1"]
    code, out, _ = run_cli(capsys, "ops", "workers", "--all", "--json")
    assert {w["id"]: w["alive"] for w in json.loads(out)} == {"live-1": True, "gone-1": False}
    code, out, _ = run_cli(capsys, "ops", "workers")
    assert code == 0 and "t.backfill:0" in out and "gone-1" not in out
