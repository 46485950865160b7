"""A long backfill (thousands of small chunks) that one of two real workers is running:
the set-up of the tests that take a worker away mid-job and watch the other finish."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.messaging.topics import Topics
from tests.support import backfill_jobs as jobs
from tests.support.processes import Child, poll
from tests.support.running import worker_name, workers

# A lease far longer than the test: the other worker may only finish early because the
# first one gave the job back (drain) or was seen dead (missed heartbeats).
LONG_LEASE = {"lease_seconds": 120.0, "worker_heartbeat_seconds": 0.5, "backfill_chunk_size": 40}


@dataclass
class LongJob:
    user: uuid.UUID
    default_library_id: uuid.UUID
    n_media: int
    holder: str  # the worker id holding the lease
    workers: dict[str, Child]

    @property
    def running_worker(self) -> Child:
        return self.workers[worker_name(self.holder)]

    @property
    def other_worker(self) -> Child:
        (other,) = (c for n, c in self.workers.items() if n != worker_name(self.holder))
        return other


@asynccontextmanager
async def long_job_on_one_of_two(
    sm: async_sessionmaker[AsyncSession],
    settings: Settings,
    logs_dir: Path,
    names: tuple[str, str],
    *,
    n_media: int = 20_000,
    on_exit: Callable[[Child], None] = Child.stop,
) -> AsyncIterator[LongJob]:
    """Two workers named `names`; a new member of a library of `n_media` starts a backfill;
    the block starts once one worker holds its lease. `on_exit` ends both workers."""
    owner, lib = await jobs.shared_library(sm, n_media)
    async with workers(settings, logs_dir, names, on_exit=on_exit) as started:
        user, d, _ = await jobs.accepted_invite(sm, Topics.from_settings(settings), owner, lib)
        holder = await poll(
            lambda: jobs.running_lease_owner(sm, user), deadline_s=60, what="the job to run"
        )
        yield LongJob(user, d, n_media, holder, started)
