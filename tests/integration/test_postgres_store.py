"""The store on a real PostgreSQL: migrations both ways, set-based idempotent writes, the reader role."""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest
import sqlalchemy as sa

from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from cryptoviz.store.tables import metadata
from tests.factories import snapshot

pytestmark = pytest.mark.integration


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_migrations_upgrade_downgrade_upgrade_on_postgres(pg_database: str) -> None:
    migrate.upgrade(pg_database)
    assert migrate.current(pg_database) == migrate.head_revision()
    engine = make_engine(pg_database)
    assert {t.name for t in metadata.sorted_tables} <= set(sa.inspect(engine).get_table_names())
    migrate.downgrade(pg_database, "base")
    assert migrate.current(pg_database) is None
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    migrate.upgrade(pg_database)
    assert migrate.current(pg_database) == migrate.head_revision()
    engine.dispose()


def test_batches_are_idempotent_and_keep_the_latest_current_value(pg_database: str,
                                                                   request: pytest.FixtureRequest) -> None:
    migrate.upgrade(pg_database)
    engine = make_engine(pg_database)
    request.addfinalizer(engine.dispose)
    writer = open_sink(engine)
    batch = [snapshot(f"coin-{i}", price=float(i + 1), minutes=m) for i in range(300) for m in range(3)]
    result = writer.write(batch)
    assert result.history_inserted == 900
    assert writer.write(batch).history_inserted == 0  # redelivery
    writer.write([snapshot("coin-0", price=999.0, minutes=-10)])  # late, older
    assert _count(engine, "currency_data_history") == 901
    assert _count(engine, "currency_data") == 300
    assert _count(engine, "source_quotes") == 2 * 901
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT price FROM currency_data WHERE currency_id = 'coin-0'")).scalar_one() == 1.0


# Values at both ends of what markets quote: a sub-nano price, caps and supplies past 1e20, digits that a
# decimal rounding or a text format with too few digits would change.
EXTREMES = {"dust": (1e-12, 1e-12 * 3.3e15, 7.1e-3, 3.3e15), "whale": (1.234567890123e12, 9.87654321e20, 4.5e19, 8e8),
            "thirds": (1 / 3, 1e9 / 3, 1e6 / 7, 2e7 / 3), "subnormal": (5e-324, 1e-300, 0.0, 1e300)}


def test_tiny_and_huge_values_round_trip_through_the_writer_unchanged(pg_database: str) -> None:
    migrate.upgrade(pg_database)
    engine = make_engine(pg_database)
    sent = []
    for coin, (price, cap, volume, supply) in EXTREMES.items():
        s = snapshot(coin, price=price)
        s = replace(s, market_cap=cap, volume_24h=volume, circulating_supply=supply, total_supply=supply * 2,
                    sources=tuple(replace(v, price=price, market_cap=cap) for v in s.sources))
        sent.append(s)
    try:
        assert open_sink(engine).write(sent).history_inserted == len(sent)
        with engine.connect() as conn:
            current = {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(
                "SELECT currency_id, price, market_cap, volume_24h, circulating_supply, total_supply "
                "FROM currency_data"))}
            history = {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(
                "SELECT currency_id, price, market_cap, volume_24h FROM currency_data_history"))}
            quotes = {(r[0], r[1]): tuple(r[2:]) for r in conn.execute(sa.text(
                "SELECT currency_id, source, price, market_cap FROM source_quotes"))}
            closes = dict(conn.execute(sa.text("SELECT currency_id, close FROM candles_5m")).all())
    finally:
        engine.dispose()
    for s in sent:
        assert current[s.coin_id] == (s.price, s.market_cap, s.volume_24h, s.circulating_supply,
                                      s.total_supply), s.coin_id
        assert history[s.coin_id] == (s.price, s.market_cap, s.volume_24h), s.coin_id
        for v in s.sources:
            assert quotes[(s.coin_id, v.source)] == (v.price, v.market_cap), (s.coin_id, v.source)
        assert closes[s.coin_id] == s.price, s.coin_id


def test_sql_in_names_is_stored_verbatim(pg_database: str) -> None:
    migrate.upgrade(pg_database)
    engine = make_engine(pg_database)
    evil = "'); DROP TABLE currencies;--"
    open_sink(engine).write([snapshot("evil", name=evil)])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM currencies")).scalar_one() == evil
    engine.dispose()


def test_reader_role_can_select_but_not_write(pg_database: str) -> None:
    migrate.upgrade(pg_database)
    engine = make_engine(pg_database)
    open_sink(engine).write([snapshot("bitcoin")])
    engine.dispose()
    url = pg_database.replace("postgresql+psycopg://", "postgresql://")
    reader = url.replace("cryptoviz:cryptoviz@", "cryptoviz_reader:cryptoviz_reader@")
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT count(*) FROM currency_data").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM currency_data")
