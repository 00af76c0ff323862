"""Pick the bus from the settings: Apache Kafka when ``CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS`` is set,
else the in-process ``MemoryBus``.

The in-process bus only works when the publisher and the consumer share one ``MemoryBus`` object, so
the caller creates it and passes it as ``memory_bus``. The Kafka client library is imported only when
Kafka is enabled.
"""

from __future__ import annotations

from cryptoviz.bus.base import Consumer, Publisher
from cryptoviz.bus.memory import MemoryBus
from cryptoviz.config import Settings
from cryptoviz.errors import ConfigError

_NO_KAFKA = (
    "CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS is not set, so the in-process bus is used: create one "
    "MemoryBus and pass it as memory_bus= to both make_publisher() and make_consumer()"
)


def make_publisher(settings: Settings, *, topic: str | None = None, memory_bus: MemoryBus | None = None,
                   ensure: bool = True) -> Publisher:
    """A publisher on ``topic`` (default ``settings.kafka_topic``).

    With Kafka, ``ensure`` creates the topic and its DLQ first when they are missing.
    """
    if settings.kafka_enabled:
        from cryptoviz.bus.kafka import KafkaPublisher, ensure_topics

        bootstrap = _bootstrap(settings)
        name = topic or settings.kafka_topic
        if ensure:
            ensure_topics(bootstrap, name, settings.kafka_partitions, settings.kafka_replication_factor)
        return KafkaPublisher(bootstrap, name)
    if memory_bus is None:
        raise ConfigError(_NO_KAFKA)
    return memory_bus.publisher()


def make_consumer(settings: Settings, *, topic: str | None = None, group: str | None = None,
                  memory_bus: MemoryBus | None = None, ensure: bool = True) -> Consumer:
    """A consumer of ``topic`` in ``group`` (defaults: ``settings.kafka_topic`` / ``settings.kafka_group``).

    Kafka consumers dead-letter to ``<topic>.dlq``; with ``ensure`` both topics are created when missing.
    """
    if settings.kafka_enabled:
        from cryptoviz.bus.kafka import KafkaConsumer, ensure_topics

        bootstrap = _bootstrap(settings)
        name = topic or settings.kafka_topic
        if ensure:
            ensure_topics(bootstrap, name, settings.kafka_partitions, settings.kafka_replication_factor)
        return KafkaConsumer(bootstrap, name, group or settings.kafka_group)
    if memory_bus is None:
        raise ConfigError(_NO_KAFKA)
    return memory_bus.consumer()


def _bootstrap(settings: Settings) -> str:
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap  # kafka_enabled
    return bootstrap
