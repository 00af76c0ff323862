"""The writer loop: bus batches into the database, each acknowledged only after its transaction committed.

Two stages overlap: while a store thread writes batch N (the database does the work; psycopg and sqlite3
release the GIL meanwhile), the calling thread polls and decodes batch N+1. At most one batch is being
written and one waits for it, so memory stays bounded and acknowledgements stay in order: the store
thread commits a batch's offsets right after its transaction, before it takes the next batch.

A batch the database refuses is retried with backoff: nothing is acknowledged for rows that are not
written. Once ``stop`` is set, a loop that drains keeps retrying for ``drain_timeout`` seconds and then
gives up with a :class:`StoreError` naming how many snapshots were not stored (on Kafka they stay
unacknowledged and are delivered again; on the in-process bus they are lost with the process).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptoviz import metrics
from cryptoviz.bus.base import Batch, Consumer
from cryptoviz.errors import StoreError
from cryptoviz.gcpause import paused_gc
from cryptoviz.store.sink import DeadLetterSink, Sink

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class WriterStats:
    """Where the loop's time went (for benchmarks and logs); times from ``time.perf_counter``."""

    stored: int = 0
    batches: int = 0
    poll_s: float = 0.0  # polling and decoding, in the calling thread
    write_s: float = 0.0  # database transactions, in the store thread (overlaps poll_s)
    commit_s: float = 0.0  # bus acknowledgements, in the store thread
    first_poll_at: float | None = None  # start of the first poll that returned records
    last_commit_at: float | None = None


class _Stopped(Exception):
    """The loop was told to stop without draining while a batch was still refused."""


class _StoreStage:
    """Writes and acknowledges one batch at a time on its own thread."""

    def __init__(self, consumer: Consumer, sink: Sink, dead_letters: DeadLetterSink | None,
                 stop: threading.Event, *, drain: bool, drain_timeout: float,
                 on_write: Callable[[int], None] | None, on_commit: Callable[[Batch], None] | None,
                 stats: WriterStats) -> None:
        self.consumer, self.sink, self.dead_letters, self.stop = consumer, sink, dead_letters, stop
        self.drain, self.drain_timeout = drain, drain_timeout
        self.on_write, self.on_commit, self.stats = on_write, on_commit, stats

    def _write(self, batch: Batch) -> None:
        if batch.snapshots:
            self.sink.write(batch.snapshots)
        if batch.dead_letters and self.dead_letters is not None:
            self.dead_letters.record(batch.dead_letters, datetime.now(UTC))

    def store(self, batch: Batch) -> int:
        started = time.perf_counter()
        delay = 0.5
        give_up_at: float | None = None
        while True:
            try:
                self._write(batch)
                break
            except StoreError as exc:
                if self.stop.is_set():
                    if not self.drain:
                        logger.error("stopping with %d snapshots not written (they stay unacknowledged): %s",
                                     len(batch.snapshots), exc)
                        raise _Stopped from exc
                    now = time.monotonic()
                    give_up_at = give_up_at if give_up_at is not None else now + self.drain_timeout
                    if now >= give_up_at:
                        raise StoreError(
                            f"{len(batch.snapshots)} snapshots not stored: the database still refused them "
                            f"{self.drain_timeout:.0f}s after stopping ({exc}); CRYPTOVIZ_DRAIN_TIMEOUT sets "
                            "how long to keep trying") from None
                    delay = min(delay, max(give_up_at - now, 0.01))
                    logger.error("%s; retrying in %.1fs", exc, delay)
                    time.sleep(delay)
                else:
                    logger.error("%s; retrying in %.1fs", exc, delay)
                    self.stop.wait(delay)  # a stop cuts the wait short: the drain deadline starts now
                delay = min(delay * 2, 30.0)
        written = time.perf_counter()
        self.consumer.commit(batch)
        done = time.perf_counter()
        n = len(batch.snapshots)
        stats = self.stats
        stats.write_s += written - started
        stats.commit_s += done - written
        stats.stored += n
        stats.batches += 1
        stats.last_commit_at = done
        metrics.observe_stored(n)
        lag = self.consumer.lag()
        if lag is not None:
            metrics.set_bus_lag(lag)
        if self.on_write is not None:
            self.on_write(n)
        if self.on_commit is not None:
            self.on_commit(batch)
        return n


def run_writer(consumer: Consumer, sink: Sink, stop: threading.Event, *, batch_size: int,
               batch_timeout: float, dead_letters: DeadLetterSink | None = None,
               on_write: Callable[[int], None] | None = None, drain: bool = True,
               drain_timeout: float = 30.0, on_commit: Callable[[Batch], None] | None = None,
               stats: WriterStats | None = None) -> int:
    """Consume batches and store each in one transaction; acknowledge only after it committed.

    Returns the number of snapshots stored. With ``drain`` the loop ends when the bus says it is closed
    and empty (giving up on a refused batch ``drain_timeout`` seconds after ``stop`` is set); otherwise
    as soon as ``stop`` is set, leaving what is not written unacknowledged.
    """
    stats = stats if stats is not None else WriterStats()
    stage = _StoreStage(consumer, sink, dead_letters, stop, drain=drain, drain_timeout=drain_timeout, on_write=on_write,
                        on_commit=on_commit, stats=stats)
    stored = 0
    pending: Future[int] | None = None
    # The store thread needs the GIL back after every statement the database answers, while this thread
    # decodes without pause: a 1 ms switch interval (5 ms by default) lets it resume sooner (about +7 %
    # snapshots/s on the sink benchmark). Restored when the loop ends.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, 0.001))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cryptoviz-store") as pool:
        try:
            while True:
                batch: Batch | None = None
                if drain or not stop.is_set():
                    started = time.perf_counter()
                    with paused_gc():  # decoding allocates many small acyclic objects
                        batch = consumer.poll_batch(batch_size, batch_timeout)
                    stats.poll_s += time.perf_counter() - started
                    if batch is not None and stats.first_poll_at is None and (batch.snapshots or
                                                                              batch.dead_lettered):
                        stats.first_poll_at = started
                if pending is not None:
                    stored += pending.result()  # the batch before this one: written and acknowledged
                    pending = None
                if batch is None:
                    return stored
                if batch.snapshots or batch.dead_lettered:
                    pending = pool.submit(stage.store, batch)
        except _Stopped:
            return stored
        finally:
            if pending is not None and not pending.done():
                stop.set()  # an error in this thread: let the store stage stop retrying
            sys.setswitchinterval(switch)
