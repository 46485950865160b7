"""Start the API and agents as real subprocesses for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import AliasChoices

from cli.serve import agents_argv, api_argv
from nexus.config import Settings


def _env_name(name: str) -> str:
    """The variable a setting is read from: NEXUS_<NAME>, or its standard name (aliased
    settings such as OTEL_EXPORTER_OTLP_ENDPOINT)."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return f"NEXUS_{name.upper()}"


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The NEXUS_* environment that reproduces `settings` in a child process."""
    aliased = {_env_name(name) for name in Settings.model_fields} - {
        f"NEXUS_{name.upper()}" for name in Settings.model_fields
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_") and k not in aliased}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif hasattr(value, "value"):
            value = value.value
        env[_env_name(name)] = str(value)
    env.update(extra)
    return env


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    # Set when stderr was kept apart from stdout (`spawn(..., separate_stderr=True)`).
    stderr_path: Path | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        tails = []
        for path in (self.log_path, self.stderr_path):
            try:
                if path is not None:
                    tails += path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(tails)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def spawn(
    name: str, argv: list[str], env: dict[str, str], log_dir: Path, *, separate_stderr: bool = False
) -> Child:
    """Start `argv` in its own session; stdout (and stderr, unless `separate_stderr`: then
    `<name>.stderr.log`) go to `<name>.log` in `log_dir`."""
    log_path = log_dir / f"{name}.log"
    stderr_path = log_dir / f"{name}.stderr.log" if separate_stderr else None
    with contextlib.ExitStack() as files:
        log = files.enter_context(log_path.open("ab"))
        err = files.enter_context(stderr_path.open("ab")) if stderr_path else subprocess.STDOUT
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=err, start_new_session=True)
    return Child(name, proc, log_path, stderr_path)


async def wait_http(child: Child, url: str, *, deadline_s: float = 60.0, status: int = 200) -> None:
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
            try:
                resp = await client.get(url)
                if resp.status_code == status:
                    return
                last = f"{resp.status_code} {resp.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{child.name} not ready at {url}: {last}\n{child.log_tail()}")


async def start_api(
    settings: Settings,
    log_dir: Path,
    *,
    name: str = "api",
    env: dict[str, str] | None = None,
    separate_stderr: bool = False,
) -> Child:
    """The API process; `env` adds variables (e.g. OTEL_*) to the settings' environment."""
    child = spawn(
        name,
        api_argv(settings),
        settings_env(settings, **(env or {})),
        log_dir,
        separate_stderr=separate_stderr,
    )
    await wait_http(child, f"http://127.0.0.1:{settings.api_port}/health")
    return child


async def start_agents(
    settings: Settings,
    log_dir: Path,
    *,
    name: str = "agents",
    wait_ready: bool = True,
    worker_id: str | None = None,
    env: dict[str, str] | None = None,
    separate_stderr: bool = False,
) -> Child:
    child_env = settings_env(settings, **(env or {}))
    if worker_id:
        child_env["NEXUS_AGENTS_WORKER_ID"] = worker_id
    child = spawn(
        name,
        agents_argv(settings),
        child_env,
        log_dir,
        separate_stderr=separate_stderr,
    )
    if wait_ready:
        await wait_http(child, f"http://127.0.0.1:{settings.agents_web_port}/nexus/ready")
    return child


async def poll(
    predicate, *, deadline_s: float = 30.0, interval: float = 0.1, what: str = "condition"
):  # type: ignore[no-untyped-def]
    """Await `predicate()` until it returns a truthy value; fail after the deadline."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")
