"""Processes a test keeps running for a block: stopped when the block ends, however it
ends (a failed start of a later one included)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from nexus.config import Settings
from tests.support.processes import Child, start_agents
from tests.support.services import Broker, broker_ready, free_port


@asynccontextmanager
async def running(start: Awaitable[Child]) -> AsyncIterator[Child]:
    """`async with running(start_agents(settings, logs_dir)) as child:`"""
    child = await start
    try:
        yield child
    finally:
        child.stop()


@asynccontextmanager
async def workers(
    settings: Settings,
    logs_dir: Path,
    names: Iterable[str],
    *,
    on_exit: Callable[[Child], None] = Child.stop,
) -> AsyncIterator[dict[str, Child]]:
    """One agents worker per name, each on its own web port, with the worker id
    `<name>-<random>` (so a lease owner names its worker); `on_exit` ends each."""
    started: dict[str, Child] = {}
    try:
        for name in names:
            own = settings.model_copy(update={"agents_web_port": free_port()})
            worker_id = f"{name}-{uuid.uuid4().hex[:6]}"
            started[name] = await start_agents(own, logs_dir, name=name, worker_id=worker_id)
        yield started
    finally:
        for child in started.values():
            on_exit(child)


def worker_name(worker_id: str) -> str:
    """The name given to `workers` of the worker with this id."""
    return worker_id.split("-", 1)[0]


@asynccontextmanager
async def own_broker(log_path: Path) -> AsyncIterator[Broker]:
    """A broker for one test alone (one it may stop and start again), ready to use."""
    broker = Broker(port=free_port(), log_path=log_path)
    broker.start()
    try:
        await broker_ready(broker.bootstrap)
        yield broker
    finally:
        broker.stop()
