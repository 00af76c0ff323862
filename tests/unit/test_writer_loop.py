"""The writer loop on the in-process bus and real SQLite files: order, completeness, stopping."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from cryptoviz import metrics
from cryptoviz.bus.base import Batch
from cryptoviz.bus.memory import MemoryBus
from cryptoviz.errors import StoreError
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import Sink, open_sink
from cryptoviz.writer_loop import WriterStats, run_writer
from tests.factories import snapshot


def _migrated(tmp_path: Path) -> Path:
    db = tmp_path / "cryptoviz.db"
    migrate.upgrade(f"sqlite:///{db}")
    return db


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def test_every_batch_is_stored_and_acknowledged_in_poll_order(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{_migrated(tmp_path)}")
    bus = MemoryBus(10_000)
    publisher = bus.publisher()
    coins = [f"coin-{i}" for i in range(40)]
    for minute in range(25):
        publisher.publish([snapshot(c, price=1.0 + minute, minutes=minute) for c in coins])
    bus.close()
    committed: list[Batch] = []
    stats = WriterStats()
    metrics.set_bus_lag(99)
    stored = run_writer(bus.consumer(), open_sink(engine), threading.Event(), batch_size=70,
                        batch_timeout=0.01, on_commit=committed.append, stats=stats)
    assert stored == stats.stored == 1_000
    assert stats.batches == len(committed) >= 1_000 // 70
    # Acknowledged in the order the bus delivered them: the observation times never go back.
    minutes = [s.observed_at for b in committed for s in b.snapshots]
    assert minutes == sorted(minutes)
    assert (_count(engine, "currency_data_history"), _count(engine, "source_quotes")) == (1_000, 2_000)
    with engine.connect() as conn:
        price = conn.execute(sa.text("SELECT price FROM currency_data WHERE currency_id = 'coin-7'")).scalar_one()
    assert price == 25.0  # the latest minute is the current value
    assert metrics.BUS_LAG._value.get() == 0  # the gauge follows the bus: all taken


def _refusing(tmp_path: Path) -> Sink:
    """A writer on a database that opens and reads but refuses every write."""
    db = _migrated(tmp_path)
    return open_sink(make_engine(f"sqlite:///file:{db}?mode=ro&uri=true"))


def test_a_draining_loop_gives_up_on_a_refused_batch_after_the_drain_timeout(tmp_path: Path) -> None:
    bus = MemoryBus(100)
    bus.publisher().publish([snapshot("bitcoin"), snapshot("ethereum")])
    bus.close()
    stop = threading.Event()
    stop.set()
    committed: list[Batch] = []
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"2 snapshots not stored: .*readonly database.*DRAIN_TIMEOUT"):
        run_writer(bus.consumer(), _refusing(tmp_path), stop, batch_size=10, batch_timeout=0.01,
                   drain_timeout=0.5, on_commit=committed.append)
    assert 0.5 <= time.monotonic() - started < 5
    assert committed == []  # nothing acknowledged


def test_a_stop_cuts_the_retry_wait_short(tmp_path: Path) -> None:
    bus = MemoryBus(100)
    bus.publisher().publish([snapshot("bitcoin")])
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()  # while the loop waits between retries
    started = time.monotonic()
    with pytest.raises(StoreError, match="1 snapshots not stored"):
        run_writer(bus.consumer(), _refusing(tmp_path), stop, batch_size=10, batch_timeout=0.01,
                   drain_timeout=0.2)
    # Without the stop the backoff (0.5 s, 1 s, 2 s, ...) would keep it retrying for much longer.
    assert time.monotonic() - started < 4


def test_a_loop_told_not_to_drain_returns_at_once_leaving_the_batch_unacknowledged(tmp_path: Path) -> None:
    bus = MemoryBus(100)
    bus.publisher().publish([snapshot("bitcoin")])
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    committed: list[Batch] = []
    stored = run_writer(bus.consumer(), _refusing(tmp_path), stop, batch_size=10, batch_timeout=0.01,
                        drain=False, on_commit=committed.append)
    assert stored == 0 and committed == []
