"""What the app carries for its handlers: settings, database, publisher, verifier, metrics."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quart import Quart, current_app
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.raw import DriverReader
from nexus.jobs.outbox import PublishedMarks
from nexus.messaging.publisher import Publisher
from web import frame

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
    # The hot reads' own asyncpg pool (`web.uow.reading`).
    read_pool: ReadPool
    # Published outbox rows are marked in batches (None: one statement per request).
    marks: PublishedMarks | None = None
    # Endpoints that do not require the internal header (extend with `internal_exempt`).
    internal_exempt_endpoints: set[str] = field(default_factory=set)

    def reading(self) -> contextlib.AbstractAsyncContextManager[DriverReader]:
        """A connection of the read pool for statements that write nothing."""
        return self.read_pool.reading()


def nexus_state(app: Quart | None = None) -> NexusState:
    """The app's state: `app`'s, else the current request's (its frame, read without a
    context proxy), else the current app's."""
    if app is None:
        current = frame.current()
        if current is not None:
            return current.state
    state = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(state, NexusState)
    return state
