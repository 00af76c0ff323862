"""History that lasts, on a real PostgreSQL: daily partitions (the migration converts a filled database in
place), candles folded from the existing history, retention dropping whole days, upkeep."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cryptoviz.config import load_settings
from cryptoviz.store import migrate, partitions
from cryptoviz.store.candles import TIERS, Point, aggregate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.retention import upkeep
from cryptoviz.store.sink import open_sink
from cryptoviz.timeutil import utc
from tests.factories import snapshot

pytestmark = pytest.mark.integration

RAW = ("currency_data_history", "source_quotes")


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def _candles(engine: sa.Engine, table: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            f"SELECT currency_id, bucket, open, high, low, close, n, sources FROM {table} ORDER BY 1, 2"))]


def _recomputed(engine: sa.Engine, seconds: int) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT currency_id, observed_at, price, market_cap, volume_24h, confidence, "
                                    "sources FROM currency_data_history")).all()
    candles = aggregate([Point(r[0], utc(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows], seconds)
    return [(c.coin, c.bucket, c.open, c.high, c.low, c.close, c.n, c.sources) for _, c in sorted(candles.items())]


def _relkind(engine: sa.Engine, table: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT relkind FROM pg_class WHERE relname = :t"), {"t": table}).scalar_one())


def test_the_migration_converts_a_demo_database_in_place_and_back(pg_database: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    result = subprocess.run([sys.executable, "-m", "cryptoviz", "demo", "--duration", "9", "--interval", "3",
                             "--database-url", pg_database, "--no-serve", "--no-backfill"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    engine = make_engine(pg_database)
    try:
        counts = {t: _count(engine, t) for t in RAW}
        assert counts["currency_data_history"] >= 200 and counts["source_quotes"] >= 600
        assert all(_relkind(engine, t) == "p" for t in RAW)
        candles = {t.table.name: _candles(engine, t.table.name) for t in TIERS}
        assert candles["candles_1h"] == _recomputed(engine, 3600)

        migrate.downgrade(pg_database, "0004")  # plain tables again, no candles
        assert {t: _count(engine, t) for t in RAW} == counts
        assert all(_relkind(engine, t) == "r" for t in RAW)
        assert not sa.inspect(engine).has_table("candles_5m")

        migrate.upgrade(pg_database)  # converted in place, candles folded from the history rows
        assert {t: _count(engine, t) for t in RAW} == counts
        assert all(_relkind(engine, t) == "p" for t in RAW)
        assert {t.table.name: _candles(engine, t.table.name) for t in TIERS} == candles
        with engine.connect() as conn:
            today = datetime.now(UTC).date()
            names = {p.name for p in partitions.partitions(conn, "currency_data_history")}
        assert partitions.partition_name("currency_data_history", today + timedelta(days=7)) in names
        assert partitions.default_name("currency_data_history") in names
        # every row sits in its day's partition, none in the default one
        assert _count(engine, partitions.default_name("currency_data_history")) == 0
        # and the demo goes on writing into the converted tables
        open_sink(engine).write([snapshot("bitcoin", at=datetime.now(UTC).replace(microsecond=0))])
        assert _count(engine, "currency_data_history") == counts["currency_data_history"] + 1
    finally:
        engine.dispose()


def test_old_rows_wait_in_the_default_partition_then_retention_drops_whole_days(pg_database: str) -> None:
    migrate.upgrade(pg_database)
    engine = make_engine(pg_database)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        old_day = (now - timedelta(days=40)).replace(hour=12, minute=0, second=0)
        sink = open_sink(engine)
        sink.write([snapshot(f"coin-{i}", at=old_day, minutes=m) for i in range(5) for m in range(3)])
        sink.write([snapshot(f"coin-{i}", at=now) for i in range(5)])
        default = partitions.default_name("currency_data_history")
        assert _count(engine, default) == 15  # no partition for that day: the default one caught them
        # a partition made for that day later takes its rows out of the default partition
        with engine.begin() as conn:
            created = partitions.ensure_days(conn, [old_day.date()])
        assert partitions.partition_name("currency_data_history", old_day.date()) in created
        assert _count(engine, default) == 0
        assert _count(engine, partitions.partition_name("currency_data_history", old_day.date())) == 15

        settings = load_settings(database_url=pg_database, retention_raw="30d", retention_5m="off")
        dry = upkeep(engine, settings, dry_run=True)
        assert dry.rows["currency_data_history"] == 15 and dry.rows["source_quotes"] == 30
        assert dry.partitions["currency_data_history"] == [
            partitions.partition_name("currency_data_history", old_day.date())]
        assert _count(engine, "currency_data_history") == 20  # a dry run removes nothing
        done = upkeep(engine, settings)
        assert done.rows == dry.rows
        assert _count(engine, "currency_data_history") == 5 and _count(engine, "source_quotes") == 10
        # candles outlive the raw rows: the old hour and day are still there
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM candles_1d WHERE bucket < :t"),
                                {"t": old_day + timedelta(days=1)}).scalar_one() == 5
        # a second run finds nothing more
        assert upkeep(engine, settings).total_rows == 0
    finally:
        engine.dispose()


def _columns(engine: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


INTERVAL_COLUMNS = {"price_low", "price_high", "unverified", "price_at"}
BAND_COLUMNS = {"price_low", "price_high", "unverified_n"}


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_the_interval_migration_goes_down_and_up_on_a_filled_database(pg_database: str, tmp_path: Path,
                                                                      dialect: str) -> None:
    url = pg_database if dialect == "postgresql" else f"sqlite:///{tmp_path / 'filled.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        batch = [replace(snapshot(f"coin-{i}", at=now - timedelta(hours=2), minutes=m, price=100.0 + m),
                         price_low=99.0 + m, price_high=101.0 + m, unverified=m % 2 == 0,
                         price_at=now - timedelta(hours=2, seconds=30) + timedelta(minutes=m))
                 for i in range(20) for m in range(0, 90, 3)]
        open_sink(engine).write(batch)
        counts = {t: _count(engine, t) for t in (*RAW, "currency_data", "candles_5m", "candles_1h")}
        with engine.connect() as conn:
            unverified = conn.execute(sa.text("SELECT sum(unverified_n) FROM candles_1d")).scalar_one()
        assert unverified == sum(1 for s in batch if s.unverified)
        old_candles = {t.table.name: _candles(engine, t.table.name) for t in TIERS}

        migrate.downgrade(url, "0006")
        engine.dispose()
        assert not INTERVAL_COLUMNS & _columns(engine, "currency_data_history")
        assert not INTERVAL_COLUMNS & _columns(engine, "currency_data")
        assert not BAND_COLUMNS & _columns(engine, "candles_1h")
        assert {t: _count(engine, t) for t in counts} == counts
        assert {t.table.name: _candles(engine, t.table.name) for t in TIERS} == old_candles

        migrate.upgrade(url)
        engine.dispose()
        assert INTERVAL_COLUMNS <= _columns(engine, "currency_data_history")
        assert BAND_COLUMNS <= _columns(engine, "candles_5m")
        with engine.connect() as conn:  # what was dropped comes back empty: no interval, verified
            assert conn.execute(sa.text("SELECT count(*) FROM currency_data_history WHERE price_low IS NOT NULL "
                                        "OR unverified OR price_at IS NOT NULL")).scalar_one() == 0
            assert conn.execute(sa.text("SELECT sum(unverified_n) FROM candles_1d")).scalar_one() == 0
        # and the sink writes them again
        later = [replace(s, observed_at=s.observed_at + timedelta(hours=2)) for s in batch[:30]]
        open_sink(engine).write(later)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM currency_data_history WHERE unverified"))\
                .scalar_one() == sum(1 for s in later if s.unverified)
    finally:
        engine.dispose()
