"""`nexus dev`: the whole stack on embedded defaults, stopped cleanly on Ctrl-C/SIGTERM.

1. broker: use NEXUS_KAFKA_BOOTSTRAP if a broker answers there, else start Tansu on that
   host:port (in memory); create the topics;
2. database: use NEXUS_DATABASE_URL if a PostgreSQL server answers at its host:port, else
   start the embedded PostgreSQL with its data under ./var/pg on 127.0.0.1 (the URL's port
   if free, else a free port) and rewrite the URL for the children;
3. create the database if missing, apply migrations;
4. start the API and one agents worker with the resolved environment;
5. print the URLs; wait; stop everything this command started (newest first) on a signal or
   as soon as any child exits (then exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cli.common import EXIT_FAILURE, EXIT_OK, SubParsers, err, out
from cli.database import ensure_database, host_port, parse_url, server_answers, with_host_port
from cli.dev_token import DEV_SECRET_FILE, load_or_create_dev_secret
from cli.serve import api_argv, bootstrap_host_port, broker_argv, supervised_agents_argv
from nexus.config import Env, Settings
from nexus.db.migrate import migrate
from nexus.messaging.topics import Topics
from runtime.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError
from runtime.kafka import ClientOptions, broker_answers, client_options, ensure_topics
from runtime.processes import ManagedProcess, Supervisor, stop_signals, wait_until

log = logging.getLogger(__name__)

VAR_DIR = Path("var")
BROKER_START_SECONDS = 30.0
STOP_SECONDS = 10.0


class DevError(RuntimeError):
    """A step of `nexus dev` failed; the message says which and why."""


class StartupInterruptedError(Exception):
    """A stop signal arrived while the stack was still starting."""


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run the whole stack locally (broker, database, API, agents)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=STOP_SECONDS,
        help="seconds each child gets after SIGTERM before SIGKILL (default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Like the servers we start: a port left in TIME_WAIT by a stopped server is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _probe_broker(bootstrap: str, *, timeout: float, options: ClientOptions) -> bool:
    """Does a broker answer? aiokafka logs each refused connection at ERROR: mute that."""
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(broker_answers(bootstrap, timeout_seconds=timeout, options=options))
    finally:
        kafka_log.setLevel(level)


@dataclass
class DevStack:
    """What `nexus dev` resolved and started."""

    settings: Settings
    supervisor: Supervisor
    stop_timeout: float
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    broker: ManagedProcess | None = None
    postgres: ManagedProcess | None = None
    api: ManagedProcess | None = None
    agents: ManagedProcess | None = None
    generated_secret: bool = False

    # -- helpers ---------------------------------------------------------------------------

    def _abort_if(self, child: ManagedProcess | None) -> Callable[[], str | None]:
        def reason() -> str | None:
            if self.supervisor.stop_flag.is_set():
                return "stop requested"
            if child is not None and not child.alive():
                return f"{child.name} exited with status {child.popen.returncode}"
            return None

        return reason

    def _check_stop(self) -> None:
        if self.supervisor.stop_flag.is_set():
            raise StartupInterruptedError

    def _spawn(self, name: str, argv: list[str], **kwargs: object) -> ManagedProcess:
        child = self.supervisor.spawn(name, argv, env=self.env, **kwargs)
        out(f"started {name} pid={child.pid}")
        return child

    # -- steps -----------------------------------------------------------------------------

    def start_broker(self) -> None:
        bootstrap = self.settings.kafka_bootstrap
        options = client_options(self.settings)
        if _probe_broker(bootstrap, timeout=2.0, options=options):
            out(f"using the broker at {bootstrap}")
        else:
            host, port = bootstrap_host_port(bootstrap)
            self.broker = self._spawn(
                "broker", broker_argv(host, port), log_path=VAR_DIR / "log" / "broker.log"
            )
            try:
                ready = wait_until(
                    lambda: _probe_broker(bootstrap, timeout=1.0, options=options),
                    timeout=BROKER_START_SECONDS,
                    abort=self._abort_if(self.broker),
                )
            except RuntimeError as exc:
                self._check_stop()
                raise DevError(f"the broker failed to start: {exc}") from None
            if not ready:
                raise DevError(f"the broker at {bootstrap} did not answer in time")
        self._check_stop()
        specs = Topics.from_settings(self.settings).specs()
        asyncio.run(ensure_topics(bootstrap, specs, options=options))

    def start_database(self) -> None:
        url = self.settings.database_url
        if asyncio.run(server_answers(url)):
            out(f"using the PostgreSQL server at {':'.join(map(str, host_port(url)))}")
            return
        _, wanted = host_port(url)
        port = wanted if port_is_free("127.0.0.1", wanted) else free_port()
        pg = EmbeddedPostgres(
            data_dir=VAR_DIR / "pg",
            port=port,
            role=parse_url(url).username or "postgres",
            log_path=VAR_DIR / "log" / "postgres.log",
        )
        try:
            pg.prepare()
            self.postgres = self.supervisor.add(pg.start())
            out(f"started postgres pid={self.postgres.pid}")
            pg.wait_ready(self.postgres, abort=self._abort_if(None))
        except EmbeddedPostgresError as exc:
            self._check_stop()
            raise DevError(f"the embedded PostgreSQL failed: {exc}") from None
        self._use_database_url(with_host_port(url, "127.0.0.1", port))

    def _use_database_url(self, url: str) -> None:
        self.settings = self.settings.model_copy(update={"database_url": url})
        self.env["NEXUS_DATABASE_URL"] = url

    def migrate(self) -> None:
        url = self.settings.database_url
        if asyncio.run(ensure_database(url)):
            out(f"created database {parse_url(url).database}")
        self._check_stop()
        migrate(url, "upgrade", "head")
        out("migrations applied (head)")

    def dev_secret(self) -> None:
        s = self.settings
        if s.env == Env.LOCAL and s.jwt_hs256_secret is None and not s.jwks_url:
            self.env["NEXUS_JWT_HS256_SECRET"] = load_or_create_dev_secret()
            self.generated_secret = True

    def start_processes(self) -> None:
        self.env["NEXUS_KAFKA_BOOTSTRAP"] = self.settings.kafka_bootstrap
        self.api = self._spawn("api", api_argv(self.settings))
        # Through `nexus agents`, which restarts a worker that fails on its own.
        self.agents = self._spawn("agents", supervised_agents_argv())

    def print_summary(self) -> None:
        s = self.settings
        api = f"http://{s.api_host}:{s.api_port}"
        agents = f"http://127.0.0.1:{s.agents_web_port}"
        db = parse_url(s.database_url).render_as_string(hide_password=True)
        broker = "started here" if self.broker else "external"
        database = f"embedded, data in {VAR_DIR / 'pg'}" if self.postgres else "external"
        out("")
        out("Nexus dev stack:")
        out(f"  API         {api}   (health {api}/health, ready {api}/ready)")
        out(f"  API docs    {api}/docs   (OpenAPI {api}/openapi.json)")
        out(f"  Dashboard   {agents}/nexus/dashboard   (stats {agents}/nexus/stats)")
        out(f"  Agents web  {agents}/nexus/ready   (metrics {agents}/metrics)")
        out(f"  Broker      {s.kafka_bootstrap}   ({broker})")
        out(f"  Database    {db}   ({database})")
        out(f"  Logs        {VAR_DIR / 'log'}/ (broker, postgres); API and agents below")
        if self.generated_secret:
            out(f"  JWT         HS256 dev secret in {DEV_SECRET_FILE} (NEXUS_JWT_HS256_SECRET)")
            out("              mint a user token: nexus dev-token --sub <uuid>")
        out("Press Ctrl-C to stop everything.")
        out("")


def _bring_up(stack: DevStack) -> None:
    stack.start_broker()
    stack._check_stop()
    stack.start_database()
    stack._check_stop()
    stack.migrate()
    stack._check_stop()
    stack.dev_secret()
    stack.start_processes()
    stack.print_summary()


def run(args: argparse.Namespace, settings: Settings) -> int:
    with stop_signals() as stop:
        supervisor = Supervisor(stop)
        stack = DevStack(settings, supervisor, stop_timeout=args.stop_timeout)
        try:
            _bring_up(stack)
            dead = supervisor.wait()
        except StartupInterruptedError:
            dead = None
        except DevError as exc:
            err(f"error: {exc}")
            return EXIT_FAILURE
        except Exception as exc:
            log.exception("nexus dev failed")
            err(f"error: nexus dev failed: {type(exc).__name__}: {exc}")
            return EXIT_FAILURE
        finally:
            out("stopping ...")
            supervisor.shutdown(args.stop_timeout)
            out("stopped")
        if dead is not None:
            err(f"error: {dead.name} (pid {dead.pid}) exited unexpectedly, status {dead.stop()}")
            return EXIT_FAILURE
        return EXIT_OK
