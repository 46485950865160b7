"""Child-process supervision for the CLI: foreground runs and a small supervisor.

Every child starts in its own session (so its own process group): a Ctrl-C in the terminal
reaches only the parent, which then stops the children in order, each with SIGTERM to the
whole group and SIGKILL after a deadline. Nothing here is ever killed by name: only the
process groups this module started.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(returncode: int) -> int:
    """A shell-style exit status: a child killed by signal N becomes 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class ManagedProcess:
    """A child this process started, in its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    # Optional graceful stop (e.g. `pg_ctl stop`); falls back to SIGTERM/SIGKILL of the group.
    graceful_stop: Callable[[ManagedProcess, float], None] | None = None
    _group_swept: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, signum: int) -> None:
        """Signal the child's whole process group (the child leads it)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the child and everything in its group; return its exit status.

        Graceful stop (or SIGTERM) first, SIGKILL once `timeout` seconds have passed.
        Idempotent: stopping an exited child only reaps stragglers of its group.
        """
        if self.alive():
            if self.graceful_stop is not None:
                try:
                    self.graceful_stop(self, timeout)
                    # Give the graceful stop its chance before escalating to SIGTERM.
                    self.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    log.warning("%s ignored its graceful stop", self.name)
                except Exception:
                    log.exception("graceful stop of %s failed", self.name)
            if self.alive():
                self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs: killing it", self.name, timeout)
                self.signal_group(signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        if not self._group_swept:
            # The leader is gone; no member of its group may outlive it. Done once, right
            # after reaping, so a later call can never hit a recycled process group id.
            self._group_swept = True
            self.signal_group(signal.SIGKILL)
        return exit_code(self.popen.returncode)


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGTERM when this process dies, even by
    SIGKILL (Linux `prctl(PR_SET_PDEATHSIG)`): a child in its own session would otherwise
    outlive its supervisor as an orphan still holding partitions or a port."""
    if not sys.platform.startswith("linux"):
        return None

    def hook() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the hook ran
            os._exit(1)

    return hook


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    log_path: Path | None = None,
    user: str | None = None,
    graceful_stop: Callable[[ManagedProcess, float], None] | None = None,
) -> ManagedProcess:
    """Start `argv` in a new session; output goes to `log_path` (appended) or is inherited."""
    with contextlib.ExitStack() as stack:
        log_file: IO[bytes] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            # The child keeps its own copy of the descriptor; ours closes on exit.
            log_file = stack.enter_context(log_path.open("ab"))
        popen = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT if log_file is not None else None,
            start_new_session=True,
            user=user,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    return ManagedProcess(name, popen, graceful_stop=graceful_stop)


class StopRequested:
    """Records the first SIGINT/SIGTERM; handlers only set a flag (async-signal safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@contextlib.contextmanager
def stop_signals() -> Iterator[StopRequested]:
    """Route SIGINT/SIGTERM to a flag for the duration of the block, then restore."""
    flag = StopRequested()
    previous = {sig: signal.signal(sig, flag) for sig in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Supervisor:
    """Starts children, watches them, and stops them all in reverse start order."""

    def __init__(self, stop: StopRequested) -> None:
        self.stop_flag = stop
        self.children: list[ManagedProcess] = []

    def add(self, child: ManagedProcess) -> ManagedProcess:
        self.children.append(child)
        return child

    def spawn(self, name: str, argv: Sequence[str], **kwargs: object) -> ManagedProcess:
        return self.add(spawn(name, argv, **kwargs))  # type: ignore[arg-type]

    def first_exited(self) -> ManagedProcess | None:
        return next((c for c in self.children if not c.alive()), None)

    def wait(self, poll_seconds: float = 0.2) -> ManagedProcess | None:
        """Block until a stop signal (→ None) or until a child exits (→ that child)."""
        while True:
            dead = self.first_exited()
            if dead is not None:
                return dead
            if self.stop_flag.wait(poll_seconds):
                return None

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every child, newest first; safe to call more than once."""
        for child in reversed(self.children):
            status = child.stop(timeout)
            log.info("%s (pid %d) stopped with status %d", child.name, child.pid, status)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.2,
    abort: Callable[[], str | None] | None = None,
) -> bool:
    """Poll `check` until it is true or `timeout` passes; `abort` returning text stops early.

    Raises RuntimeError with the abort reason (e.g. the child died, a stop was requested).
    """
    deadline = time.monotonic() + timeout
    while True:
        if abort is not None:
            reason = abort()
            if reason:
                raise RuntimeError(reason)
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run_foreground(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stop_timeout: float = 15.0,
) -> int:
    """Run one child until it exits; forward SIGINT/SIGTERM to its group; return its status.

    After a forwarded signal the child gets `stop_timeout` seconds before SIGKILL.
    """
    with stop_signals() as stop:
        child = spawn(argv[0], argv, env=env)
        while child.alive() and not stop.wait(0.2):
            pass
        if child.alive() and stop.signum is not None:
            child.signal_group(stop.signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=stop_timeout)
        return child.stop(timeout=5.0)


@dataclass(frozen=True)
class RestartPolicy:
    """Back-off between restarts of a child that exited on its own with a failure: doubles
    from `first_seconds` up to `max_seconds`, and starts again from `first_seconds` once a
    child has run for `stable_after_seconds`."""

    first_seconds: float = 1.0
    max_seconds: float = 30.0
    stable_after_seconds: float = 60.0


def run_supervised(
    argv: Sequence[str],
    *,
    policy: RestartPolicy,
    env: Mapping[str, str] | None = None,
    stop_timeout: float = 15.0,
) -> int:
    """Run one child and restart it with back-off whenever it fails on its own (a watchdog
    exit, a crash). A clean exit (status 0) ends the run; SIGINT/SIGTERM are forwarded to
    the child's group, which gets `stop_timeout` seconds before SIGKILL."""
    delay = policy.first_seconds
    with stop_signals() as stop:
        while True:
            child = spawn(argv[0], argv, env=env)
            started = time.monotonic()
            while child.alive() and not stop.wait(0.2):
                pass
            if stop.signum is not None:
                if child.alive():
                    child.signal_group(stop.signum)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.popen.wait(timeout=stop_timeout)
                return child.stop(timeout=5.0)
            status = child.stop(timeout=5.0)  # reaps it and sweeps its group
            if status == 0:
                return 0
            if time.monotonic() - started >= policy.stable_after_seconds:
                delay = policy.first_seconds
            log.warning("%s exited with status %d; restarting in %.1fs", argv[0], status, delay)
            if stop.wait(delay):
                return status
            delay = min(delay * 2, policy.max_seconds)
