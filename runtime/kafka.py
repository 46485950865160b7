"""aiokafka implementation of `nexus.messaging.publisher.Publisher`, and topic creation.

The producer starts lazily and is rebuilt after failures, so a process can start while the
broker is down and recover when it returns. Idempotence and transactions stay off: the local
broker (Tansu) supports neither, and the outbox + guarded job rows make duplicates harmless.

Every client a process builds (producer, consumer, admin) takes `client_options(settings)`:
the broker's security protocol, SASL mechanism and credentials, and the TLS context (SPEC
§10, docs/operations.md). Without options a client speaks PLAINTEXT (test helpers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import BrokerResponseError, KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from nexus.config import Settings
from nexus.messaging.publisher import MessageRejected, PublishError
from nexus.messaging.topics import TopicSpec

log = logging.getLogger(__name__)

ClientOptions = Mapping[str, Any]


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured broker security (validated by
    `Settings`): `security_protocol`, the SASL mechanism and credentials, and an SSL
    context trusting `NEXUS_KAFKA_SSL_CAFILE` (or the system's CAs) for SSL/SASL_SSL."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        options["ssl_context"] = create_ssl_context(cafile=cafile)
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password else None,
        )
    return options


def new_admin(
    bootstrap: str, *, timeout_seconds: float, options: ClientOptions | None = None
) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_seconds * 1000),
        **dict(options or {}),
    )


def new_consumer(
    bootstrap: str, *, timeout_seconds: float, options: ClientOptions | None = None
) -> AIOKafkaConsumer:
    """A group-less consumer that never commits (operator commands read, then stop)."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=int(timeout_seconds * 1000),
        **dict(options or {}),
    )


class KafkaPublisher:
    """Publishes with acks=all and a bounded wait.

    One producer start is shared by every concurrent caller; after a failure the publisher
    fails fast for `cooldown_seconds`, so a dead or hung broker costs one timeout per
    cooldown instead of one per request (the outbox relay delivers the rows later).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        timeout_seconds: float = 5.0,
        cooldown_seconds: float = 2.0,
        options: ClientOptions | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._options = dict(options or {})
        self._timeout = timeout_seconds
        self._cooldown = cooldown_seconds
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Future[AIOKafkaProducer] | None = None
        self._down_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout_seconds: float) -> KafkaPublisher:
        """The publisher of a process: the configured broker, with its security options."""
        return cls(
            settings.kafka_bootstrap,
            timeout_seconds=timeout_seconds,
            options=client_options(settings),
        )

    def new_producer(self) -> AIOKafkaProducer:
        """A producer (not started) with this publisher's broker and security options."""
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=False,
            request_timeout_ms=int(self._timeout * 1000),
            linger_ms=0,
            **self._options,
        )

    async def _start(self) -> AIOKafkaProducer:
        producer = self.new_producer()
        try:
            await asyncio.wait_for(producer.start(), self._timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        starting = self._starting
        try:
            producer = await asyncio.shield(starting)
        finally:
            if self._starting is starting and starting.done():
                self._starting = None
        self._producer = producer
        return producer

    async def warm_up(self, topics: Sequence[str] = ()) -> bool:
        """Start the producer and learn `topics`' partitions now, so the first publish does
        not pay for them (~0.3 s: the connection, then metadata). Never raises: with the
        broker away the publisher stays lazy and the first publish starts it. True when
        warm."""
        try:
            producer = await self._ensure()
            for topic in topics:
                await asyncio.wait_for(producer.partitions_for(topic), self._timeout)
        except Exception as exc:
            log.info("producer warm-up failed (%s); starting on first publish", exc)
            return False
        return True

    def _mark_down(self) -> None:
        self._down_until = time.monotonic() + self._cooldown
        producer, self._producer = self._producer, None
        if producer is not None:
            task = asyncio.ensure_future(_stop_quietly(producer, self._timeout))
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: dict[str, str]
    ) -> None:
        if time.monotonic() < self._down_until:
            raise PublishError(f"publish to {topic} skipped: broker unavailable (cooling down)")
        try:
            producer = await self._ensure()
            await asyncio.wait_for(
                producer.send_and_wait(
                    topic,
                    value=value,
                    key=key.encode() if key is not None else None,
                    headers=[(k, v.encode()) for k, v in headers.items()],
                ),
                self._timeout,
            )
        except BrokerResponseError as exc:
            if exc.retriable:
                self._mark_down()
                raise PublishError(f"publish to {topic} failed: {type(exc).__name__}") from exc
            # The message itself is refused (too large, invalid topic): the broker is fine.
            raise MessageRejected(f"{topic} refused the message: {type(exc).__name__}") from exc
        except (KafkaError, OSError, TimeoutError) as exc:
            self._mark_down()
            raise PublishError(f"publish to {topic} failed: {type(exc).__name__}") from exc

    async def ping(self) -> bool:
        return await broker_answers(
            self._bootstrap, timeout_seconds=min(self._timeout, 2.0), options=self._options
        )

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer, self._timeout)
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                started = await self._starting
                await _stop_quietly(started, self._timeout)
            self._starting = None


_background: set[asyncio.Future[None]] = set()


async def _stop_quietly(producer: AIOKafkaProducer, wait_seconds: float) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), wait_seconds)


async def broker_answers(
    bootstrap: str, *, timeout_seconds: float = 2.0, options: ClientOptions | None = None
) -> bool:
    """True when an admin `list_topics()` succeeds within the timeout."""
    admin = new_admin(bootstrap, timeout_seconds=timeout_seconds, options=options)
    try:
        await asyncio.wait_for(admin.start(), timeout_seconds)
        await asyncio.wait_for(admin.list_topics(), timeout_seconds)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    wait_seconds: float = 15,
    options: ClientOptions | None = None,
) -> None:
    """Create missing topics with their final partition count (no later repartitioning)."""
    admin = new_admin(bootstrap, timeout_seconds=wait_seconds, options=options)
    await asyncio.wait_for(admin.start(), wait_seconds)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        s.name, num_partitions=s.partitions, replication_factor=s.replication_factor
                    )
                    for s in missing
                ]
            )
        except TopicAlreadyExistsError:
            log.info("topics created concurrently by another process")
    finally:
        await admin.close()
