"""Test-only faults for the watchdog's tests (`NEXUS_TEST_FAULT`, refused outside
NEXUS_ENV=test by the settings). Each imitates a real way a worker wedges:

- `block-loop:<seconds>`: the event loop is blocked (a CPU-bound or blocking call);
- `stall-consumer`: the consumer stops fetching while its partitions have messages;
- `stall-rebalance`: a partition-revocation callback never returns, so the rebalance
  never finishes.

With `NEXUS_TEST_FAULT_ONCE_FILE` only the first worker that creates that file is faulty,
so the fresh worker that replaces it shows that the jobs complete without a person.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from nexus.config import Settings

log = logging.getLogger(__name__)


def armed(settings: Settings) -> str | None:
    """The fault this worker must show, or None."""
    fault = settings.test_fault
    if fault is None:
        return None
    once = settings.test_fault_once_file
    if once is not None:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return None
    return fault


def _mark_fired(settings: Settings) -> None:
    if settings.test_fault_once_file is not None:
        with open(settings.test_fault_once_file, "a") as marker:
            marker.write("fired\n")


def _apply_later(fault: str, app: Any, settings: Settings) -> None:
    """Faults of a running worker: applied once recovery has resumed the flow."""
    _mark_fired(settings)
    if fault.startswith("block-loop:"):
        time.sleep(float(fault.split(":", 1)[1]))  # blocks the loop, like a runaway call
    elif fault == "stall-consumer":
        app.consumer.stop_flow()  # fetches go on (high watermarks move), nothing is delivered


async def inject(fault: str, app: Any, settings: Settings) -> None:
    """Inject `fault` (called from the first rebalance: `stall-rebalance` from the
    revocation that starts it, the others from the assignment that ends it). The once-file,
    if any, says `fired` when the fault takes effect, so a test knows the worker is wedged
    from then on."""
    log.warning("test fault injected: %s", fault)
    if fault == "stall-rebalance":
        _mark_fired(settings)
        await asyncio.Event().wait()  # never returns: the rebalance never finishes
    elif fault.startswith("block-loop:") or fault == "stall-consumer":
        asyncio.get_running_loop().call_later(1.5, _apply_later, fault, app, settings)
    else:
        raise ValueError(f"unknown NEXUS_TEST_FAULT {fault!r}")


def connect(fault: str, app: Any, settings: Settings) -> None:
    """Hook `fault` into the app's rebalance signals."""
    signal = app.on_partitions_revoked if fault == "stall-rebalance" else app.on_partitions_assigned

    @signal.connect
    async def on_rebalance(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await inject(fault, app, settings)
