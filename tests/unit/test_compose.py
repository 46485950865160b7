"""The compose stack's wiring, checked without a Docker engine (none runs here): the file
is parsed, `${...}` is interpolated from `.env.example` the way compose does, and each
Nexus service's environment must load prod `Settings` once the placeholders are replaced
by strong random values, and must be refused while they are not (fail closed)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from nexus.config import SettingsError, load_settings
from nexus.secret_rules import is_placeholder
from tests.support.compose import COMPOSE, compose, example, filled

NEXUS_SERVICES = ("migrate", "api", "agents")
STORAGE = "/var/lib/nexus/storage"


def _service_settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, str(value))
    return load_settings()


@pytest.mark.parametrize("name", NEXUS_SERVICES)
def test_each_nexus_service_loads_prod_settings_once_the_secrets_are_filled(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose(filled())["services"]
    settings = _service_settings(services[name], monkeypatch)
    assert settings.env.value == "prod"
    assert settings.kafka_bootstrap == "kafka:9092"
    assert "@postgres:5432/" in settings.database_url
    assert str(settings.storage_dir) == STORAGE


@pytest.mark.parametrize("name", NEXUS_SERVICES)
def test_the_example_env_file_fails_closed(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose(example())["services"]
    with pytest.raises(SettingsError, match="placeholder"):
        _service_settings(services[name], monkeypatch)


def test_every_value_of_the_example_is_a_placeholder_or_harmless() -> None:
    harmless = {"NEXUS_IMAGE", "NEXUS_JWT_AUDIENCES", "NEXUS_API_WORKERS"}
    for name, value in example().items():
        assert name in harmless or is_placeholder(value), name


def test_a_missing_secret_stops_compose_before_anything_starts() -> None:
    env = filled()
    del env["NEXUS_INTERNAL_SECRET"]
    with pytest.raises(KeyError, match="NEXUS_INTERNAL_SECRET"):
        compose(env)


def test_api_and_agents_share_the_storage_volume_and_data_is_persisted() -> None:
    stack = compose(filled())
    services = stack["services"]

    def mounts(name: str) -> dict[str, str]:
        return dict(v.split(":", 1)[::-1] for v in services[name].get("volumes", []))

    assert mounts("api")[STORAGE] == mounts("agents")[STORAGE] == "storage"
    assert mounts("postgres")["/var/lib/postgresql/data"] == "pgdata"
    assert mounts("kafka")["/var/lib/kafka/data"] == "kafka-data"
    assert set(stack["volumes"]) >= {"storage", "pgdata", "kafka-data"}
    assert services["kafka"]["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"


def test_healthchecks_restart_policies_and_start_order() -> None:
    services = compose(filled())["services"]
    for name in ("postgres", "kafka", "api", "agents"):
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped", name
    assert "127.0.0.1:8000/ready" in " ".join(services["api"]["healthcheck"]["test"])
    assert "127.0.0.1:6066/nexus/ready" in " ".join(services["agents"]["healthcheck"]["test"])
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["nexus", "migrate", "upgrade", "head"]
    for name in ("api", "agents"):
        needs = services[name]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}
        assert needs["kafka"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["api"]["environment"]["NEXUS_API_WORKERS"] == "2"
    # The agents' views (stats, dashboard, metrics) are published on the host's loopback only.
    assert all(p.startswith("127.0.0.1:") for p in services["agents"]["ports"])
    assert services["api"]["command"] == ["nexus", "api"]
    assert services["agents"]["command"] == ["nexus", "agents"]


def test_one_image_for_every_nexus_process_and_every_tag_pinned() -> None:
    services = compose(filled())["services"]
    images = {services[name]["image"] for name in NEXUS_SERVICES}
    assert images == {"nexus:2026.12.1"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    for name, service in services.items():
        repo, _, tag = service["image"].rpartition(":")
        assert repo and tag and tag != "latest", name
        assert re.search(r"\d", tag), f"{name}: {tag} is not a version"
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base and ":" in base[1] and not base[1].endswith(":latest")
    installs = re.findall(r"pip install[^\n]*", dockerfile)
    assert installs and all("[dev]" not in line for line in installs)
