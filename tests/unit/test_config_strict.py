from __future__ import annotations

import pytest

from nexus.config import SettingsError, load_settings

PROD = {
    "NEXUS_UPLOAD_SIGNING_KEY": "an-upload-signing-key-of-32-chars-or-more",
    "NEXUS_ENV": "prod",
    "NEXUS_INTERNAL_SECRET": "a-long-enough-shared-secret",
    "NEXUS_JWKS_URL": "https://auth.example.test/jwks.json",
    "NEXUS_DATABASE_URL": "postgresql+asyncpg://u@db/nexus",
    "NEXUS_JWT_ISSUER": "https://auth.example.test/",
}


def _env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_complete_prod_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, PROD)
    assert load_settings().jwt_issuer == "https://auth.example.test/"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"NEXUS_LOG_LEVEL": "loud"}, "log_level"),
        ({"NEXUS_JWKS_URL": "notaurl"}, "jwks_url"),
        ({"NEXUS_INTERNAL_SECRET": "short"}, "at least 16"),
        ({"NEXUS_INTERNAL_SECRET": "   "}, "NEXUS_INTERNAL_SECRET"),
        ({"NEXUS_UPLOAD_SIGNING_KEY": "short"}, "at least 32"),
    ],
)
def test_prod_rejects_unusable_values(
    monkeypatch: pytest.MonkeyPatch, override: dict[str, str], message: str
) -> None:
    _env(monkeypatch, {**PROD, **override})
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_prod_requires_an_explicit_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {k: v for k, v in PROD.items() if k != "NEXUS_JWT_ISSUER"})
    with pytest.raises(SettingsError, match="NEXUS_JWT_ISSUER"):
        load_settings()


def test_log_level_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"
