"""Kafka security settings (SPEC §10) reach every client we build: the processes'
publisher, the operator commands' consumers, admin clients, and the agents' Faust app.

Tansu (the test broker) has no SASL, so these tests inspect the clients as built (their
aiokafka connection settings) instead of connecting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import certifi
import pytest

from cli.ops.broker import build_consumer
from nexus.config import SettingsError, load_settings
from runtime.kafka import KafkaPublisher, client_options, new_admin
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
SASL_SSL: dict[str, Any] = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "nexus-api",
    "kafka_sasl_password": "s3cret-password",
    "kafka_ssl_cafile": certifi.where(),
}


def _client_security(client: Any) -> tuple[Any, ...]:
    """What an aiokafka client will use on every connection it opens."""
    return (
        client._security_protocol,
        client._sasl_mechanism,
        client._sasl_plain_username,
        client._sasl_plain_password,
        client._ssl_context is not None,
    )


EXPECTED = ("SASL_SSL", "SCRAM-SHA-512", "nexus-api", "s3cret-password", True)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "NEXUS_KAFKA_SASL_MECHANISM"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN"},
            "NEXUS_KAFKA_SASL_USERNAME",
        ),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
            },
            "NEXUS_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"}, "NEXUS_KAFKA_SASL_"),
        ({"kafka_ssl_cafile": certifi.where()}, "NEXUS_KAFKA_SSL_CAFILE"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"},
            "NEXUS_KAFKA_SSL_CAFILE",
        ),
    ],
)
def test_inconsistent_security_settings_are_refused_naming_the_variable(
    values: dict[str, Any], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env="test", **values)


def test_unknown_protocol_or_mechanism_is_refused() -> None:
    with pytest.raises(SettingsError, match="kafka_security_protocol"):
        load_settings(env="test", kafka_security_protocol="SASL")
    with pytest.raises(SettingsError, match="kafka_sasl_mechanism"):
        load_settings(
            env="test",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="GSSAPI",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )


def test_client_options_per_protocol() -> None:
    assert client_options(make_settings()) == {"security_protocol": "PLAINTEXT"}
    ssl_only = client_options(make_settings(kafka_security_protocol="SSL"))
    assert ssl_only["security_protocol"] == "SSL" and "sasl_mechanism" not in ssl_only
    sasl = client_options(make_settings(**SASL_SSL))
    assert sasl["sasl_mechanism"] == "SCRAM-SHA-512"
    assert sasl["sasl_plain_username"] == "nexus-api"
    assert sasl["sasl_plain_password"] == "s3cret-password"
    assert sasl["ssl_context"] is not None


async def test_publisher_consumer_and_admin_are_built_with_the_settings() -> None:
    settings = make_settings(**SASL_SSL)
    producer = KafkaPublisher.from_settings(settings, timeout_seconds=1).new_producer()
    consumer = build_consumer(settings)
    admin = new_admin(settings.kafka_bootstrap, timeout_seconds=1, options=client_options(settings))
    try:
        assert _client_security(producer.client) == EXPECTED
        assert _client_security(consumer._client) == EXPECTED
        assert _client_security(admin._client) == EXPECTED
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()


async def test_the_api_publisher_uses_the_settings() -> None:
    from web.app import create_app
    from web.state import EXTENSION_KEY

    app = create_app(make_settings(**SASL_SSL))
    producer = app.extensions[EXTENSION_KEY].publisher.new_producer()
    try:
        assert _client_security(producer.client) == EXPECTED
    finally:
        await producer.stop()


FAUST_PROBE = """
import asyncio
import agents.app as a
async def main():
    consumer = a.app.consumer._thread._create_worker_consumer(a.app.transport)
    producer = a.app.producer._new_producer()
    for client in (consumer._client, producer.client):
        print(client._security_protocol, client._sasl_mechanism, client._sasl_plain_username,
              client._sasl_plain_password, client._ssl_context is not None)
    await consumer.stop()
    await producer.stop()
asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (SASL_SSL, EXPECTED),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": certifi.where()},
            # aiokafka's default mechanism; not used without SASL.
            ("SSL", "PLAIN", None, None, True),
        ),
    ],
)
def test_the_agents_faust_consumer_and_producer_use_the_settings(
    values: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    # Built in a child process, as `faust -A agents.app worker` builds it (from the
    # environment, with its own loop).
    env = {
        **os.environ,
        "NEXUS_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "NEXUS_LOG_LEVEL": "ERROR",
        **{f"NEXUS_{name.upper()}": str(value) for name, value in values.items()},
    }
    done = subprocess.run(
        [sys.executable, "-c", FAUST_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    line = " ".join(str(part) for part in expected)
    assert done.stdout.splitlines() == [line, line]


CLIENT_CLASSES = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}


def test_no_kafka_client_is_built_outside_runtime_kafka() -> None:
    """Every client must carry the security options: the only constructors of aiokafka
    clients are the factories of runtime/kafka.py (which take `client_options`)."""
    import ast

    offenders = []
    for package in ("nexus", "web", "agents", "runtime", "cli"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "runtime" / "kafka.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if name in CLIENT_CLASSES:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert offenders == []
