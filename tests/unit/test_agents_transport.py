"""The agents' Faust transport builds its consumer with our fetch wait, not Faust's 1.5 s.

Why it matters (Tansu does not wake a waiting multi-partition fetch, so an idle worker saw
a new job only after the rest of the wait) is measured by `bench/ingest.py`
(`first_claim_after_s`) and described in agents/transport.py. The app is built in a child
process, as `faust -A agents.app` builds it (from the environment, with its own loop).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import asyncio
import agents.app as a
async def main():
    consumer = a.app.consumer._thread._create_worker_consumer(a.app.transport)
    print(type(a.app.transport).__module__, consumer._fetch_max_wait_ms)
    await consumer.stop()
asyncio.run(main())
"""


def test_the_worker_consumer_waits_at_most_the_configured_fetch_wait() -> None:
    env = {
        **os.environ,
        "NEXUS_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "NEXUS_KAFKA_FETCH_MAX_WAIT_MS": "123",
        "NEXUS_LOG_LEVEL": "ERROR",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # Faust's own transport would pass 1500 to AIOKafkaConsumer's fetcher.
    assert done.stdout.split() == ["agents.transport", "123"]
