"""Start the API and agents as real subprocesses for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from cli.serve import agents_argv, api_argv
from nexus.config import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The NEXUS_* environment that reproduces `settings` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
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
        env[f"NEXUS_{name.upper()}"] = str(value)
    env.update(extra)
    return env


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

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


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Child:
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Child(name, proc, log_path)


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


async def start_api(settings: Settings, log_dir: Path) -> Child:
    child = spawn(
        "api",
        api_argv(settings),
        settings_env(settings),
        log_dir,
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
) -> Child:
    env = settings_env(settings)
    if worker_id:
        env["NEXUS_AGENTS_WORKER_ID"] = worker_id
    child = spawn(
        name,
        agents_argv(settings),
        env,
        log_dir,
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
