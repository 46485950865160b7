"""Production settings fail closed (issue 11 §2): each refusal names its variable."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from nexus.config import SettingsError, load_settings
from nexus.secret_rules import estimated_bits, is_loopback, weakness
from tests.support.compose import compose
from tests.support.env import PROD, set_env

COMPOSE = Path(__file__).parents[2] / "compose" / "docker-compose.yml"


# The values compose/docker-compose.yml shipped before secrets moved out of it.
OLD_COMPOSE_PLACEHOLDERS = {
    "NEXUS_INTERNAL_SECRET": "change-me-to-a-long-random-secret",
    "NEXUS_UPLOAD_SIGNING_KEY": "change-me-to-another-long-random-secret-for-urls",
}


def _load(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    set_env(monkeypatch, values)
    load_settings()


def _refused(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        _load(monkeypatch, values)
    return str(info.value)


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_a_sound_production_configuration_loads(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    _load(monkeypatch, {**PROD, "NEXUS_ENV": env})


@pytest.mark.parametrize("env", ["staging", "prod"])
@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"NEXUS_JWKS_URL": "http://id.example/jwks.json"}, "NEXUS_JWKS_URL"),
        ({"NEXUS_JWT_AUDIENCES": ""}, "NEXUS_JWT_AUDIENCES"),
        ({"NEXUS_JWT_AUDIENCES": " , "}, "NEXUS_JWT_AUDIENCES"),
        ({"NEXUS_FETCH_ALLOW_HOSTS": "127.0.0.1"}, "NEXUS_FETCH_ALLOW_HOSTS"),
        (
            {"NEXUS_INTERNAL_SECRET": OLD_COMPOSE_PLACEHOLDERS["NEXUS_INTERNAL_SECRET"]},
            "NEXUS_INTERNAL_SECRET",
        ),
        (
            {"NEXUS_UPLOAD_SIGNING_KEY": OLD_COMPOSE_PLACEHOLDERS["NEXUS_UPLOAD_SIGNING_KEY"]},
            "NEXUS_UPLOAD_SIGNING_KEY",
        ),
        ({"NEXUS_INTERNAL_SECRET": "passwordpassword"}, "NEXUS_INTERNAL_SECRET"),
        ({"NEXUS_INTERNAL_SECRET": "Aa1!" * 8}, "NEXUS_INTERNAL_SECRET"),
        ({"NEXUS_UPLOAD_SIGNING_KEY": "x" * 64}, "NEXUS_UPLOAD_SIGNING_KEY"),
        ({"NEXUS_UPLOAD_SIGNING_KEY": "0123456789" * 4}, "NEXUS_UPLOAD_SIGNING_KEY"),
        (
            {"NEXUS_DATABASE_URL": "postgresql+asyncpg://postgres:postgres@db:5432/nexus"},
            "NEXUS_DATABASE_URL",
        ),
    ],
)
def test_production_refuses(
    monkeypatch: pytest.MonkeyPatch, env: str, override: dict[str, str], variable: str
) -> None:
    message = _refused(monkeypatch, {**PROD, "NEXUS_ENV": env, **override})
    assert variable in message


@pytest.mark.parametrize("env", ["local", "test"])
def test_local_and_test_keep_their_conveniences(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    """Tests and `nexus dev` use an http JWKS server, allow-listed hosts and short secrets."""
    _load(
        monkeypatch,
        {
            "NEXUS_ENV": env,
            "NEXUS_JWKS_URL": "http://127.0.0.1:1/jwks.json",
            "NEXUS_JWT_AUDIENCES": "",
            "NEXUS_FETCH_ALLOW_HOSTS": "127.0.0.1",
            "NEXUS_INTERNAL_SECRET": "test-internal-secret",
        },
    )


@pytest.mark.parametrize("env", ["local", "test", "staging", "prod"])
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "api.internal"])
@pytest.mark.parametrize("missing", ["NEXUS_INTERNAL_SECRET", "NEXUS_UPLOAD_SIGNING_KEY"])
def test_an_exposed_api_requires_both_secrets_in_every_environment(
    monkeypatch: pytest.MonkeyPatch, env: str, host: str, missing: str
) -> None:
    values = {**PROD, "NEXUS_ENV": env, "NEXUS_API_HOST": host}
    del values[missing]
    message = _refused(monkeypatch, values)
    assert missing in message
    if env in ("local", "test"):
        assert "NEXUS_API_HOST" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_a_loopback_api_needs_no_secrets_locally(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    _load(monkeypatch, {"NEXUS_API_HOST": host})


def test_an_exposed_local_api_with_both_secrets_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    _load(
        monkeypatch,
        {
            "NEXUS_API_HOST": "0.0.0.0",
            "NEXUS_INTERNAL_SECRET": "dev-secret",
            "NEXUS_UPLOAD_SIGNING_KEY": "dev-signing-key",
        },
    )


def test_random_secrets_pass_the_rule() -> None:
    for _ in range(200):
        assert weakness(secrets.token_urlsafe(32)) is None
        assert weakness(secrets.token_hex(32)) is None


def test_the_rule_by_example() -> None:
    assert estimated_bits("abcdefghij") < estimated_bits("abcdefghiJ")
    assert weakness("bff-Shared-7f3c9a1e5d2b") is None
    assert "placeholder" in str(weakness("my-EXAMPLE-secret-0123456789-abcdef"))
    assert "weak" in str(weakness("correcthorsebattery"))
    assert "repetitive" in str(weakness("ab" * 40))
    assert is_loopback("127.9.9.9") and not is_loopback("0.0.0.0")


def test_compose_holds_no_secret_and_loads_once_they_are_provided(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Secrets come from the environment (`compose/.env`), never from the file itself; the
    full wiring (every service, the example env file) is checked in tests/unit/test_compose.py."""
    text = COMPOSE.read_text()
    for name in ("NEXUS_INTERNAL_SECRET", "NEXUS_UPLOAD_SIGNING_KEY", "POSTGRES_PASSWORD"):
        assigned = re.findall(rf"^\s+{name}:\s*(.+)$", text, re.MULTILINE)
        assert assigned and all(v.strip().startswith("${") for v in assigned), name
    provided = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
        "NEXUS_INTERNAL_SECRET": secrets.token_urlsafe(32),
        "NEXUS_UPLOAD_SIGNING_KEY": secrets.token_urlsafe(32),
        "NEXUS_JWKS_URL": "https://id.acme-corp.net/.well-known/jwks.json",
        "NEXUS_JWT_ISSUER": "https://id.acme-corp.net/",
        "NEXUS_IMAGE_TAG": "2026.12.1",
    }
    api = compose(provided)["services"]["api"]
    _load(monkeypatch, {k: str(v) for k, v in api["environment"].items()})
