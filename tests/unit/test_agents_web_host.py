"""The agents' web views (stats, dashboard, metrics) bind 127.0.0.1 unless
NEXUS_AGENTS_WEB_HOST says otherwise, in every environment (issue 11 §9).

The app is built in a child process, as `faust -A agents.app` builds it from the
environment; `nexus agents` passes the same host on Faust's command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli import serve
from tests.conftest import make_settings
from tests.support.env import PROD

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import agents.app as a; print(a.app.conf.web_host)"
# Production settings whose database and broker are unreachable: nothing connects.
PROD_OFFLINE = {
    **PROD,
    "NEXUS_DATABASE_URL": "postgresql+asyncpg://nexus@127.0.0.1:1/nexus",
    "NEXUS_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    "NEXUS_LOG_LEVEL": "ERROR",
}


def _web_host(extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**env, **PROD_OFFLINE, **extra},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "127.0.0.1"),
        ({"NEXUS_ENV": "staging"}, "127.0.0.1"),
        ({"NEXUS_AGENTS_WEB_HOST": "0.0.0.0"}, "0.0.0.0"),
    ],
)
def test_agents_web_views_bind_loopback_unless_told(extra: dict[str, str], expected: str) -> None:
    assert _web_host(extra) == expected


def test_nexus_agents_passes_the_host_to_faust() -> None:
    argv = serve.agents_argv(make_settings(agents_web_host="10.0.0.5"))
    assert argv[argv.index("--web-host") + 1] == "10.0.0.5"
    default = serve.agents_argv(make_settings())
    assert default[default.index("--web-host") + 1] == "127.0.0.1"
