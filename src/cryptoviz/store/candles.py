"""Candle tiers: OHLC of the consensus price per coin in 5-minute, 1-hour and 1-day buckets.

A candle is a function of the history rows in its bucket: open/close = the price of the first/last row (by
``observed_at``), high/low, the market cap, 24 h volume and each source's own price (``source_close``, from
the row's source quotes) of the last row, ``n`` rows, the lowest confidence and the union of the sources
used, and the band of the rows' intervals (the lowest ``price_low``, the highest ``price_high``) with the
number of unverified rows (``unverified_n``). It is kept up to date as batches are stored: each batch's
*newly inserted* history rows are aggregated per bucket and merged into the stored candle
(:func:`merge`), so a late row lands in its own bucket, a redelivered batch (nothing newly inserted)
changes nothing, and a candle always equals what a recomputation from its rows gives
(:func:`aggregate`). The PostgreSQL sink does the same in SQL (:data:`PG_MERGE`).

Backfilled points (``cryptoviz backfill``) count in ``n_backfill``; a backfill only writes buckets no
live row has reached, so running it twice gives the same rows.

Buckets are epoch-aligned in UTC (``bucket = floor(t / width) * width``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cryptoviz.store.engine import insert_for
from cryptoviz.store.tables import candles_1d, candles_1h, candles_5m, currency_data_history, source_quotes
from cryptoviz.timeutil import utc


@dataclass(frozen=True, slots=True)
class Tier:
    name: str  # "5m", "1h", "1d"
    seconds: int
    table: sa.Table


TIERS: tuple[Tier, ...] = (Tier("5m", 300, candles_5m), Tier("1h", 3600, candles_1h), Tier("1d", 86_400, candles_1d))
TIER_BY_NAME: Mapping[str, Tier] = {t.name: t for t in TIERS}


@dataclass(frozen=True, slots=True)
class Point:
    """One history row as a candle sees it."""

    coin: str
    at: datetime
    price: float
    market_cap: float | None = None
    volume_24h: float | None = None
    confidence: float | None = None
    sources: str = ""
    source_prices: Mapping[str, float] | None = None  # each source's own price at this observation
    price_low: float | None = None  # the nominal 95 % interval around ``price`` (None: none)
    price_high: float | None = None
    unverified: bool = False


@dataclass(frozen=True, slots=True)
class Candle:
    coin: str
    bucket: datetime
    open: float
    high: float
    low: float
    close: float
    open_at: datetime
    close_at: datetime
    market_cap: float | None
    volume_24h: float | None
    n: int
    n_backfill: int
    confidence_min: float | None
    sources: str
    source_close: Mapping[str, float] | None = None
    price_low: float | None = None  # the lowest low end of the rows' intervals
    price_high: float | None = None  # the highest high end
    unverified_n: int = 0  # rows whose value was unverified

    def row(self) -> dict[str, Any]:
        return {"currency_id": self.coin, "bucket": self.bucket, "open": self.open, "high": self.high,
                "low": self.low, "close": self.close, "open_at": self.open_at, "close_at": self.close_at,
                "market_cap": self.market_cap, "volume_24h": self.volume_24h, "n": self.n,
                "n_backfill": self.n_backfill, "confidence_min": self.confidence_min, "sources": self.sources,
                "source_close": None if self.source_close is None else dict(self.source_close),
                "price_low": self.price_low, "price_high": self.price_high, "unverified_n": self.unverified_n}


def bucket_of(at: datetime, seconds: int) -> datetime:
    ts = utc(at).timestamp()
    return datetime.fromtimestamp(ts - ts % seconds, UTC)


def union_sources(*lists: str) -> str:
    """Comma lists -> their sorted union as one comma list (the same lists: that list as it is)."""
    if len(set(lists)) == 1:
        return lists[0][:200]
    return ",".join(sorted({s for text in lists for s in text.split(",") if s}))[:200]


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def merge(a: Candle, b: Candle) -> Candle:
    """One candle of two of the same coin and bucket (order-free: ``merge(a, b) == merge(b, a)`` but for an
    exact tie of open or close times, where ``b`` wins the close and ``a`` keeps the open)."""
    first = b if b.open_at < a.open_at else a
    last = b if b.close_at >= a.close_at else a
    return Candle(a.coin, a.bucket, first.open, max(a.high, b.high), min(a.low, b.low), last.close,
                  first.open_at, last.close_at, last.market_cap, last.volume_24h, a.n + b.n,
                  a.n_backfill + b.n_backfill, _min(a.confidence_min, b.confidence_min),
                  union_sources(a.sources, b.sources), last.source_close, _min(a.price_low, b.price_low),
                  _max(a.price_high, b.price_high), a.unverified_n + b.unverified_n)


def candle_of(point: Point, seconds: int, *, backfill: bool = False) -> Candle:
    return Candle(point.coin, bucket_of(point.at, seconds), point.price, point.price, point.price, point.price,
                  utc(point.at), utc(point.at), point.market_cap, point.volume_24h, 0 if backfill else 1,
                  1 if backfill else 0, point.confidence, union_sources(point.sources),
                  None if point.source_prices is None else dict(point.source_prices), point.price_low,
                  point.price_high, 1 if point.unverified and not backfill else 0)


def aggregate(points: Iterable[Point], seconds: int, *, backfill: bool = False) -> dict[tuple[str, datetime], Candle]:
    """The candles of ``points`` in buckets of ``seconds``, keyed by (coin, bucket)."""
    out: dict[tuple[str, datetime], Candle] = {}
    for p in sorted(points, key=lambda p: (p.coin, utc(p.at))):
        c = candle_of(p, seconds, backfill=backfill)
        key = (c.coin, c.bucket)
        held = out.get(key)
        out[key] = c if held is None else merge(held, c)
    return out


# --- writing -------------------------------------------------------------------------------------------


# Columns a candle table gained after it was made (migration 0007): left out while an older migration
# folds the history into the tiers (``legacy``).
BAND_COLUMNS = ("price_low", "price_high", "unverified_n")


def fold_into(conn: sa.Connection, points: Sequence[Point], *, legacy: bool = False) -> None:
    """Merge newly stored history ``points`` into every tier's candles (SQLite and any SQL database; the
    PostgreSQL sink does this set-based in :data:`PG_MERGE`). ``legacy``: the tables lack
    :data:`BAND_COLUMNS` (a schema before migration 0007)."""
    if not points:
        return
    for tier in TIERS:
        fresh = aggregate(points, tier.seconds)
        stored = _read(conn, tier.table, fresh, legacy=legacy)
        rows = [(merge(stored[key], c) if key in stored else c).row() for key, c in fresh.items()]
        if legacy:
            rows = [{k: v for k, v in row.items() if k not in BAND_COLUMNS} for row in rows]
        _upsert(conn, tier.table, rows)


def _read(conn: sa.Connection, table: sa.Table, keys: Mapping[tuple[str, datetime], Candle], *,
          legacy: bool = False) -> dict[tuple[str, datetime], Candle]:
    found: dict[tuple[str, datetime], Candle] = {}
    coins = sorted({coin for coin, _ in keys})
    buckets = [b for _, b in keys]
    lo, hi = min(buckets), max(buckets)
    columns = [c for c in table.c if not (legacy and c.name in BAND_COLUMNS)]
    for start in range(0, len(coins), 500):
        query = sa.select(*columns).where(table.c.currency_id.in_(coins[start:start + 500]),
                                          table.c.bucket >= lo, table.c.bucket <= hi)
        for r in conn.execute(query).mappings():
            c = Candle(r["currency_id"], utc(r["bucket"]), r["open"], r["high"], r["low"], r["close"],
                       utc(r["open_at"]), utc(r["close_at"]), r["market_cap"], r["volume_24h"], r["n"],
                       r["n_backfill"], r["confidence_min"], r["sources"], r["source_close"],
                       r.get("price_low"), r.get("price_high"), r.get("unverified_n") or 0)
            if (c.coin, c.bucket) in keys:
                found[(c.coin, c.bucket)] = c
    return found


def _upsert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    ins = insert_for(table, conn.dialect.name)
    stmt = ins.on_conflict_do_update(index_elements=[table.c.currency_id, table.c.bucket],
                                     set_={name: ins.excluded[name] for name in rows[0]
                                           if name not in ("currency_id", "bucket")})
    conn.execute(stmt, rows)


def write_backfill(conn: sa.Connection, tier: Tier, candles: Iterable[Candle]) -> int:
    """Store backfilled candles of one tier where no live history row has reached the bucket (``n = 0``);
    a bucket backfilled before is replaced, so a second run writes the same rows. Returns rows written."""
    rows = [replace(c, n=0).row() for c in candles]
    if not rows:
        return 0
    table = tier.table
    ins = insert_for(table, conn.dialect.name)
    stmt = ins.on_conflict_do_update(
        index_elements=[table.c.currency_id, table.c.bucket],
        set_={c.name: ins.excluded[c.name] for c in table.c if c.name not in ("currency_id", "bucket")},
        where=table.c.n == 0,
    )
    written = 0
    for start in range(0, len(rows), 1000):
        result = conn.execute(stmt.returning(table.c.currency_id), rows[start:start + 1000])
        written += len(result.all())
    return written


def rebuild_from_history(conn: sa.Connection, *, chunk: int = 50_000, legacy: bool = False) -> None:
    """Fold every stored history row into the (empty) tiers: the candles of a database filled before they
    existed. ``legacy``: a schema before migration 0007 (no interval columns yet)."""
    h = currency_data_history.c
    band = () if legacy else (h.price_low, h.price_high, h.unverified)
    query = sa.select(h.currency_id, h.observed_at, h.price, h.market_cap, h.volume_24h, h.confidence,
                      h.sources, *band).order_by(h.currency_id, h.observed_at)
    batch: list[Point] = []
    for r in conn.execute(query):
        extra = {} if legacy else {"price_low": r[7], "price_high": r[8], "unverified": bool(r[9])}
        batch.append(Point(r[0], utc(r[1]), r[2], r[3], r[4], r[5], r[6] or "", **extra))
        if len(batch) >= chunk:
            fold_into(conn, _with_source_prices(conn, batch), legacy=legacy)
            batch = []
    fold_into(conn, _with_source_prices(conn, batch), legacy=legacy)


def _with_source_prices(conn: sa.Connection, points: list[Point]) -> list[Point]:
    """``points`` with each source's own price at that observation, from ``source_quotes``."""
    if not points:
        return points
    q = source_quotes.c
    coins = sorted({p.coin for p in points})
    lo, hi = min(p.at for p in points), max(p.at for p in points)
    prices: dict[tuple[str, datetime], dict[str, float]] = {}
    for start in range(0, len(coins), 500):
        rows = conn.execute(sa.select(q.currency_id, q.observed_at, q.source, q.price).where(
            q.currency_id.in_(coins[start:start + 500]), q.observed_at >= lo, q.observed_at <= hi))
        for coin, at, source, price in rows:
            prices.setdefault((coin, utc(at)), {})[source] = price
    return [replace(p, source_prices=prices.get((p.coin, utc(p.at)))) for p in points]


# --- PostgreSQL, set-based -------------------------------------------------------------------------------
# ``new`` is a CTE of the history rows a statement just inserted (currency_id, observed_at, price,
# market_cap, volume_24h, confidence, sources, price_low, price_high, unverified) with their source prices
# (jsonb ``source_prices``). LEAST / GREATEST and min / max skip NULLs as _min / _max do. One
# INSERT ... ON CONFLICT per tier, in the same statement: the same rules as merge() and aggregate().

_EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
_SOURCES_OF_GROUP = ("(SELECT left(coalesce(string_agg(DISTINCT s, ',' ORDER BY s), ''), 200) "
                     "FROM unnest(string_to_array(string_agg(sources, ','), ',')) AS s WHERE s <> '')")
_SOURCES_MERGED = ("(SELECT left(coalesce(string_agg(DISTINCT s, ',' ORDER BY s), ''), 200) "
                   "FROM unnest(string_to_array(concat_ws(',', c.sources, EXCLUDED.sources), ',')) AS s "
                   "WHERE s <> '')")


def _pg_tier(tier: Tier) -> str:
    return f"""
{tier.table.name}_new AS (
    INSERT INTO {tier.table.name} AS c (currency_id, bucket, open, high, low, close, open_at, close_at,
        market_cap, volume_24h, n, n_backfill, confidence_min, sources, source_close, price_low, price_high,
        unverified_n)
    SELECT currency_id, date_bin('{tier.seconds} seconds', observed_at, {_EPOCH}),
        (array_agg(price ORDER BY observed_at))[1], max(price), min(price),
        (array_agg(price ORDER BY observed_at DESC))[1], min(observed_at), max(observed_at),
        (array_agg(market_cap ORDER BY observed_at DESC))[1], (array_agg(volume_24h ORDER BY observed_at DESC))[1],
        count(*), 0, min(confidence),
        CASE WHEN min(sources) = max(sources) THEN left(min(sources), 200) ELSE {_SOURCES_OF_GROUP} END,
        (array_agg(source_prices ORDER BY observed_at DESC))[1],
        min(price_low), max(price_high), count(*) FILTER (WHERE unverified)
    FROM new
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (currency_id, bucket) DO UPDATE SET
        open = CASE WHEN EXCLUDED.open_at < c.open_at THEN EXCLUDED.open ELSE c.open END,
        open_at = LEAST(c.open_at, EXCLUDED.open_at),
        close = CASE WHEN EXCLUDED.close_at >= c.close_at THEN EXCLUDED.close ELSE c.close END,
        market_cap = CASE WHEN EXCLUDED.close_at >= c.close_at THEN EXCLUDED.market_cap ELSE c.market_cap END,
        volume_24h = CASE WHEN EXCLUDED.close_at >= c.close_at THEN EXCLUDED.volume_24h ELSE c.volume_24h END,
        source_close = CASE WHEN EXCLUDED.close_at >= c.close_at THEN EXCLUDED.source_close ELSE c.source_close END,
        close_at = GREATEST(c.close_at, EXCLUDED.close_at),
        high = GREATEST(c.high, EXCLUDED.high),
        low = LEAST(c.low, EXCLUDED.low),
        n = c.n + EXCLUDED.n,
        confidence_min = LEAST(c.confidence_min, EXCLUDED.confidence_min),
        price_low = LEAST(c.price_low, EXCLUDED.price_low),
        price_high = GREATEST(c.price_high, EXCLUDED.price_high),
        unverified_n = c.unverified_n + EXCLUDED.unverified_n,
        sources = CASE WHEN c.sources = EXCLUDED.sources THEN c.sources ELSE {_SOURCES_MERGED} END
    RETURNING 1
)"""


PG_MERGE = ",".join(_pg_tier(t) for t in TIERS)
PG_RETURNING = ("RETURNING currency_id, observed_at, price, market_cap, volume_24h, confidence, sources, "
                "price_low, price_high, unverified")


def pg_new_rows(inserted: str, stage: str, *, all_new: bool) -> str:
    """The CTEs ``inserted_rows`` (the history INSERT, ``inserted`` being its text up to RETURNING) and
    ``new`` (those rows with their staged source prices: of every staged row of that key, a later one's
    price of a source winning, as in the source-quote rows), ready for :data:`PG_MERGE`.

    ``all_new``: the INSERT has no ON CONFLICT clause, so it either inserts every staged row or fails the
    whole statement; ``new`` is then read straight from the staging table, without joining the RETURNING
    rows back to it.
    """
    if all_new:
        return f"""
inserted_rows AS (
    {inserted}
    RETURNING 1
),
new AS (
    SELECT currency_id, observed_at, price, market_cap, volume_24h, confidence, sources, price_low, price_high,
           unverified, source_prices::jsonb AS source_prices
    FROM {stage} WHERE record
)"""
    return f"""
inserted_rows AS (
    {inserted}
    {PG_RETURNING}
),
new AS (
    SELECT i.*, s.source_prices
    FROM inserted_rows i
    LEFT JOIN (SELECT st.currency_id, st.observed_at, jsonb_object_agg(p.key, p.value ORDER BY st.seq) AS source_prices
               FROM {stage} st, jsonb_each(st.source_prices::jsonb) AS p
               WHERE st.record GROUP BY st.currency_id, st.observed_at) s
      USING (currency_id, observed_at)
)"""
