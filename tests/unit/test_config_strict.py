from __future__ import annotations

import pytest

from nexus.config import SettingsError, load_settings
from tests.support.env import PROD, set_env


def test_complete_prod_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PROD)
    assert load_settings().jwt_issuer == PROD["NEXUS_JWT_ISSUER"]


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
    set_env(monkeypatch, {**PROD, **override})
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_prod_requires_an_explicit_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {k: v for k, v in PROD.items() if k != "NEXUS_JWT_ISSUER"})
    with pytest.raises(SettingsError, match="NEXUS_JWT_ISSUER"):
        load_settings()


def test_log_level_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"
