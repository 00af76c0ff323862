"""The sink module: which sink a database gets, the memory sink the tests and the demo use, and the
dead-letter table (cut to its column widths, refusals named)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from cryptoviz.bus.base import DeadLetterRecord
from cryptoviz.errors import StoreError
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.pg_copy import PostgresCopySink
from cryptoviz.store.sink import DeadLetterTable, MemorySink, WriteResult, open_sink
from cryptoviz.store.writer import SqlSink
from tests.factories import snapshot

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    url = f"sqlite:///{tmp_path / 'cryptoviz.db'}"
    migrate.upgrade(url)
    return make_engine(url)


def test_each_database_gets_its_sink(engine: sa.Engine) -> None:
    sqlite = open_sink(engine)
    assert type(sqlite) is SqlSink and sqlite.engine is engine
    # Building a PostgreSQL engine connects to nothing: the sink is chosen from the dialect alone.
    pg_engine = sa.create_engine("postgresql+psycopg://cryptoviz@127.0.0.1:9/none")
    pg = open_sink(pg_engine)
    assert type(pg) is PostgresCopySink and pg.engine is pg_engine


def test_the_memory_sink_keeps_batches_and_counts_rows() -> None:
    sink = MemorySink()
    assert (sink.batches, sink.dead_letters, sink.fail_next, sink.closed, sink.snapshots) == ([], [], 0, False, [])
    a, b, c = snapshot("bitcoin"), snapshot("ethereum"), snapshot("solana")
    assert sink.write([a, b]) == WriteResult(2, 2, 4)  # two sources each in the factory's snapshots
    assert sink.write((c,)) == WriteResult(1, 1, 2)
    assert sink.write([]) == WriteResult(0, 0, 0)
    assert sink.batches == [[a, b], [c], []] and type(sink.batches[1]) is list
    assert sink.snapshots == [a, b, c]
    sink.close()
    assert sink.closed


def test_the_memory_sink_refuses_as_many_writes_as_asked() -> None:
    sink = MemorySink()
    sink.fail_next = 2
    for left in (1, 0):
        with pytest.raises(StoreError) as raised:
            sink.write([snapshot()])
        assert str(raised.value) == "memory sink: write refused (fail_next)"
        assert sink.fail_next == left
    assert sink.write([snapshot()]).snapshots == 1
    assert len(sink.batches) == 1 and sink.fail_next == 0


def test_the_memory_sink_keeps_dead_letters() -> None:
    sink = MemorySink()
    first = [DeadLetterRecord("t", 0, 1, "k", "invalid JSON")]
    second = [DeadLetterRecord("t", 0, 2, None, "not an object"), DeadLetterRecord("t", 1, 3, "x", "bad")]
    sink.record(first, T0)
    sink.record(second, T0)
    assert sink.dead_letters == first + second


def test_dead_letters_are_cut_to_their_column_widths(engine: sa.Engine) -> None:
    letter = DeadLetterRecord("t" * 300, 3, 9, "key", "e" * 5000)
    exact = DeadLetterRecord("u" * 255, 3, 10, None, "f" * 4000)
    DeadLetterTable(engine).record([letter, exact], T0.astimezone(timezone(timedelta(hours=2))))
    with engine.connect() as conn:
        rows = conn.execute(sa.text('SELECT dead_at, topic, partition, "offset", key, error FROM dead_letters '
                                    'ORDER BY "offset"')).all()
    assert [(len(r.topic), len(r.error), r.partition, r.offset, r.key) for r in rows] == [
        (255, 4000, 3, 9, "key"), (255, 4000, 3, 10, None)]
    assert rows[0].topic == "t" * 255 and rows[0].error == "e" * 4000
    stored = rows[0].dead_at if isinstance(rows[0].dead_at, datetime) else datetime.fromisoformat(rows[0].dead_at)
    assert stored.replace(tzinfo=UTC) == T0  # kept in UTC


def test_no_dead_letters_touch_nothing(tmp_path: Path) -> None:
    bare = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables at all: nothing must be asked of it
    DeadLetterTable(bare).record([], T0)


def test_a_refused_dead_letter_write_says_how_many_and_why(tmp_path: Path) -> None:
    bare = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    letters = [DeadLetterRecord("t", 0, 1, "k", "bad"), DeadLetterRecord("t", 0, 2, "k", "bad")]
    with pytest.raises(StoreError) as raised:
        DeadLetterTable(bare).record(letters, T0)
    assert str(raised.value) == "recording 2 dead letter(s) failed: no such table: dead_letters"
