"""The writer loop's promises measured on real collaborators: the in-process bus, ``MemorySink`` (which
refuses writes on request) and, where time matters, a sink and a consumer that take a known time per call.

Backoff doubles from half a second; a stop cuts the drain short at its deadline; an error in the polling
thread stops the store stage from retrying; the statistics add up over batches; dead letters are recorded
with the time they were; callbacks see every batch; the switch interval is lowered while the loop runs and
restored after.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from cryptoviz.bus.base import Batch, DeadLetterRecord
from cryptoviz.bus.memory import MemoryBus, MemoryConsumer
from cryptoviz.errors import StoreError
from cryptoviz.models import CoinSnapshot
from cryptoviz.store.sink import MemorySink, WriteResult
from cryptoviz.writer_loop import WriterStats, run_writer
from tests.factories import snapshot

REFUSED = "memory sink: write refused (fail_next)"


class TimedSink(MemorySink):
    """A memory sink whose writes take ``seconds`` each and note the thread and switch interval they ran with."""

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__()
        self.seconds = seconds
        self.threads: list[str] = []
        self.switch_intervals: list[float] = []
        self.recorded_at: list[datetime] = []

    def write(self, snapshots: Sequence[CoinSnapshot]) -> WriteResult:
        self.threads.append(threading.current_thread().name)
        self.switch_intervals.append(sys.getswitchinterval())
        time.sleep(self.seconds)
        return super().write(snapshots)

    def record(self, letters: Sequence[DeadLetterRecord], at: datetime) -> None:
        self.recorded_at.append(at)
        super().record(letters, at)


class TimedConsumer(MemoryConsumer):
    """A consumer of the in-process bus whose polls and acknowledgements take a known time."""

    def __init__(self, bus: MemoryBus, *, poll: float = 0.0, commit: float = 0.0, fail_on_poll: int = 0) -> None:
        super().__init__(bus)
        self.poll_seconds, self.commit_seconds, self.fail_on_poll = poll, commit, fail_on_poll
        self.polls = 0

    def poll_batch(self, max_records: int, timeout: float) -> Batch | None:
        self.polls += 1
        if self.polls == self.fail_on_poll:
            raise RuntimeError("the bus went away")
        time.sleep(self.poll_seconds)
        return super().poll_batch(max_records, timeout)

    def commit(self, batch: Batch) -> None:
        time.sleep(self.commit_seconds)
        super().commit(batch)


def bus_with(*coins: str, close: bool = True) -> MemoryBus:
    bus = MemoryBus(100)
    bus.publisher().publish([snapshot(c) for c in coins])
    if close:
        bus.close()
    return bus


def test_a_refused_batch_is_retried_with_a_doubling_delay_then_stored(caplog: pytest.LogCaptureFixture) -> None:
    bus = bus_with("bitcoin")
    sink = MemorySink()
    sink.fail_next = 2
    committed: list[Batch] = []
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="cryptoviz.writer_loop"):
        stored = run_writer(bus.consumer(), sink, threading.Event(), batch_size=10, batch_timeout=0.01,
                            on_commit=committed.append)
    assert 1.5 <= time.monotonic() - started < 4  # 0.5 s, then 1 s
    assert stored == 1 and [s.coin_id for s in sink.snapshots] == ["bitcoin"] and len(committed) == 1
    assert [r.getMessage() for r in caplog.records] == [f"{REFUSED}; retrying in 0.5s", f"{REFUSED}; retrying in 1.0s"]


def test_a_stopped_drain_gives_up_at_its_deadline_not_after_a_full_backoff_step(
        caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    sink.fail_next = 10**6
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="cryptoviz.writer_loop"), pytest.raises(StoreError) as raised:
        run_writer(bus_with("bitcoin").consumer(), sink, stop, batch_size=10, batch_timeout=0.01, drain_timeout=0.05)
    assert time.monotonic() - started < 0.4  # the first wait is cut to the 0.05 s left, not 0.5 s
    assert caplog.records and all(re.fullmatch(rf"{re.escape(REFUSED)}; retrying in 0\.[01]s", r.getMessage())
                                  for r in caplog.records)
    assert str(raised.value) == (f"1 snapshots not stored: the database still refused them 0s after stopping "
                                 f"({REFUSED}); CRYPTOVIZ_DRAIN_TIMEOUT sets how long to keep trying")


def test_a_loop_not_draining_says_what_it_leaves_unwritten(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    sink.fail_next = 10**6
    stop = threading.Event()
    bus = bus_with("bitcoin", "ethereum")
    threading.Timer(0.2, stop.set).start()
    with caplog.at_level(logging.ERROR, logger="cryptoviz.writer_loop"):
        stored = run_writer(bus.consumer(), sink, stop, batch_size=10, batch_timeout=0.01, drain=False)
    assert stored == 0 and sink.batches == [] and bus.committed == 0
    assert caplog.records[-1].getMessage() == (
        f"stopping with 2 snapshots not written (they stay unacknowledged): {REFUSED}")


def test_a_loop_not_draining_and_already_stopped_takes_nothing_from_the_bus() -> None:
    stop = threading.Event()
    stop.set()
    bus = bus_with("bitcoin", close=False)
    sink = MemorySink()
    assert run_writer(bus.consumer(), sink, stop, batch_size=10, batch_timeout=0.01, drain=False) == 0
    assert bus.qsize() == 1 and sink.batches == []


def test_a_loop_not_draining_stores_until_it_is_stopped() -> None:
    stop = threading.Event()
    bus = bus_with("bitcoin", "ethereum", "solana", close=False)
    sink = MemorySink()
    stored = run_writer(bus.consumer(), sink, stop, batch_size=1, batch_timeout=0.01, drain=False,
                        on_write=lambda n: stop.set())
    # The batch polled while the first was written is still written; then the loop returns.
    assert 1 <= stored <= 2 and len(sink.snapshots) == stored == bus.committed


def test_an_error_while_polling_stops_the_store_stage_from_retrying() -> None:
    bus = bus_with("bitcoin", "ethereum")
    sink = MemorySink()
    sink.fail_next = 10**6  # the first batch is refused for ever
    stop = threading.Event()
    consumer = TimedConsumer(bus, fail_on_poll=2)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the bus went away"):
        run_writer(consumer, sink, stop, batch_size=1, batch_timeout=0.01, drain_timeout=0.1)
    assert stop.is_set()
    assert time.monotonic() - started < 3
    assert bus.committed == 0


def test_statistics_add_up_over_the_batches_and_callbacks_see_each_one() -> None:
    bus = bus_with("bitcoin", "ethereum", "solana")
    sink = TimedSink(0.03)
    consumer = TimedConsumer(bus, poll=0.01, commit=0.02)
    stats = WriterStats()
    written: list[int] = []
    committed: list[Batch] = []
    switch = sys.getswitchinterval()
    before = time.perf_counter()
    stored = run_writer(consumer, sink, threading.Event(), batch_size=1, batch_timeout=0.01, stats=stats,
                        on_write=written.append, on_commit=committed.append)
    elapsed = time.perf_counter() - before
    assert stored == stats.stored == 3 and stats.batches == 3
    assert written == [1, 1, 1] and [b.snapshots[0].coin_id for b in committed] == ["bitcoin", "ethereum", "solana"]
    assert 0.09 <= stats.write_s <= elapsed  # three writes of 0.03 s, summed
    assert 0.06 <= stats.commit_s <= elapsed  # three acknowledgements of 0.02 s
    assert 0.04 <= stats.poll_s <= elapsed  # four polls (the last finds the bus closed) of 0.01 s
    assert stats.first_poll_at is not None and stats.last_commit_at is not None
    assert before <= stats.first_poll_at < stats.last_commit_at <= before + elapsed
    assert all(name.startswith("cryptoviz-store") for name in sink.threads)
    assert max(sink.switch_intervals) <= 0.001 and sys.getswitchinterval() == switch


def test_an_empty_closed_bus_ends_the_loop_with_nothing_to_report() -> None:
    bus = MemoryBus(10)
    bus.close()
    stats = WriterStats()
    assert run_writer(bus.consumer(), MemorySink(), threading.Event(), batch_size=10, batch_timeout=0.01,
                      stats=stats) == 0
    assert (stats.stored, stats.batches, stats.first_poll_at, stats.last_commit_at) == (0, 0, None, None)


def test_dead_letters_are_recorded_with_their_time_and_acknowledged() -> None:
    bus = MemoryBus(10)
    bus.put_raw("broken", b"{not json")
    bus.publisher().publish([snapshot("bitcoin")])
    bus.put_raw("old", b'{"schema_version": 0}')
    bus.close()
    sink = TimedSink()
    stats = WriterStats()
    before = datetime.now(UTC)
    stored = run_writer(bus.consumer(), sink, threading.Event(), batch_size=10, batch_timeout=0.01, dead_letters=sink,
                        stats=stats)
    after = datetime.now(UTC)
    assert stored == 1 and bus.committed == 3
    assert [(d.key, d.offset) for d in sink.dead_letters] == [("broken", 1), ("old", 3)]
    assert sink.dead_letters[1].error == "unsupported schema_version 0 (this consumer reads 1)"
    assert len(sink.recorded_at) == 1 and before <= sink.recorded_at[0] <= after
    assert sink.recorded_at[0].tzinfo is UTC


def test_a_batch_of_dead_letters_only_counts_as_the_first_poll_and_is_acknowledged() -> None:
    bus = MemoryBus(10)
    bus.put_raw("broken", b"[]")
    bus.close()
    stats = WriterStats()
    sink = TimedSink()
    assert run_writer(bus.consumer(), sink, threading.Event(), batch_size=10, batch_timeout=0.01, stats=stats,
                      dead_letters=sink) == 0
    assert bus.committed == 1 and stats.batches == 1 and stats.first_poll_at is not None
    assert sink.batches == [] and sink.threads == []  # no snapshots: no write
    assert [d.error for d in sink.dead_letters] == ["message is not a JSON object"]


def test_without_a_dead_letter_sink_poison_is_still_acknowledged() -> None:
    bus = MemoryBus(10)
    bus.put_raw("broken", b"[]")
    bus.publisher().publish([snapshot("bitcoin")])
    bus.close()
    sink = MemorySink()
    assert run_writer(bus.consumer(), sink, threading.Event(), batch_size=10, batch_timeout=0.01) == 1
    assert bus.committed == 2 and sink.dead_letters == []


def test_a_batch_with_no_dead_letters_records_none() -> None:
    sink = TimedSink()
    run_writer(bus_with("bitcoin").consumer(), sink, threading.Event(), batch_size=10, batch_timeout=0.01,
               dead_letters=sink)
    assert sink.recorded_at == []
