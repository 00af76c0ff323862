"""Writer and migrations on a real SQLite file (the embedded store)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from cryptoviz.store.tables import currencies, currency_data, currency_data_history, metadata, source_quotes
from tests.factories import T0, snapshot


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(url)
    return make_engine(url)


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_migrations_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head_revision()
    names = set(sa.inspect(make_engine(url)).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= names
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    assert set(sa.inspect(make_engine(url)).get_table_names()) == {"alembic_version"}
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head_revision()


def test_batch_is_written_and_replays_make_no_second_row(engine: sa.Engine) -> None:
    writer = open_sink(engine)
    batch = [snapshot("bitcoin", price=100.0), snapshot("ethereum", price=10.0, symbol="ETH")]
    first = writer.write(batch)
    assert first.history_inserted == 2
    assert first.source_quotes_inserted == 4
    again = writer.write(batch)  # a redelivered batch
    assert again.history_inserted == 0
    assert _count(engine, currency_data_history) == 2
    assert _count(engine, source_quotes) == 4
    assert _count(engine, currencies) == 2
    assert _count(engine, currency_data) == 2


def test_current_row_keeps_the_latest_even_when_an_older_record_arrives_late(engine: sa.Engine) -> None:
    writer = open_sink(engine)
    writer.write([snapshot("bitcoin", price=200.0, minutes=5)])
    writer.write([snapshot("bitcoin", price=100.0, minutes=0)])  # late and older
    with engine.connect() as conn:
        price = conn.execute(sa.select(currency_data.c.price)).scalar_one()
        first_seen, last_seen = conn.execute(sa.select(currencies.c.first_seen_at, currencies.c.last_seen_at)).one()
    assert price == 200.0
    assert _count(engine, currency_data_history) == 2
    assert first_seen.replace(tzinfo=None) == T0.replace(tzinfo=None)
    assert (last_seen - first_seen).total_seconds() == 300


def test_one_batch_with_several_cycles_of_one_coin(engine: sa.Engine) -> None:
    open_sink(engine).write([snapshot("bitcoin", price=float(100 + m), minutes=m) for m in range(5)])
    with engine.connect() as conn:
        assert conn.execute(sa.select(currency_data.c.price)).scalar_one() == 104.0
    assert _count(engine, currency_data_history) == 5


def test_tiny_and_huge_values_round_trip(engine: sa.Engine) -> None:
    s = snapshot("shiba", price=1e-12)
    open_sink(engine).write([s])
    with engine.connect() as conn:
        price, cap = conn.execute(sa.select(currency_data.c.price, currency_data.c.market_cap)).one()
    assert price == 1e-12
    assert cap == 1e-12 * 1000


def test_names_with_sql_are_stored_verbatim(engine: sa.Engine) -> None:
    evil = "'); DROP TABLE currencies;--"
    open_sink(engine).write([snapshot("evil-coin", name=evil, symbol="EVIL")])
    with engine.connect() as conn:
        assert conn.execute(sa.select(currencies.c.name)).scalar_one() == evil


def test_dead_letters_are_recorded_once(engine: sa.Engine) -> None:
    from cryptoviz.bus.base import DeadLetterRecord
    from cryptoviz.store.sink import DeadLetterTable

    letters = [DeadLetterRecord("crypto_viz", 2, 17, "bad", "invalid JSON: unexpected character")]
    DeadLetterTable(engine).record(letters, T0)
    DeadLetterTable(engine).record(letters, T0)  # redelivered
    with engine.connect() as conn:
        rows = conn.execute(sa.text('SELECT topic, partition, "offset", key, error FROM dead_letters')).all()
    assert rows == [("crypto_viz", 2, 17, "bad", "invalid JSON: unexpected character")]
