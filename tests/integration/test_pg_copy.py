"""The PostgreSQL COPY path of the writer gives exactly the rows of the generic (SQLite, multi-row VALUES) path.

Every scenario is written batch by batch to a fresh PostgreSQL database and to a SQLite file; after each
batch both must hold the same rows (``updated_at`` aside: it is the time of the write) and report the same
``WriteResult``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cryptoviz.errors import StoreError
from cryptoviz.models import CoinSnapshot, SourceValue
from cryptoviz.store import migrate, pg_copy
from cryptoviz.store.candles import TIERS, Point, aggregate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import Sink, WriteResult, open_sink
from cryptoviz.store.tables import currencies, currency_data, currency_data_history, source_quotes
from tests.factories import T0, snapshot

pytestmark = pytest.mark.integration

TABLES = {
    "currencies": (currencies, ["id"]),
    "currency_data": (currency_data, ["currency_id"]),
    "currency_data_history": (currency_data_history, ["currency_id", "observed_at"]),
    "source_quotes": (source_quotes, ["currency_id", "source", "observed_at"]),
    **{tier.table.name: (tier.table, ["currency_id", "bucket"]) for tier in TIERS},
}
EVIL_NAMES = [
    "it's \"quoted\"", "back\\slash \\N \\\\", "tab\there", "new\nline\r\nand CR", "unicode ₿ 比特币 🚀 é",
    "'); DROP TABLE currencies;--", "comma, separated; and | pipes", "\\.", "",
]


@pytest.fixture
def pair(pg_database: str, tmp_path: Path) -> Iterator[tuple[Sink, Sink]]:
    """(PostgreSQL writer, SQLite writer), both on fresh databases at the latest schema."""
    migrate.upgrade(pg_database)
    sqlite_url = f"sqlite:///{tmp_path / 'reference.db'}"
    migrate.upgrade(sqlite_url)
    pg, lite = make_engine(pg_database), make_engine(sqlite_url)
    yield open_sink(pg), open_sink(lite)
    pg.dispose()
    lite.dispose()


def _value(v: Any) -> Any:
    if isinstance(v, datetime):  # SQLite gives naive UTC, PostgreSQL aware
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    return v


def _rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with engine.connect() as conn:
        for name, (table, key) in TABLES.items():
            columns = [c for c in table.c if c.name != "updated_at"]
            rows = conn.execute(sa.select(*columns).order_by(*(table.c[k] for k in key))).all()
            out[name] = [tuple(_value(v) for v in row) for row in rows]
    return out


def write_both(pair: tuple[Sink, Sink], batch: list[CoinSnapshot]) -> WriteResult:
    pg, lite = pair
    got, expected = pg.write(batch), lite.write(batch)
    assert got == expected
    assert _rows(pg.engine) == _rows(lite.engine)
    return got


def coin(coin_id: str, minutes: int, **changes: Any) -> CoinSnapshot:
    return replace(snapshot(coin_id, price=100.0 + minutes, minutes=minutes), **changes)


def test_fresh_batches_replays_and_late_records_match_the_generic_path(pair: Any) -> None:
    first = [coin(f"c{i}", m) for i in range(50) for m in range(3)]
    assert write_both(pair, first) == WriteResult(150, 150, 300)
    assert write_both(pair, first) == WriteResult(150, 0, 0)  # a redelivered batch adds nothing
    late = [coin("c0", -30, price=1.0, name="Renamed late"), coin("c1", 1, price=2.0)]  # older / equal times
    assert write_both(pair, late) == WriteResult(2, 1, 2)
    mixed = [coin("c2", 2), coin("c2", 10), coin("new", 0)]  # one already stored, two new
    assert write_both(pair, mixed) == WriteResult(3, 2, 4)
    with pair[0].engine.connect() as conn:
        assert conn.execute(sa.select(currency_data.c.price).where(currency_data.c.currency_id == "c0")).scalar() \
            == 102.0  # the late, older record did not replace the current value


def test_one_key_twice_in_a_batch_keeps_the_last(pair: Any) -> None:
    a = coin("dup", 5, price=1.0)
    b = replace(a, price=2.0, sources=(SourceValue("coingecko", "dup", 2.0, None, None, None),
                                       SourceValue("coingecko", "dup-2", 3.0, 1.0, 1.0, T0, False, "outlier")))
    assert write_both(pair, [a, b]) == WriteResult(2, 1, 2)
    assert write_both(pair, [b, a]) == WriteResult(2, 0, 0)
    # a new history row whose source values repeat a source: only the source quotes collide
    c = coin("dup", 6, sources=(SourceValue("coinmarketcap", "1", 5.0, None, None, None),
                                SourceValue("coinmarketcap", "1", 6.0, 2.0, None, T0, True, None)))
    assert write_both(pair, [c]) == WriteResult(1, 1, 1)


def test_awkward_text_nulls_and_extreme_values_round_trip(pair: Any) -> None:
    batch = []
    for i, name in enumerate(EVIL_NAMES):
        batch.append(coin(f"evil-{i}", 0, name=name, symbol=name[:64] or "X", slug=None if i % 2 else name[:200],
                          coingecko_id=None, coinmarketcap_id=None if i % 3 else "cmc\t1"))
    batch.append(coin("tiny", 0, price=1e-12, market_cap=1e13, volume_24h=0.0, change_1h=-0.0,
                      circulating_supply=1e300, total_supply=None, max_supply=5e-324, rank=None))
    batch.append(coin("bare", 0, market_cap=None, volume_24h=None, change_1h=None, change_24h=None,
                      change_7d=None, circulating_supply=None, total_supply=None, max_supply=None, slug=None,
                      coingecko_id=None, coinmarketcap_id=None, sources=()))
    many = tuple(SourceValue(f"source-with-a-rather-long-name-{k:02d}", str(k), 1.0 + k, None, None, None)
                 for k in range(12))  # the sources column is cut at 200 characters on both paths
    batch.append(coin("many-sources", 0, sources=many))
    assert write_both(pair, batch).history_inserted == len(batch)
    # ids learnt later are coalesced in; a later NULL never erases them
    later = [coin(f"evil-{i}", 1, coingecko_id=f"cg-{i}", slug=None, coinmarketcap_id=None)
             for i in range(len(EVIL_NAMES))]
    write_both(pair, later)
    write_both(pair, [replace(s, observed_at=s.observed_at + timedelta(minutes=1), coingecko_id=None) for s in later])


def test_naive_and_non_utc_times_are_the_same_instants(pair: Any) -> None:
    plus5 = timezone(timedelta(hours=5))
    naive = coin("naive", 0, observed_at=T0.replace(tzinfo=None),
                 sources=(SourceValue("coingecko", "naive", 1.0, None, None, T0.replace(tzinfo=None)),))
    shifted = coin("shifted", 0, observed_at=T0.astimezone(plus5),
                   sources=(SourceValue("coingecko", "shifted", 1.0, None, None, T0.astimezone(plus5)),))
    write_both(pair, [naive, shifted])
    write_both(pair, [replace(naive, observed_at=T0), replace(shifted, observed_at=T0)])  # same instants: replays


def test_refused_batch_changes_nothing_and_the_writer_recovers(pair: Any) -> None:
    pg, _lite = pair
    with pytest.raises(StoreError, match="failed"):
        pg.write([coin("ok", 0), coin("x" * 201, 0)])  # currencies.id is VARCHAR(200)
    with pytest.raises(StoreError, match="failed"):
        pg.write([coin("big-rank", 0, rank=2**40)])  # INTEGER column
    with pytest.raises(StoreError, match="failed"):
        pg.write([coin("nul", 0, name="a\x00b")])  # PostgreSQL text refuses NUL
    assert all(rows == [] for rows in _rows(pg.engine).values())
    assert write_both(pair, [coin("ok", 0)]) == WriteResult(1, 1, 2)


def test_staging_tables_are_per_session_and_empty_after_each_batch(pair: Any) -> None:
    pg, _lite = pair
    write_both(pair, [coin("a", 0)])
    with pg.engine.connect() as conn:
        assert conn.connection.info.get(pg_copy._READY) is True
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {pg_copy.STAGE_SNAPSHOTS}").scalar() == 0
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {pg_copy.STAGE_QUOTES}").scalar() == 0
    pg.engine.dispose()  # a new session creates its own staging tables
    write_both(pair, [coin("a", 1), coin("b", 1)])


def _recomputed(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every tier's candles computed afresh from the stored history rows."""
    names = [c.name for c in currency_data_history.c]
    quote = [c.name for c in source_quotes.c]
    prices: dict[tuple[str, datetime], dict[str, float]] = {}
    for r in rows["source_quotes"]:
        key = (r[quote.index("currency_id")], r[quote.index("observed_at")])
        prices.setdefault(key, {})[r[quote.index("source")]] = r[quote.index("price")]
    points = [Point(r[names.index("currency_id")], r[names.index("observed_at")], r[names.index("price")],
                    r[names.index("market_cap")], r[names.index("volume_24h")], r[names.index("confidence")],
                    r[names.index("sources")], prices.get((r[0], r[1])), r[names.index("price_low")],
                    r[names.index("price_high")], bool(r[names.index("unverified")]))
              for r in rows["currency_data_history"]]
    out = {}
    for tier in TIERS:
        candles = aggregate(points, tier.seconds)
        out[tier.table.name] = [tuple(c.row().values()) for _, c in sorted(candles.items())]
    return out


def _interval(rng: Any, minutes: int) -> dict[str, Any]:
    """A random interval (or none), verification and quote time, as the reconciler fills them."""
    if rng.random() < 0.3:
        return {"unverified": rng.random() < 0.3}  # no interval, no quote time
    low, high = rng.uniform(80, 95), rng.uniform(105, 120)
    return {"price_low": low, "price_high": high, "unverified": rng.random() < 0.3,
            "price_at": T0 + timedelta(minutes=minutes, seconds=-rng.randint(0, 90))}


def test_interval_verification_and_quote_time_are_stored_and_replays_keep_them(pair: Any) -> None:
    at = T0 + timedelta(minutes=3, seconds=-40)
    wide = coin("band", 3, price=100.0, price_low=97.5, price_high=102.5, unverified=True, price_at=at)
    assert write_both(pair, [wide, coin("plain", 3)]) == WriteResult(2, 2, 4)
    assert write_both(pair, [wide]) == WriteResult(1, 0, 0)  # a redelivery changes nothing
    # a naive quote time is UTC on both paths; a later value replaces the current one
    later = coin("band", 4, price_low=None, price_high=None, unverified=False, price_at=at.replace(tzinfo=None))
    write_both(pair, [later])
    with pair[0].engine.connect() as conn:
        current = conn.execute(sa.select(currency_data.c.price_low, currency_data.c.unverified,
                                         currency_data.c.price_at)
                               .where(currency_data.c.currency_id == "band")).one()
        assert current == (None, False, at)
        stored = conn.execute(sa.select(currency_data_history.c.price_low, currency_data_history.c.price_high,
                                        currency_data_history.c.unverified, currency_data_history.c.price_at)
                              .where(currency_data_history.c.currency_id == "band")
                              .order_by(currency_data_history.c.observed_at)).all()
        assert stored == [(97.5, 102.5, True, at), (None, None, False, at)]
        candle = conn.execute(sa.text("SELECT price_low, price_high, unverified_n, n FROM candles_1h "
                                      "WHERE currency_id = 'band'")).one()
        assert tuple(candle) == (97.5, 102.5, 1, 2)


@pytest.mark.parametrize("seed", range(4))
def test_candles_equal_a_recomputation_from_the_history_rows_whatever_the_order(pair: Any, seed: int) -> None:
    import random

    rng = random.Random(seed)
    coins = ["alpha", "beta", "gamma"]
    # minutes 0..40 (several 5-minute buckets, an hour boundary at 60 is not needed: buckets are per tier)
    observations = [coin(c, m, price=rng.uniform(90, 110), confidence=rng.choice([0.5, 0.9, 0.99]),
                         record=rng.random() > 0.25,
                         sources=(SourceValue(rng.choice(["coingecko", "coinpaprika"]), c, 1.0, None, None, None),),
                         **_interval(rng, m))
                    for c in coins for m in range(0, 41, 2)]
    rng.shuffle(observations)  # late and out-of-order rows
    batches = []
    while observations:
        size = rng.randint(1, 12)
        batches.append(observations[:size])
        observations = observations[size:]
    for batch in batches:
        write_both(pair, batch)
        if rng.random() < 0.3:
            write_both(pair, batch)  # a redelivery changes no candle
    rows = _rows(pair[0].engine)
    expected = _recomputed(rows)
    for tier in TIERS:
        got = [r for r in rows[tier.table.name]]
        assert got == expected[tier.table.name], tier.name
    recorded = {(s.coin_id, s.observed_at) for batch in batches for s in batch if s.record}
    assert len(rows["currency_data_history"]) == len(recorded)  # write on change: unrecorded rows stay out
