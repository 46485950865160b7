"""The `nexus` dispatcher: argument wiring, settings errors, and `nexus ops keys` on a real DB."""

from __future__ import annotations

import argparse
import json
import shlex
import uuid
from pathlib import Path

import asyncpg
import jwt
import pytest

from cli import dev, dev_token, migrate, serve
from cli.database import host_port, with_host_port
from cli.main import build_parser, main
from cli.ops import keys
from nexus.operators.service import hash_token
from tests.conftest import make_settings
from tests.support.cli import run_cli, sql
from tests.support.services import asyncpg_dsn, drop_database, sqlalchemy_url, unique_name


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


# -- wiring -----------------------------------------------------------------------------------


def test_migrate_defaults_to_upgrade_head() -> None:
    args = parse("migrate")
    assert (args.action, args.revision) == ("upgrade", None)
    args = parse("migrate", "downgrade", "base")
    assert (args.action, args.revision) == ("downgrade", "base")
    assert args.handler.__doc__ == migrate.run.__doc__


def test_long_running_commands_are_wired() -> None:
    assert parse("api").handler is serve.run_api
    assert parse("agents").handler is serve.run_agents
    assert parse("broker").port is None
    assert parse("broker", "--port", "19093").port == 19093
    assert parse("dev").handler is dev.run
    assert parse("dev").stop_timeout == dev.STOP_SECONDS


def test_ops_keys_arguments() -> None:
    args = parse("ops", "keys", "create", "--role", "operator", "--name", "ci")
    assert (args.role, args.name, args.json) == ("operator", "ci", False)
    assert parse("ops", "keys", "list", "--json").json is True
    assert parse("ops", "keys", "disable", "ci").name_or_id == "ci"
    assert args.handler.__doc__ == keys.run_create.__doc__


@pytest.mark.parametrize(
    "argv",
    [
        ["ops", "keys", "create", "--role", "root", "--name", "x"],
        ["ops", "keys", "create", "--role", "admin"],
        ["migrate", "sideways"],
        ["broker", "--port", "nine"],
        ["dev-token", "--sub", "not-a-uuid"],
        ["nonsense"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["ops"], ["ops", "keys"]])
def test_group_without_subcommand_prints_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "usage: nexus ops" in capsys.readouterr().out


def test_invalid_settings_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEXUS_ENV", "prod")
    assert main(["ops", "keys", "list"]) == 2
    assert "invalid Nexus configuration" in capsys.readouterr().err
    monkeypatch.setenv("NEXUS_ENV", "local")
    monkeypatch.setenv("NEXUS_DATABASE_URL", "postgresql://nope")
    assert main(["migrate"]) == 2
    assert "database_url" in capsys.readouterr().err


def test_api_workers_default_to_the_cores_in_production_and_one_locally() -> None:
    import os

    assert make_settings().api_worker_count == 1
    assert make_settings(api_workers=3).api_worker_count == 3
    assert serve.api_argv(make_settings(api_workers=2))[-2:] == ["--workers", "2"]
    from nexus.config import Env

    prod = make_settings().model_copy(update={"env": Env.PROD})
    assert prod.api_worker_count == (os.cpu_count() or 1)


def test_process_command_lines() -> None:
    # Each command line as a shell would show it (shlex quoting keeps it one-to-one).
    settings = make_settings(api_port=8123, agents_web_port=6123)
    assert shlex.join(serve.api_argv(settings)[1:]) == (
        "-m hypercorn web.asgi:app --config python:web.serving.hypercorn "
        "--bind 127.0.0.1:8123 --workers 1"
    )
    assert shlex.join(serve.agents_argv(settings)[1:]) == (
        "-m faust --quiet -A agents.app worker -l info --web-host 127.0.0.1 --web-port 6123"
    )
    # Faust reconfigures logging at start: it is given our level, in its own spelling.
    quiet = serve.agents_argv(make_settings(log_level="WARNING"))
    assert quiet[quiet.index("-l") + 1] == "warn"
    assert shlex.join(serve.broker_argv("127.0.0.1", 9999, binary="/bin/tansu")) == (
        "/bin/tansu broker --listener-url tcp://127.0.0.1:9999 "
        "--advertised-listener-url tcp://127.0.0.1:9999"
    )


def test_tansu_binary_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_TANSU_BIN", "/opt/tansu")
    assert serve.tansu_binary() == "/opt/tansu"


def test_address_helpers() -> None:
    assert serve.bootstrap_host_port("127.0.0.1:9092,other:9093") == ("127.0.0.1", 9092)
    assert serve.bootstrap_host_port("broker:19092") == ("broker", 19092)
    with pytest.raises(ValueError, match="host:port"):
        serve.bootstrap_host_port("broker")
    url = "postgresql+asyncpg://u:p%40ss@db.example:6543/nexus"
    assert host_port(url) == ("db.example", 6543)
    assert with_host_port(url, "127.0.0.1", 5999) == (
        "postgresql+asyncpg://u:p%40ss@127.0.0.1:5999/nexus"
    )
    assert host_port("postgresql+asyncpg://postgres@/nexus") == ("127.0.0.1", 5432)


def test_port_helpers() -> None:
    port = dev.free_port()
    assert dev.port_is_free("127.0.0.1", port)


# -- dev-token --------------------------------------------------------------------------------


def test_dev_token_signs_with_the_configured_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "s" * 40
    sub = uuid.uuid4()
    monkeypatch.setenv("NEXUS_JWT_HS256_SECRET", secret)
    monkeypatch.setenv("NEXUS_JWT_AUDIENCES", "aud-one,aud-two")
    monkeypatch.setenv("NEXUS_JWT_ISSUER", "issuer-x")
    assert main(["dev-token", "--sub", str(sub)]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience="aud-one", issuer="issuer-x")
    assert claims["sub"] == str(sub)
    assert claims["exp"] - claims["iat"] == dev_token.TOKEN_LIFETIME_SECONDS


def test_dev_token_uses_the_dev_secret_file_in_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["dev-token"]) == 1
    assert "NEXUS_JWT_HS256_SECRET" in capsys.readouterr().err
    secret = dev_token.load_or_create_dev_secret()
    assert dev_token.load_or_create_dev_secret() == secret  # reused, not regenerated
    assert (tmp_path / "var" / "dev-jwt-secret").stat().st_mode & 0o777 == 0o600
    assert main(["dev-token"]) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.decode(token, secret, algorithms=["HS256"], audience="authenticated")["iss"] == (
        "nexus"
    )


# -- ops keys against a real database ---------------------------------------------------------


def test_ops_keys_create_list_disable(
    cli_db: str, db_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "ops", "keys", "create", "--role", "admin", "--name", "alice")
    assert code == 0
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line[:8])
    token = fields["token"].strip()
    assert token.startswith("nxop_")
    assert fields["role"].strip() == "admin"

    stored = sql(db_name, "SELECT * FROM operator_keys ORDER BY created_at")
    assert [(r["name"], r["role"]) for r in stored] == [("alice", "admin")]
    assert stored[0]["key_hash"] == hash_token(token)  # only the hash is kept
    assert str(stored[0]["id"]) == fields["id"].strip()

    code, out, _ = run_cli(
        capsys, "ops", "keys", "create", "--role", "viewer", "--name", "bob", "--json"
    )
    assert code == 0
    bob = json.loads(out)
    assert bob["role"] == "viewer" and bob["token"].startswith("nxop_")

    code, out, _ = run_cli(capsys, "ops", "keys", "list")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["ID", "NAME", "ROLE"]
    assert "alice" in out and "bob" in out and token not in out

    code, out, _ = run_cli(capsys, "ops", "keys", "disable", "alice")
    assert code == 0 and out.startswith("disabled alice")
    code, out, _ = run_cli(capsys, "ops", "keys", "disable", bob["id"])
    assert code == 0 and out.startswith("disabled bob")
    code, again, _ = run_cli(capsys, "ops", "keys", "disable", "alice")  # idempotent
    assert code == 0 and again.startswith("disabled alice")

    code, out, _ = run_cli(capsys, "ops", "keys", "list", "--json")
    listed = {k["name"]: k for k in json.loads(out)}
    assert set(listed) == {"alice", "bob"}
    assert all(k["disabled_at"] for k in listed.values())
    assert all("token" not in k for k in listed.values())


def test_ops_keys_errors_exit_1(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "ops", "keys", "create", "--role", "admin", "--name", "a")[0] == 0
    code, _, err = run_cli(capsys, "ops", "keys", "create", "--role", "viewer", "--name", "a")
    assert code == 1 and "already exists" in err
    code, _, err = run_cli(capsys, "ops", "keys", "create", "--role", "viewer", "--name", "  ")
    assert code == 1 and "E_INVALID_REQUEST" in err
    code, _, err = run_cli(capsys, "ops", "keys", "disable", "nobody")
    assert code == 1 and "E_NOT_FOUND" in err
    code, out, _ = run_cli(capsys, "ops", "keys", "list")
    assert code == 0 and len(out.splitlines()) == 2


def test_ops_keys_list_empty(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "ops", "keys", "list") == (0, "no operator keys\n", "")
    assert run_cli(capsys, "ops", "keys", "list", "--json") == (0, "[]\n", "")


def test_ops_on_unreachable_database_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = dev.free_port()
    monkeypatch.setenv("NEXUS_DATABASE_URL", f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x")
    code, _, err = run_cli(capsys, "ops", "keys", "list")
    assert code == 1 and err.startswith("error:")


def test_migrate_creates_the_database_then_downgrades(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    name = unique_name("nexus_cli")
    monkeypatch.setenv("NEXUS_DATABASE_URL", sqlalchemy_url(name))
    try:
        code, out, _ = run_cli(capsys, "migrate")
        assert code == 0 and "created the database" in out
        assert asyncio.run(_table_count(name)) > 10
        code, out, _ = run_cli(capsys, "migrate", "upgrade", "head")  # idempotent
        assert code == 0 and "created" not in out
        code, out, _ = run_cli(capsys, "migrate", "downgrade", "base")
        assert code == 0
        assert asyncio.run(_table_count(name)) == 1  # alembic_version only
    finally:
        asyncio.run(drop_database(name))


async def _table_count(db_name: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(db_name))
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        )
    finally:
        await conn.close()
