"""What every agent needs, created inside the worker's event loop (never at import)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.engine import make_engine, make_sessionmaker
from nexus.db.tx import transaction
from nexus.extraction.pool import ExtractionPool
from nexus.jobs import outbox
from nexus.messaging.topics import Topics
from runtime.kafka import KafkaPublisher


def default_worker_id(settings: Settings) -> str:
    return settings.agents_worker_id or f"{socket.gethostname()}:{os.getpid()}"


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
        """One transaction; its outbox rows are published right after commit."""
        async with transaction(self.db) as session:
            yield session
            rows = outbox.enqueued(session)
        if rows:
            # Never fail the message for a publish problem: the relay retries.
            with contextlib.suppress(Exception):
                await asyncio.shield(outbox.publish_enqueued(self.db, self.pub, rows, self.marks))
