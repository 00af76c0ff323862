"""The delivery promise on the in-process bus: a batch is acknowledged only after its rows are committed.

The bus records every acknowledgement (running message numbers, in order); a consumer whose ``commit``
looks, on a connection of its own, for the batch's rows in the SQLite file proves the order.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from cryptoviz.bus.base import Batch
from cryptoviz.bus.memory import Commit, MemoryBus, MemoryConsumer
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import DeadLetterTable, open_sink
from cryptoviz.writer_loop import run_writer
from tests.factories import snapshot


def _migrated(tmp_path: Path) -> Path:
    db = tmp_path / "cryptoviz.db"
    migrate.upgrade(f"sqlite:///{db}")
    return db


class CheckingConsumer(MemoryConsumer):
    """Before each acknowledgement, reads the database on its own connection: every row must be there."""

    def __init__(self, bus: MemoryBus, db: Path) -> None:
        super().__init__(bus)
        self.db = db
        self.missing: list[list[str]] = []  # per acknowledgement, the coins not yet visible

    def commit(self, batch: Batch) -> None:
        wanted = {s.coin_id: s.price for s in batch.snapshots}
        with sqlite3.connect(self.db) as conn:
            marks = ",".join("?" * len(wanted))
            found = dict(conn.execute(
                f"SELECT currency_id, price FROM currency_data WHERE currency_id IN ({marks})",  # noqa: S608
                list(wanted)).fetchall())
        conn.close()
        self.missing.append(sorted(c for c, price in wanted.items() if found.get(c) != price))
        super().commit(batch)


def test_every_acknowledged_batch_is_already_in_the_database(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    bus = MemoryBus(10_000)
    bus.publisher().publish([snapshot(f"coin-{i}", price=1.0 + i) for i in range(1_000)])
    bus.close()
    consumer = CheckingConsumer(bus, db)
    stored = run_writer(consumer, open_sink(make_engine(f"sqlite:///{db}")), threading.Event(), batch_size=70,
                        batch_timeout=0.01)
    assert stored == 1_000
    assert len(consumer.missing) == len(bus.commits) >= 1_000 // 70
    assert all(not m for m in consumer.missing), [m[:3] for m in consumer.missing if m][:3]
    # Acknowledged in order, each message once, up to the last one.
    ranges = list(bus.commits)
    assert ranges[0].first == 1 and bus.committed == ranges[-1].last == 1_000
    assert all(b.first == a.last + 1 for a, b in zip(ranges, ranges[1:], strict=False))
    assert max(r.last - r.first + 1 for r in ranges) <= 70


def test_a_batch_the_database_refuses_is_never_acknowledged(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    refusing = open_sink(make_engine(f"sqlite:///file:{db}?mode=ro&uri=true"))
    bus = MemoryBus(100)
    bus.publisher().publish([snapshot("bitcoin"), snapshot("ethereum")])
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()  # after a few refused attempts
    stored = run_writer(bus.consumer(), refusing, stop, batch_size=10, batch_timeout=0.01, drain=False)
    assert stored == 0
    assert list(bus.commits) == [] and bus.committed == 0


def test_a_batch_of_poison_only_is_acknowledged_once_its_dead_letters_are_recorded(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    engine = make_engine(f"sqlite:///{db}")
    bus = MemoryBus(100)
    bus.put_raw("bad", b"{not json")
    bus.publisher().publish([snapshot("bitcoin")])
    bus.close()
    stored = run_writer(bus.consumer(), open_sink(engine), threading.Event(), batch_size=10, batch_timeout=0.05,
                        dead_letters=DeadLetterTable(engine))
    assert stored == 1
    assert bus.committed == 2 and [(c.first, c.last) for c in bus.commits] == [(1, 2)]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)
    conn.close()


def test_the_bus_refuses_an_acknowledgement_out_of_order() -> None:
    bus = MemoryBus(10)
    bus.acknowledge(1, 3)
    with pytest.raises(RuntimeError, match=r"messages 5\.\.6 out of order; the last acknowledged message is 3"):
        bus.acknowledge(5, 6)  # 4 skipped
    with pytest.raises(RuntimeError, match="out of order"):
        bus.acknowledge(2, 4)  # 2 and 3 again
    bus.acknowledge(4, 4)
    assert list(bus.commits) == [Commit(1, 3), Commit(4, 4)]
