"""The long-lived jobs when Kafka is the bus: collector (producer), writer (consumer group), or both."""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa

from cryptoviz.config import Settings
from cryptoviz.pipeline import Collector, Scheduler
from cryptoviz.sources.base import Source
from cryptoviz.store.writer import SnapshotWriter
from cryptoviz.writer_loop import run_writer

logger = logging.getLogger(__name__)


def _ensure_topics(settings: Settings) -> None:
    from cryptoviz.bus.kafka import ensure_topics

    ensure_topics(settings.kafka_bootstrap_servers or "", settings.kafka_topic, settings.kafka_partitions,
                  settings.kafka_replication_factor)


def run_collector(settings: Settings, engine: sa.Engine, sources: list[Source], stop: threading.Event, *,
                  duration: float | None = None, max_cycles: int | None = None) -> int:
    """Collect on schedule and publish to Kafka; flush on the way out. Returns cycles run."""
    from cryptoviz.bus.factory import make_publisher

    _ensure_topics(settings)
    publisher = make_publisher(settings)
    collector = Collector(settings, sources, publisher, engine)
    scheduler = Scheduler(collector.run_cycle, settings.interval, stop, duration=duration, max_cycles=max_cycles)
    try:
        scheduler.run()
    finally:
        collector.close()
        left = publisher.flush(30.0)
        if left:
            logger.error("%d message(s) still undelivered to Kafka at shutdown", left)
        publisher.close()
    return scheduler.cycles


def run_consumer(settings: Settings, engine: sa.Engine, stop: threading.Event, *,
                 duration: float | None = None) -> int:
    """Consume from the topic into the database until stopped (or ``duration`` elapsed)."""
    from cryptoviz.bus.factory import make_consumer

    _ensure_topics(settings)
    consumer = make_consumer(settings)
    writer = SnapshotWriter(engine)
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    try:
        return run_writer(consumer, writer, stop, batch_size=settings.batch_size,
                          batch_timeout=settings.batch_timeout, drain=False,
                          drain_timeout=settings.drain_timeout)
    finally:
        consumer.close()


def run_with_kafka(settings: Settings, engine: sa.Engine, sources: list[Source], stop: threading.Event, *,
                   duration: float | None = None, max_cycles: int | None = None) -> tuple[int, int]:
    """Collector and consumer in one process, talking through Kafka. Returns (cycles, snapshots stored)."""
    writer_stop = threading.Event()
    stored: list[int] = [0]

    def consume() -> None:
        stored[0] = run_consumer(settings, engine, writer_stop)

    thread = threading.Thread(target=consume, name="kafka-writer", daemon=True)
    thread.start()
    try:
        cycles = run_collector(settings, engine, sources, stop, duration=duration, max_cycles=max_cycles)
    finally:
        # Give the writer a moment to store what was just published; the rest stays in Kafka.
        time.sleep(min(5.0, settings.batch_timeout * 3))
        writer_stop.set()
        thread.join(timeout=60)
    return cycles, stored[0]
