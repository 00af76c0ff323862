"""The bus factory without Kafka: the in-process bus, which the publisher and the consumer must share."""

from __future__ import annotations

import pytest

from cryptoviz.bus.factory import make_consumer, make_publisher
from cryptoviz.bus.memory import MemoryBus, MemoryConsumer, MemoryPublisher
from cryptoviz.config import Settings
from cryptoviz.errors import ConfigError
from tests.factories import snapshot


def test_factory_without_kafka_uses_the_given_memory_bus() -> None:
    settings = Settings(kafka_bootstrap_servers=None)
    with pytest.raises(ConfigError, match="MemoryBus"):
        make_publisher(settings)
    with pytest.raises(ConfigError, match="MemoryBus"):
        make_consumer(settings)
    bus = MemoryBus(maxsize=10)
    publisher, consumer = make_publisher(settings, memory_bus=bus), make_consumer(settings, memory_bus=bus)
    assert isinstance(publisher, MemoryPublisher) and isinstance(consumer, MemoryConsumer)
    # One bus behind both: what one publishes, the other takes.
    publisher.publish([snapshot("bitcoin")])
    batch = consumer.poll_batch(10, 0.1)
    assert batch is not None and batch.snapshots == [snapshot("bitcoin")] and batch.token == (1, 1)
