"""What the app carries for its handlers: settings, database, publisher, verifier, metrics."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quart import Quart, current_app
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.raw import DriverReader, driver_reading
from nexus.jobs.outbox import PublishedMarks
from nexus.messaging.publisher import Publisher

if TYPE_CHECKING:
    from nexus.db.readpool import ReadPool
    from web.metrics import HttpMetrics
    from web.tokens import TokenVerifier

EXTENSION_KEY = "nexus"


@dataclass
class NexusState:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    publisher: Publisher
    verifier: TokenVerifier
    metrics: HttpMetrics
    # Published outbox rows are marked in batches (None: one statement per request).
    marks: PublishedMarks | None = None
    # Endpoints that do not require the internal header (extend with `internal_exempt`).
    internal_exempt_endpoints: set[str] = field(default_factory=set)
    # The hot reads' own asyncpg pool (`web.uow.reading`); None: they use the engine's.
    read_pool: ReadPool | None = None

    def reading(self) -> contextlib.AbstractAsyncContextManager[DriverReader]:
        """A connection for statements that write nothing: the read pool's, else one of
        the engine's pool used through the driver (`nexus.db.raw`)."""
        if self.read_pool is not None:
            return self.read_pool.reading()
        return driver_reading(self.sessionmaker)


def nexus_state(app: Quart | None = None) -> NexusState:
    state = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(state, NexusState)
    return state
