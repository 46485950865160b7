"""Settings from NEXUS_* variables: per-environment requirements and parsing."""

from __future__ import annotations

import pytest

from nexus.config import Env, SettingsError, load_settings
from tests.support.env import PROD_REQUIRED, set_env


def test_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.env is Env.LOCAL
    assert s.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/nexus"
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.topic_prefix == "nexus."
    assert s.internal_secret is None
    assert s.jwt_issuer == "nexus"
    assert s.jwt_audiences == ["authenticated"]
    assert s.backfill_retry_delays == (60, 300, 900, 3600, 21600)
    assert s.backfill_max_attempts == 6
    assert s.ingest_retry_delays == (30, 120, 600)
    assert s.lease_seconds == 300
    assert s.rate_limit_ingest_per_minute == 60
    assert (s.api_port, s.agents_web_port) == (8000, 6066)


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_production_like_envs_start_with_everything(
    monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    set_env(monkeypatch, {"NEXUS_ENV": env, **PROD_REQUIRED})
    s = load_settings()
    assert s.env.value == env
    assert (
        s.internal_secret is not None
        and s.internal_secret.get_secret_value() == PROD_REQUIRED["NEXUS_INTERNAL_SECRET"]
    )


@pytest.mark.parametrize("env", ["staging", "prod"])
@pytest.mark.parametrize("missing", sorted(PROD_REQUIRED))
def test_production_like_envs_refuse_to_start_without(
    monkeypatch: pytest.MonkeyPatch, env: str, missing: str
) -> None:
    set_env(
        monkeypatch, {"NEXUS_ENV": env, **{k: v for k, v in PROD_REQUIRED.items() if k != missing}}
    )
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert missing in str(info.value)
    assert env in str(info.value)


def test_hs256_secret_is_refused_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {"NEXUS_ENV": "prod", **PROD_REQUIRED, "NEXUS_JWT_HS256_SECRET": "x" * 40})
    with pytest.raises(SettingsError, match="local/test only"):
        load_settings()


def test_invalid_env_has_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_ENV", "production")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("invalid Nexus configuration")
    assert "env" in message
    for allowed in ("local", "test", "staging", "prod"):
        assert allowed in message


def test_empty_internal_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_INTERNAL_SECRET", "")
    with pytest.raises(SettingsError, match="NEXUS_INTERNAL_SECRET"):
        load_settings()


def test_delays_are_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        {
            "NEXUS_BACKFILL_RETRY_DELAYS": " 1, 2.5,3 ",
            "NEXUS_INGEST_RETRY_DELAYS": "0",
            "NEXUS_OPERATION_RETRY_DELAYS": "4,8",
        },
    )
    s = load_settings()
    assert s.backfill_retry_delays == (1, 2.5, 3)
    assert s.backfill_max_attempts == 4
    assert s.ingest_retry_delays == (0,)
    assert s.ingest_max_attempts == 2
    assert s.operation_retry_delays == (4, 8)


@pytest.mark.parametrize("bad", ["", "1,-2", "a,b", ","])
@pytest.mark.parametrize("name", ["backfill_retry_delays", "operation_retry_delays"])
def test_bad_delays_are_refused(monkeypatch: pytest.MonkeyPatch, bad: str, name: str) -> None:
    monkeypatch.setenv(f"NEXUS_{name.upper()}", bad)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_audiences_and_allow_hosts_are_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        {"NEXUS_JWT_AUDIENCES": "a, b", "NEXUS_FETCH_ALLOW_HOSTS": "127.0.0.1,localhost"},
    )
    s = load_settings()
    assert s.jwt_audiences == ["a", "b"]
    assert s.fetch_allow_hosts == ["127.0.0.1", "localhost"]


def test_database_url_must_be_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_DATABASE_URL", "postgresql://x@y/z")
    with pytest.raises(SettingsError, match="postgresql\\+asyncpg"):
        load_settings()


def test_topic_prefix_must_end_with_a_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_TOPIC_PREFIX", "nexus")
    with pytest.raises(SettingsError, match="topic_prefix"):
        load_settings()


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_API_PORT", "9000")
    assert load_settings(api_port=9100).api_port == 9100
