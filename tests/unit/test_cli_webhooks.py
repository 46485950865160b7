"""`nexus ops webhooks create|list|deactivate|deliveries|retry` against a real database."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run_cli, sql


def test_create_list_deliveries_retry_and_deactivate(
    cli_db: str,
    db_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(
        capsys, "ops", "webhooks", "create", "--url", "http://10.0.0.7/", "--event", "*"
    )
    assert code == 1 and "E_INVALID_URL" in err
    code, out, err = run_cli(
        capsys, "ops", "webhooks", "create", "--url", "https://hooks.example.org/x",
        "--event", "media.ready",
    )  # fmt: skip
    created = json.loads(out)
    assert code == 0 and created["secret"].startswith("whsec_") and "only now" in err
    code, out, _ = run_cli(capsys, "ops", "webhooks", "list", "--json")
    listed = json.loads(out)
    assert [s["id"] for s in listed] == [created["id"]] and "secret" not in listed[0]
    rows = sql(
        db_name,
        "INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, body, status,"
        f" attempts) VALUES ('{created['id']}', gen_random_uuid(), 'media.ready', '{{}}',"
        " 'dead', 12) RETURNING id",
    )
    dead = rows[0]["id"]
    code, out, _ = run_cli(capsys, "ops", "webhooks", "deliveries", "--status", "dead", "--json")
    assert code == 0 and [d["id"] for d in json.loads(out)] == [dead]
    code, out, _ = run_cli(capsys, "ops", "webhooks", "retry", str(dead))
    assert code == 0 and "due now" in out
    code, _, err = run_cli(capsys, "ops", "webhooks", "retry", "999999")
    assert code == 1 and "no webhook delivery" in err
    code, out, _ = run_cli(capsys, "ops", "webhooks", "deactivate", created["id"])
    assert code == 0 and "1 pending deliveries stopped" in out
    actions = sql(
        db_name, "SELECT action FROM operator_actions WHERE action LIKE 'webhook.%' ORDER BY id"
    )
    assert [a["action"] for a in actions] == [
        "webhook.create", "webhook.retry", "webhook.retry", "webhook.deactivate",
    ]  # fmt: skip
