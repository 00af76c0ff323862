"""End-to-end latency at a steady rate: collection time -> row committed in PostgreSQL, through Kafka.

A producer thread publishes snapshots at a steady rate (``KafkaPublisher`` with the collector's settings),
each stamped with its send time as ``observed_at``. A writer thread runs ``run_writer`` itself
(``poll_batch`` by count and time, ``Sink.write``, ``commit``) and, for every snapshot of a batch,
records ``commit time - observed_at``: the time the row became visible in PostgreSQL (``latency.*``) and
the time its offset was committed in Kafka (``latency.ack_*``). Baseline in the same run: the time each
snapshot took to reach the writer (``latency.bus_*``: Kafka transport plus waiting for its batch to fill).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import Services, fresh_database, fresh_topic, group_name, percentile, progress
from benchmarks.data import snapshot
from cryptoviz.bus.base import Batch
from cryptoviz.bus.kafka import KafkaConsumer, KafkaPublisher
from cryptoviz.models import CoinSnapshot
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import Sink, WriteResult, open_sink
from cryptoviz.writer_loop import run_writer


class _TimedWriter:
    """The database's real sink, noting when each batch's transaction started and committed."""

    def __init__(self, engine: Any) -> None:
        self.sink: Sink = open_sink(engine)
        self.times: dict[int, tuple[float, float]] = {}

    def write(self, snapshots: Sequence[CoinSnapshot]) -> WriteResult:
        started = time.time()
        result = self.sink.write(snapshots)
        self.times[id(snapshots)] = (started, time.time())
        return result

    def close(self) -> None:
        self.sink.close()


class _Writer(threading.Thread):
    """``run_writer`` (as ``cryptoviz consume`` runs it) on a thread, recording each snapshot's latencies."""

    def __init__(self, consumer: KafkaConsumer, writer: _TimedWriter, batch_size: int,
                 batch_timeout: float) -> None:
        super().__init__(name="bench-writer", daemon=True)
        self.consumer, self.writer = consumer, writer
        self.batch_size, self.batch_timeout = batch_size, batch_timeout
        self.stop = threading.Event()
        self.stored = 0
        self.batches = 0
        self.bus: list[float] = []
        self.db: list[float] = []
        self.ack: list[float] = []
        self.writes: list[float] = []  # seconds per batch write (transaction)
        self.sizes: list[int] = []
        self.error: BaseException | None = None

    def _committed(self, batch: Batch) -> None:
        acked = time.time()
        started, written = self.writer.times.pop(id(batch.snapshots))
        for s in batch.snapshots:
            sent = s.observed_at.timestamp()
            self.bus.append(started - sent)
            self.db.append(written - sent)
            self.ack.append(acked - sent)
        self.writes.append(written - started)
        self.sizes.append(len(batch.snapshots))
        self.stored += len(batch.snapshots)
        self.batches += 1

    def run(self) -> None:
        try:
            run_writer(self.consumer, self.writer, self.stop, batch_size=self.batch_size,
                       batch_timeout=self.batch_timeout, drain=False, on_commit=self._committed)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


def _produce_steady(publisher: KafkaPublisher, rate: float, seconds: float, coins: int) -> int:
    """Publish ``rate`` snapshots/s for ``seconds``, in 10 ms ticks on an absolute schedule."""
    tick = 0.01
    started = time.monotonic()
    sent = 0
    due = 0.0
    n_ticks = int(seconds / tick)
    for k in range(n_ticks):
        wait = started + k * tick - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        due += rate * tick
        batch: list[CoinSnapshot] = []
        now = datetime.now(UTC)
        while sent + len(batch) < int(due):
            i = sent + len(batch)
            batch.append(replace(snapshot(i % coins, 0), observed_at=now))
        if batch:
            publisher.publish(batch)
            sent += len(batch)
    return sent


def run(services: Services, rate: float, seconds: float, coins: int, batch_size: int,
        batch_timeout: float) -> dict[str, Any]:
    progress(f"latency: {rate:,.0f} snapshots/s for {seconds:.0f}s, batches of <= {batch_size} or "
             f"{batch_timeout * 1000:.0f} ms")
    with fresh_database(services, "latency") as url, fresh_topic(services, "latency") as topic:
        engine = make_engine(url)
        consumer = KafkaConsumer(services.bootstrap, topic, group_name("latency"),
                                 client_id="cryptoviz-bench-latency")
        writer = _Writer(consumer, _TimedWriter(engine), batch_size, batch_timeout)
        publisher = KafkaPublisher(services.bootstrap, topic, client_id="cryptoviz-bench-latency")
        writer.start()
        try:
            deadline = time.monotonic() + 60
            while not consumer.assignment and writer.error is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("latency: the consumer got no partition within 60 s")
                time.sleep(0.05)
            time.sleep(0.5)  # the full assignment settles (cooperative rebalancing)
            sent = _produce_steady(publisher, rate, seconds, coins)
            if publisher.flush(30.0):
                raise RuntimeError("latency: Kafka did not acknowledge every message")
            deadline = time.monotonic() + 60
            while writer.stored < sent and writer.error is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            writer.stop.set()
            writer.join(30)
            publisher.close()
            consumer.close()
            engine.dispose()
        if writer.error is not None:
            raise RuntimeError(f"latency: writer failed: {writer.error}") from writer.error
        if writer.stored < sent:
            raise RuntimeError(f"latency: only {writer.stored} of {sent} snapshots stored")
    ms = 1000.0
    out = {
        "latency.p50_ms": percentile(writer.db, 0.50) * ms,
        "latency.p99_ms": percentile(writer.db, 0.99) * ms,
        "latency.max_ms": max(writer.db) * ms,
        "latency.ack_p50_ms": percentile(writer.ack, 0.50) * ms,
        "latency.ack_p99_ms": percentile(writer.ack, 0.99) * ms,
        "latency.bus_p50_ms": percentile(writer.bus, 0.50) * ms,
        "latency.bus_p99_ms": percentile(writer.bus, 0.99) * ms,
        "latency.snapshots": sent,
        "latency.rate_per_s": sent / seconds,
        "latency.batch_size": batch_size,
        "latency.batch_timeout_ms": batch_timeout * ms,
        "latency.batches": writer.batches,
        "latency.batch_mean_size": sum(writer.sizes) / max(1, len(writer.sizes)),
        "latency.write_p50_ms": percentile(writer.writes, 0.50) * ms,
        "latency.write_p99_ms": percentile(writer.writes, 0.99) * ms,
        "latency.write_max_ms": max(writer.writes, default=0.0) * ms,
    }
    progress(f"latency: p50 {out['latency.p50_ms']:.0f} ms, p99 {out['latency.p99_ms']:.0f} ms "
             f"(reaching the writer: p50 {out['latency.bus_p50_ms']:.0f} ms, p99 {out['latency.bus_p99_ms']:.0f} ms)")
    return out
