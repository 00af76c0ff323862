"""Producing benchmark streams into Kafka, and draining them through the real consumer path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from benchmarks.common import progress
from benchmarks.data import snapshot
from cryptoviz.bus.kafka import KafkaConsumer, KafkaPublisher
from cryptoviz.models import CoinSnapshot
from cryptoviz.store.sink import Sink
from cryptoviz.writer_loop import WriterStats, run_writer

# Bulk loading only: bigger batches than the collector's publisher, same codec and keys.
_BULK_PRODUCER = {"batch.size": 1_000_000, "queue.buffering.max.messages": 200_000,
                  "queue.buffering.max.kbytes": 262_144}


def stream(count: int, coins: int) -> Iterator[CoinSnapshot]:
    """``count`` snapshots, cycle after cycle of ``coins`` coins (oldest first)."""
    for i in range(count):
        yield snapshot(i % coins, i // coins)


def produce(bootstrap: str, topic: str, snapshots: Iterable[CoinSnapshot], *, chunk: int = 5_000,
            label: str = "") -> tuple[int, float]:
    """Publish everything (real ``KafkaPublisher``: idempotent, acks=all); returns (messages, seconds)."""
    publisher = KafkaPublisher(bootstrap, topic, client_id="cryptoviz-bench", linger_ms=50, config=_BULK_PRODUCER)
    started = time.perf_counter()
    sent = 0
    pending: list[CoinSnapshot] = []
    next_report = 100_000
    try:
        for s in snapshots:
            pending.append(s)
            if len(pending) >= chunk:
                publisher.publish(pending)
                sent += len(pending)
                pending = []
                if sent >= next_report:
                    progress(f"{label}produced {sent:,} messages")
                    next_report += 100_000
        if pending:
            publisher.publish(pending)
            sent += len(pending)
        if publisher.flush(120.0):
            raise RuntimeError("Kafka did not acknowledge every benchmark message")
    finally:
        publisher.close()
    if publisher.failed:
        raise RuntimeError(f"{publisher.failed} benchmark message(s) failed to reach Kafka")
    return sent, time.perf_counter() - started


@dataclass(slots=True)
class Drain:
    stored: int = 0
    batches: int = 0
    seconds: float = 0.0  # from the first poll that returned messages to the last commit
    poll_s: float = 0.0
    write_s: float = 0.0
    commit_s: float = 0.0


def drain(consumer: KafkaConsumer, writer: Sink, expected: int, *, batch_size: int,
          batch_timeout: float, deadline_s: float = 900.0) -> Drain:
    """``run_writer`` (as ``cryptoviz consume`` runs it), timed, until ``expected`` snapshots are stored."""
    stop = threading.Event()
    stats = WriterStats()
    next_report = [50_000]

    def on_write(_n: int) -> None:
        if stats.stored >= next_report[0]:
            progress(f"stored {stats.stored:,} / {expected:,}")
            next_report[0] += 50_000
        if stats.stored >= expected:
            stop.set()

    timer = threading.Timer(deadline_s, stop.set)
    timer.daemon = True
    timer.start()
    try:
        run_writer(consumer, writer, stop, batch_size=batch_size, batch_timeout=batch_timeout, drain=False,
                   on_write=on_write, stats=stats)
    finally:
        timer.cancel()
    if stats.stored < expected:
        raise RuntimeError(f"only {stats.stored:,} of {expected:,} snapshots stored after {deadline_s:.0f}s")
    assert stats.first_poll_at is not None and stats.last_commit_at is not None
    return Drain(stats.stored, stats.batches, stats.last_commit_at - stats.first_poll_at, stats.poll_s,
                 stats.write_s, stats.commit_s)
