"""One request, one unit of work: a transaction, then the outbox rows it wrote go out.

    async with unit_of_work() as uow:
        result = await some_service(uow.session, ...)
    uow.enqueue_dispatched  # True when every outbox row of the transaction reached Kafka

Publishing happens after commit and never fails the request: a row that could not be
published stays in the outbox and the agents' relay publishes it later. The job
transitions the transaction made are counted after commit too (`nexus.metrics`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import structlog
from quart import g
from sqlalchemy.ext.asyncio import AsyncSession

from nexus import tracing
from nexus.db.raw import DriverReader
from nexus.db.tx import transaction
from nexus.jobs.outbox import Enqueued, PublishReport, enqueued, publish_enqueued
from nexus.metrics import JobTransition, count_transitions, noted_transitions
from nexus.users.service import NotBootstrapped
from web.auth import bootstrap, viewer_id
from web.state import NexusState, nexus_state

T = TypeVar("T")

log = structlog.get_logger("nexus.web.uow")


class UnitOfWork:
    def __init__(self, state: NexusState) -> None:
        self._state = state
        self._tx = transaction(state.sessionmaker)
        self._session: AsyncSession | None = None
        self.outbox_rows: list[Enqueued] = []
        self.report: PublishReport | None = None
        self._span = tracing.span("transaction")

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open")
        return self._session

    @property
    def enqueue_dispatched(self) -> bool:
        """Whether outbox rows were written and all of them were published after commit."""
        return bool(self.outbox_rows) and self.report is not None and self.report.all_published

    async def __aenter__(self) -> UnitOfWork:
        # The transaction's span is current while it is open: the trace context stored
        # with its outbox rows is this span's.
        self._span.__enter__()
        try:
            self._session = await self._tx.__aenter__()
        except BaseException as exc:
            self._span.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        moved: list[JobTransition] = []
        if exc_type is None:
            # Read before the session closes: the rows live in session.info.
            self.outbox_rows = enqueued(self.session)
            moved = noted_transitions(self.session)
        try:
            suppress = await self._tx.__aexit__(exc_type, exc, tb)
        finally:
            self._session = None
            self._span.__exit__(exc_type, exc, tb)
        if exc_type is None:
            count_transitions(self._state.metrics, moved)
            await self._publish()
        return suppress

    async def _publish(self) -> None:
        if not self.outbox_rows:
            return
        metric = self._state.metrics.outbox_publish
        try:
            self.report = await publish_enqueued(
                self._state.sessionmaker,
                self._state.publisher,
                self.outbox_rows,
                self._state.marks,
            )
        except Exception as exc:  # the relay will publish later; never fail the request
            log.warning("outbox publish after commit failed", error=type(exc).__name__)
            self.report = PublishReport(published=0, failed=len(self.outbox_rows))
        metric.labels(outcome="published").inc(self.report.published)
        metric.labels(outcome="deferred").inc(self.report.failed)
        g.enqueue_dispatched = self.enqueue_dispatched


def reading() -> contextlib.AbstractAsyncContextManager[DriverReader]:
    """A pooled connection for a read-only request, used through the driver: no ORM
    session, no BEGIN/COMMIT round trips (each statement sees its own snapshot, as it
    would in the READ COMMITTED transaction of a unit of work), no SQLAlchemy layers
    (`nexus.db.raw`), taken from the app's read pool (`nexus.db.readpool`). Only for views
    that write nothing."""
    return nexus_state().reading()


async def read_as_viewer(read: Callable[[DriverReader, uuid.UUID], Awaitable[T]]) -> T:
    """`read(conn, viewer)` on a `reading()` connection for the `@viewer_required` user.
    Its statement checks the user's bootstrap: when it raises `NotBootstrapped` the user
    is bootstrapped (`web.auth.bootstrap`) and the read runs again."""
    user_id = viewer_id()
    try:
        async with reading() as conn:
            return await read(conn, user_id)
    except NotBootstrapped:
        await bootstrap(user_id)
    async with reading() as conn:
        return await read(conn, user_id)


def unit_of_work() -> UnitOfWork:
    """A unit of work on the app's sessionmaker (see the module docstring)."""
    return UnitOfWork(nexus_state())
