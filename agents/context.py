"""What every agent needs, created inside the worker's event loop (never at import)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agents.rates import RateWindow
from nexus.config import Settings
from nexus.db.engine import make_engine, make_sessionmaker
from nexus.db.tx import transaction
from nexus.extraction.pool import ExtractionPool
from nexus.jobs import outbox
from nexus.jobs.machine import JobType
from nexus.jobs.worker import JobPolicy, OnFinish, Staged, Work, run_job
from nexus.messaging.topics import Topics
from nexus.metrics import count_transitions, noted_transitions
from nexus.workers.service import new_worker_id
from runtime.kafka import KafkaPublisher
from runtime.logs import configure_logging
from runtime.metrics import Metrics


def default_worker_id(settings: Settings) -> str:
    return settings.agents_worker_id or new_worker_id()


@dataclass
class AgentContext:
    settings: Settings
    topics: Topics
    worker_id: str
    engine: AsyncEngine | None = None
    sessionmaker: async_sessionmaker[AsyncSession] | None = None
    publisher: KafkaPublisher | None = None
    extraction: ExtractionPool | None = None
    marks: outbox.PublishedMarks | None = None
    counters: Counter[str] = field(default_factory=Counter)
    # Messages each agent finished with over the last minute (`rates` in /nexus/stats).
    rates: RateWindow = field(default_factory=RateWindow)
    # Self-healing state (agents/lifecycle.py, agents/watchdog.py): set once SIGTERM starts
    # the drain; messages being handled now; when a message was last taken or finished;
    # why the watchdog judged this worker wedged.
    draining: bool = False
    inflight: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    stall_reason: str | None = None
    # Lag of the assigned partitions, refreshed by the watchdog's ticker (agents/watchdog.py).
    lags: list[Any] = field(default_factory=list)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    # This worker's Prometheus registry (`GET /metrics`); the job code reports to it.
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.idle.set()
        self.metrics = Metrics(
            db_cache_seconds=self.settings.metrics_db_cache_seconds,
            heartbeat_seconds=self.settings.worker_heartbeat_seconds,
            engine=lambda: self.engine,
        )

    def work_started(self) -> None:
        self.inflight += 1
        self.idle.clear()
        self.last_progress = time.monotonic()

    def work_finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.idle.set()
        self.last_progress = time.monotonic()

    _warm_up: asyncio.Future[tuple[None, bool]] = field(init=False, repr=False)

    @classmethod
    def create(cls, settings: Settings) -> AgentContext:
        return cls(
            settings=settings,
            topics=Topics.from_settings(settings),
            worker_id=default_worker_id(settings),
        )

    async def open(self) -> None:
        self.engine = make_engine(self.settings)
        self.sessionmaker = make_sessionmaker(self.engine)
        self.marks = outbox.PublishedMarks(self.sessionmaker)
        self.publisher = KafkaPublisher.from_settings(
            self.settings, timeout_seconds=self.settings.publish_timeout_seconds
        )
        self.extraction = ExtractionPool(
            processes=self.settings.ingest_extract_processes,
            timeout_seconds=self.settings.ingest_extract_timeout_seconds,
            memory_mb=self.settings.ingest_extract_memory_mb or None,
            child_setup=functools.partial(
                configure_logging, self.settings, fields={"worker_id": self.worker_id}
            ),
        )
        # Start the processes (spawn + imports, ~1 s) and the producer while Faust joins
        # the group, so the first document does not wait for them; a failure here shows
        # on first use.
        self._warm_up = asyncio.ensure_future(
            asyncio.gather(
                self.extraction.warm_up(),
                self.publisher.warm_up([spec.name for spec in self.topics.specs()]),
            )
        )

    async def close(self) -> None:
        if self.extraction is not None:
            self._warm_up.cancel()
            await asyncio.to_thread(self.extraction.close)
        if self.marks is not None:
            await self.marks.close()
        if self.publisher is not None:
            await self.publisher.close()
        if self.engine is not None:
            await self.engine.dispose()

    @property
    def db(self) -> async_sessionmaker[AsyncSession]:
        if self.sessionmaker is None:
            raise RuntimeError("agent context is not open")
        return self.sessionmaker

    async def run_attempt(
        self,
        job: JobType,
        key: Mapping[str, Any],
        work: Work | Staged,
        *,
        delays: Sequence[float],
        on_finish: OnFinish,
    ) -> str:
        """One attempt of `job` for `key`, leased by this worker and reported to its
        metrics; the outcome's value (what the agent counts)."""
        policy = JobPolicy(
            owner=self.worker_id, lease_seconds=self.settings.lease_seconds, delays=delays
        )
        outcome = await run_job(
            self.db, job, key, work, policy, on_finish=on_finish, metrics=self.metrics
        )
        return outcome.value

    @property
    def extractors(self) -> ExtractionPool:
        if self.extraction is None:
            raise RuntimeError("agent context is not open")
        return self.extraction

    @property
    def pub(self) -> KafkaPublisher:
        if self.publisher is None:
            raise RuntimeError("agent context is not open")
        return self.publisher

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction; once it committed, the job transitions it made are counted and
        its outbox rows published."""
        async with transaction(self.db) as session:
            yield session
            rows = outbox.enqueued(session)
            moved = noted_transitions(session)
        count_transitions(self.metrics, moved)
        if rows:
            # Never fail the message for a publish problem: the relay retries.
            with contextlib.suppress(Exception):
                await asyncio.shield(outbox.publish_enqueued(self.db, self.pub, rows, self.marks))
