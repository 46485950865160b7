"""Faust's aiokafka transport with the consumer's fetch wait taken from our settings.

Faust builds its consumer with `fetch_max_wait_ms=1500` and no setting to change it. On a
broker that answers a waiting fetch as soon as data arrives (Apache Kafka) the value does
not matter. Tansu, our development and test broker, does not do so for a fetch covering
several partitions: a message produced to an idle topic waited for the rest of that
1.5 s (measured: 0.65-0.75 s from request to claim after a few idle seconds, against
20 ms on a busy worker). `NEXUS_KAFKA_FETCH_MAX_WAIT_MS` bounds that wait instead.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher (the constructor
        # argument Faust fixes).
        app: Any = self.app  # our NexusApp, which carries the settings
        consumer._fetch_max_wait_ms = app.nexus.settings.kafka_fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = _Consumer
