"""Producing benchmark streams into Kafka, and draining them through the real consumer path."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from benchmarks.common import progress
from benchmarks.data import snapshot
from cryptoviz.bus.kafka import KafkaConsumer, KafkaPublisher
from cryptoviz.models import CoinSnapshot
from cryptoviz.store.writer import SnapshotWriter

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
    history: int = 0
    source_quotes: int = 0
    poll_s: float = 0.0
    write_s: float = 0.0
    commit_s: float = 0.0
    sizes: list[int] = field(default_factory=list)


def drain(consumer: KafkaConsumer, writer: SnapshotWriter, expected: int, *, batch_size: int,
          batch_timeout: float, deadline_s: float = 900.0,
          on_batch: Callable[[list[CoinSnapshot]], None] | None = None) -> Drain:
    """The loop of ``pipeline.run_writer`` (poll, write, commit), timed, until ``expected`` are stored."""
    out = Drain()
    started: float | None = None
    give_up = time.monotonic() + deadline_s
    next_report = 50_000
    while out.stored < expected:
        if time.monotonic() > give_up:
            raise RuntimeError(f"only {out.stored:,} of {expected:,} snapshots stored after {deadline_s:.0f}s")
        t0 = time.perf_counter()
        batch = consumer.poll_batch(batch_size, batch_timeout)
        t1 = time.perf_counter()
        if batch is None:
            raise RuntimeError("consumer closed")
        if not batch.snapshots:
            continue
        if started is None:
            started = t0
        result = writer.write(batch.snapshots)
        t2 = time.perf_counter()
        consumer.commit(batch)
        t3 = time.perf_counter()
        if on_batch is not None:
            on_batch(batch.snapshots)
        out.poll_s += t1 - t0
        out.write_s += t2 - t1
        out.commit_s += t3 - t2
        out.stored += len(batch.snapshots)
        out.batches += 1
        out.history += result.history_inserted
        out.source_quotes += result.source_quotes_inserted
        out.sizes.append(len(batch.snapshots))
        if out.stored >= next_report:
            progress(f"stored {out.stored:,} / {expected:,}")
            next_report += 50_000
    out.seconds = time.perf_counter() - (started or time.perf_counter())
    return out
