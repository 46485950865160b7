"""runtime.processes: children in their own groups, stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.processes import StopRequested, Supervisor, exit_code, spawn, wait_until

PY = sys.executable


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def _python(code: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -c code` for the block; killed if it outlives it."""
    proc = subprocess.Popen([PY, "-c", code])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run_foreground(child: str) -> str:
    """Code of a parent that runs `python -c child` with runtime.processes.run_foreground."""
    return (
        "import sys; from runtime.processes import run_foreground;"
        f"sys.exit(run_foreground([{PY!r}, '-c', {child!r}]))"
    )


def test_exit_code() -> None:
    assert exit_code(0) == 0
    assert exit_code(3) == 3
    assert exit_code(-signal.SIGTERM) == 128 + signal.SIGTERM


def test_stop_kills_the_whole_group_and_logs(tmp_path: Path) -> None:
    grandchild_pid = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(60)']);"
        f"open({str(grandchild_pid)!r}, 'w').write(str(p.pid));"
        "print('hello', flush=True);"
        "time.sleep(60)"
    )
    log = tmp_path / "log" / "child.log"
    child = spawn("child", [PY, "-c", script], log_path=log)
    assert os.getpgid(child.pid) == child.pid  # leads its own group
    assert wait_until(grandchild_pid.exists, timeout=10)
    assert wait_until(lambda: "hello" in log.read_text(), timeout=10)
    grandchild = int(grandchild_pid.read_text())
    assert child.stop(timeout=5) == 128 + signal.SIGTERM
    assert wait_until(lambda: not pid_alive(grandchild), timeout=5)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = (
        "import signal, time;"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        f"open({str(ready)!r}, 'w').close();"
        "time.sleep(60)"
    )
    child = spawn("stubborn", [PY, "-c", script])
    assert wait_until(ready.exists, timeout=10)
    started = time.monotonic()
    assert child.stop(timeout=0.5) == 128 + signal.SIGKILL
    assert time.monotonic() - started < 5


def test_graceful_stop_is_used_first(tmp_path: Path) -> None:
    calls: list[str] = []

    def graceful(proc: object, timeout: float) -> None:
        calls.append("graceful")
        child.signal_group(signal.SIGINT)

    # A shell running us in the background starts us with SIGINT ignored, and children
    # inherit that: the child re-enables it and says so before we send the graceful signal.
    ready = tmp_path / "ready"
    script = (
        "import pathlib, signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
    )
    child = spawn("g", [PY, "-c", script, str(ready)], graceful_stop=graceful)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, "child never became ready"
        time.sleep(0.01)  # polling interval, not synchronisation
    assert child.stop(timeout=5) == 128 + signal.SIGINT
    assert calls == ["graceful"]
    assert child.stop(timeout=1) == 128 + signal.SIGINT  # idempotent


def test_supervisor_reports_the_first_child_to_exit() -> None:
    supervisor = Supervisor(StopRequested())
    long = supervisor.spawn("long", [PY, "-c", "import time; time.sleep(60)"])
    short = supervisor.spawn("short", [PY, "-c", "raise SystemExit(3)"])
    assert supervisor.wait(poll_seconds=0.05) is short
    supervisor.shutdown(timeout=5)
    assert not long.alive()
    assert short.stop() == 3


def test_supervisor_wait_returns_none_on_stop_signal() -> None:
    flag = StopRequested()
    supervisor = Supervisor(flag)
    child = supervisor.spawn("long", [PY, "-c", "import time; time.sleep(60)"])
    flag(signal.SIGTERM, None)
    assert supervisor.wait(poll_seconds=0.05) is None
    assert flag.signum == signal.SIGTERM
    supervisor.shutdown(timeout=5)
    assert not child.alive()


def test_wait_until_aborts_with_reason() -> None:
    with pytest.raises(RuntimeError, match="gone"):
        wait_until(lambda: False, timeout=5, abort=lambda: "gone")
    assert wait_until(lambda: False, timeout=0.1, interval=0.02) is False


def test_run_foreground_forwards_the_signal_and_exits_with_the_child(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = (
        "import signal, sys, time;"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7));"
        f"open({str(ready)!r}, 'w').close();"
        "time.sleep(60)"
    )
    parent = _run_foreground(child)
    with _python(parent) as proc:
        assert wait_until(ready.exists, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 7


def test_a_child_dies_with_its_sigkilled_supervisor(tmp_path: Path) -> None:
    """SPEC §10: a SIGKILLed supervisor must not leave its child running as an orphan."""
    child_pid = tmp_path / "child.pid"
    child = (
        f"import os, time; open({str(child_pid)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    parent = _run_foreground(child)
    with _python(parent) as proc:
        assert wait_until(lambda: child_pid.exists() and child_pid.read_text() != "", timeout=10)
        pid = int(child_pid.read_text())
        proc.kill()
        proc.wait(timeout=10)
        assert wait_until(lambda: not pid_alive(pid), timeout=10), "the child outlived its parent"


def test_run_supervised_restarts_a_failing_child_with_backoff(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # Fails twice (as a watchdog exit would), then exits cleanly.
    child = (
        "import sys; from pathlib import Path;"
        f"p = Path({str(runs)!r}); n = len(p.read_text()) if p.exists() else 0;"
        "p.write_text('x' * (n + 1)); sys.exit(70 if n < 2 else 0)"
    )
    parent = (
        "import sys; from runtime.processes import RestartPolicy, run_supervised;"
        "policy = RestartPolicy(first_seconds=0.2, max_seconds=0.4, stable_after_seconds=60);"
        f"sys.exit(run_supervised([{PY!r}, '-c', {child!r}], policy=policy))"
    )
    started = time.monotonic()
    out = subprocess.run([PY, "-c", parent], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert runs.read_text() == "xxx"
    assert time.monotonic() - started >= 0.2 + 0.4  # it backed off between the restarts
    assert out.stderr.count("exited with status 70; restarting") == 2


def test_run_supervised_forwards_a_stop_and_does_not_restart(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = (
        "import signal, sys, time;"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0));"
        f"open({str(ready)!r}, 'a').write('x');"
        "time.sleep(60)"
    )
    parent = (
        "import sys; from runtime.processes import RestartPolicy, run_supervised;"
        f"sys.exit(run_supervised([{PY!r}, '-c', {child!r}], policy=RestartPolicy()))"
    )
    with _python(parent) as proc:
        assert wait_until(ready.exists, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert ready.read_text() == "x"  # started once, never restarted
