"""Read-side SQL of the API and the dashboard. Portable: the same statements run on SQLite and PostgreSQL.

Every function opens its own short connection and returns plain Python values (UTC-aware datetimes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from cryptoviz.config import Settings
from cryptoviz.store.candles import Tier
from cryptoviz.store.tables import (
    candles_1d,
    candles_1h,
    candles_5m,
    currencies,
    currency_data,
    currency_data_history,
    metadata,
    pipeline_runs,
    quote_rejections,
    source_quotes,
)
from cryptoviz.timeutil import utc

SortKey = Literal["market_cap", "price", "volume_24h", "change_24h", "rank", "confidence", "name"]
Order = Literal["asc", "desc"]

SORT_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "market_cap": currency_data.c.market_cap,
    "price": currency_data.c.price,
    "volume_24h": currency_data.c.volume_24h,
    "change_24h": currency_data.c.change_24h,
    "rank": currency_data.c.rank,
    "confidence": currency_data.c.confidence,
    "name": sa.func.lower(currencies.c.name),
}

_COIN_COLUMNS = (
    currencies.c.id, currencies.c.symbol, currencies.c.name, currency_data.c.rank, currency_data.c.price,
    currency_data.c.market_cap, currency_data.c.volume_24h, currency_data.c.change_1h,
    currency_data.c.change_24h, currency_data.c.change_7d, currency_data.c.confidence,
    currency_data.c.n_sources, currency_data.c.sources, currency_data.c.currency, currency_data.c.observed_at,
    currency_data.c.price_low, currency_data.c.price_high, currency_data.c.unverified, currency_data.c.price_at,
)
_DETAIL_COLUMNS = (
    currencies.c.slug, currencies.c.coingecko_id, currencies.c.coinmarketcap_id,
    currencies.c.first_seen_at, currencies.c.last_seen_at, currency_data.c.circulating_supply,
    currency_data.c.total_supply, currency_data.c.max_supply, currency_data.c.updated_at,
)
_TIME_FIELDS = ("observed_at", "first_seen_at", "last_seen_at", "updated_at", "last_updated", "price_at")
# The staleness a row is judged by when the caller has no settings at hand (the setting's own default).
DEFAULT_MAX_STALENESS: float = Settings.model_fields["max_staleness"].default


def freshness(price_at: datetime | None, observed_at: datetime, now: datetime,
              max_staleness: float) -> tuple[float, bool]:
    """(age in seconds, stale) of a value: from when its newest price was quoted (else from its observation)
    to ``now``; stale beyond ``max_staleness`` seconds. A time ahead of ``now`` (a skewed clock) is age 0."""
    age = max(0.0, (utc(now) - utc(price_at if price_at is not None else observed_at)).total_seconds())
    return round(age, 3), age > max_staleness


def with_age(row: dict[str, Any], now: datetime, max_staleness: float) -> dict[str, Any]:
    """``row`` (a current value, times already UTC) with its ``age_s`` and ``stale``."""
    row["age_s"], row["stale"] = freshness(row.get("price_at"), row["observed_at"], now, max_staleness)
    row["unverified"] = bool(row.get("unverified"))
    return row


def _clean(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in _TIME_FIELDS:
        if name in out:
            out[name] = utc(out[name])
    if "sources" in out and isinstance(out["sources"], str):
        out["sources"] = [s for s in out["sources"].split(",") if s]
    return out


def _from_current() -> sa.Select[Any]:
    return sa.select(*_COIN_COLUMNS).select_from(
        currency_data.join(currencies, currencies.c.id == currency_data.c.currency_id))


def ping(engine: sa.Engine) -> None:
    """Raise ``sqlalchemy.exc.DBAPIError`` when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1")).scalar_one()


def list_coins(engine: sa.Engine, *, sort: SortKey = "market_cap", order: Order = "desc", limit: int = 100,
               offset: int = 0, max_staleness: float = DEFAULT_MAX_STALENESS,
               now: datetime | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(total current coins, one page of current rows with their age at ``now``, default the time of the
    read). NULLs sort last in both orders; ties by id. A stale coin is listed like any other."""
    column = SORT_COLUMNS[sort]
    ordered = column.asc() if order == "asc" else column.desc()
    query = (_from_current()
             .order_by(sa.case((column.is_(None), 1), else_=0), ordered, currencies.c.id)
             .limit(limit).offset(offset))
    with engine.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(currency_data)).scalar_one())
        rows = conn.execute(query).mappings().all()
    at = now or datetime.now(UTC)
    return total, [with_age(_clean(r), at, max_staleness) for r in rows]


def latest_observed_at(engine: sa.Engine) -> datetime | None:
    """The newest current observation, the stream's change marker."""
    with engine.connect() as conn:
        value: datetime | None = conn.execute(sa.select(sa.func.max(currency_data.c.observed_at))).scalar_one()
    return utc(value)


def get_coin(engine: sa.Engine, coin_id: str, *, max_staleness: float = DEFAULT_MAX_STALENESS,
             now: datetime | None = None) -> dict[str, Any] | None:
    """The coin's current row with its identifiers, supplies and age at ``now``; None when unknown."""
    query = _from_current().add_columns(*_DETAIL_COLUMNS).where(currencies.c.id == coin_id)
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return None if row is None else with_age(_clean(row), now or datetime.now(UTC), max_staleness)


def coin_exists(engine: sa.Engine, coin_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.select(currencies.c.id).where(currencies.c.id == coin_id)).first() is not None


def latest_source_quotes(engine: sa.Engine, coin_id: str) -> list[dict[str, Any]]:
    """Each source's newest value for the coin (used or dropped, with the reason)."""
    latest = (sa.select(source_quotes.c.source, sa.func.max(source_quotes.c.observed_at).label("at"))
              .where(source_quotes.c.currency_id == coin_id)
              .group_by(source_quotes.c.source).subquery())
    query = (sa.select(source_quotes.c.source, source_quotes.c.source_id, source_quotes.c.price,
                       source_quotes.c.market_cap, source_quotes.c.volume_24h, source_quotes.c.last_updated,
                       source_quotes.c.observed_at, source_quotes.c.used, source_quotes.c.dropped_reason)
             .join(latest, sa.and_(latest.c.source == source_quotes.c.source,
                                   latest.c.at == source_quotes.c.observed_at))
             .where(source_quotes.c.currency_id == coin_id)
             .order_by(source_quotes.c.source))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [{**_clean(r), "used": bool(r["used"])} for r in rows]


# --- history -----------------------------------------------------------------------------------------


# observed_at, price, cap, volume, confidence, price_low, price_high, unverified, price_at
PointRow = tuple[datetime, float, float | None, float | None, float, float | None, float | None, bool, datetime | None]


def history_points(engine: sa.Engine, coin_id: str, start: datetime, end: datetime, limit: int) -> list[PointRow]:
    """Consensus points in [start, end], oldest first: (observed_at, price, market_cap, volume_24h, confidence,
    price_low, price_high, unverified, price_at).

    At most ``limit`` rows (the caller asks for one more than it accepts to detect an overflow).
    """
    start, end = utc(start), utc(end)
    h = currency_data_history.c
    query = (sa.select(h.observed_at, h.price, h.market_cap, h.volume_24h, h.confidence, h.price_low, h.price_high,
                       h.unverified, h.price_at)
             .where(h.currency_id == coin_id, h.observed_at >= start, h.observed_at <= end)
             .order_by(h.observed_at).limit(limit))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out: list[PointRow] = []
    for at, price, cap, volume, confidence, low, high, unverified, price_at in rows:
        stamp = utc(at)
        assert stamp is not None
        out.append((stamp, float(price), _float(cap), _float(volume), float(confidence), _float(low), _float(high),
                    bool(unverified), utc(price_at)))
    return out


def current_freshness(engine: sa.Engine, coin_id: str, now: datetime, max_staleness: float) -> tuple[
        float, bool] | None:
    """(age_s, stale) of the coin's current value at ``now``; None when it has none."""
    c = currency_data.c
    with engine.connect() as conn:
        row = conn.execute(sa.select(c.price_at, c.observed_at).where(c.currency_id == coin_id)).first()
    return None if row is None else freshness(utc(row[0]), utc(row[1]) or now, now, max_staleness)


@dataclass(frozen=True, slots=True)
class Candle:
    time: datetime  # start of the bucket (UTC, aligned on the Unix epoch)
    open: float
    high: float
    low: float
    close: float
    volume: float | None  # the last volume_24h of the bucket
    n: int  # history rows in the bucket
    n_backfill: int = 0  # backfilled points in the bucket
    confidence_min: float | None = None
    open_at: datetime | None = None  # time of the first observation
    close_at: datetime | None = None  # time of the last observation
    sources: str = ""  # comma list of the sources used (candle tiers)
    source_close: Mapping[str, float] | None = None  # each source's own price at the last observation
    price_low: float | None = None  # the lowest low end of the observations' intervals
    price_high: float | None = None  # the highest high end
    unverified_n: int = 0  # observations whose value was unverified


def _epoch_seconds(engine: sa.Engine, column: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
    """Whole Unix seconds of a stored UTC timestamp, per dialect."""
    if engine.dialect.name == "sqlite":
        # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); drop the fraction so it is never rounded up.
        return sa.cast(sa.func.strftime("%s", sa.func.substr(column, 1, 19)), sa.BigInteger)
    return sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _all(engine: sa.Engine, query: sa.Select[Any], limit: int | None) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query if limit is None else query.limit(limit))]


def _first_and_last(table: sa.Table, agg: sa.Subquery, coin_id: str, time: str, first_key: str,
                    last_key: str) -> tuple[sa.FromClause, sa.FromClause, sa.Join]:
    """``agg`` (one row per bucket) joined to the coin's rows of ``table`` at its first and last times."""
    first, last = table.alias(f"first_{table.name}"), table.alias(f"last_{table.name}")
    joined = (agg.join(first, sa.and_(first.c.currency_id == coin_id, first.c[time] == agg.c[first_key]))
              .join(last, sa.and_(last.c.currency_id == coin_id, last.c[time] == agg.c[last_key])))
    return first, last, joined


def history_candles(engine: sa.Engine, coin_id: str, start: datetime, end: datetime,
                    step: int, limit: int | None = None) -> list[Candle]:
    """OHLC candles of ``step`` seconds in [start, end] aggregated from the raw history rows, oldest first,
    in SQL (SQLite and PostgreSQL).

    open = the first price of the bucket by time, close = the last, high/low = max/min, volume = the last
    volume_24h, n = points in the bucket. Buckets without points are absent. At most ``limit`` candles.
    """
    start, end = utc(start), utc(end)
    h = currency_data_history
    bucket = (_epoch_seconds(engine, h.c.observed_at) // step).label("bucket")
    agg = (sa.select(bucket, sa.func.min(h.c.observed_at).label("first_at"),
                     sa.func.max(h.c.observed_at).label("last_at"), sa.func.max(h.c.price).label("high"),
                     sa.func.min(h.c.price).label("low"), sa.func.count().label("n"),
                     sa.func.min(h.c.confidence).label("confidence_min"),
                     sa.func.min(h.c.price_low).label("price_low"), sa.func.max(h.c.price_high).label("price_high"),
                     sa.func.sum(sa.case((h.c.unverified, 1), else_=0)).label("unverified_n"))
           .where(h.c.currency_id == coin_id, h.c.observed_at >= start, h.c.observed_at <= end)
           .group_by(bucket).subquery("agg"))
    first, last, joined = _first_and_last(h, agg, coin_id, "observed_at", "first_at", "last_at")
    query = (sa.select(agg.c.bucket, first.c.price.label("open"), agg.c.high, agg.c.low,
                       last.c.price.label("close"), last.c.volume_24h.label("volume"), agg.c.n,
                       agg.c.confidence_min, agg.c.first_at, agg.c.last_at, agg.c.price_low, agg.c.price_high,
                       agg.c.unverified_n)
             .select_from(joined).order_by(agg.c.bucket))
    return [Candle(time=datetime.fromtimestamp(int(b) * step, tz=UTC), open=float(o), high=float(hi),
                   low=float(lo), close=float(c), volume=_float(v), n=int(n), confidence_min=_float(conf),
                   open_at=utc(first_at), close_at=utc(last_at), price_low=_float(band_lo),
                   price_high=_float(band_hi), unverified_n=int(unverified or 0))
            for b, o, hi, lo, c, v, n, conf, first_at, last_at, band_lo, band_hi, unverified
            in _all(engine, query, limit)]


def tier_candles(engine: sa.Engine, coin_id: str, start: datetime, end: datetime, tier: Tier,
                 step: int, limit: int | None = None) -> list[Candle]:
    """The stored candles of ``tier`` overlapping [start, end], oldest first; with ``step`` a multiple of the
    tier's bucket, merged in SQL into ``step``-second candles: open/close of the first/last candle by time,
    high/low = max/min, n and n_backfill summed, the lowest confidence, the band (lowest price_low, highest
    price_high), unverified_n summed, and the volume, sources and per-source closes of the last candle."""
    if step % tier.seconds:
        raise ValueError(f"a {step}s step is not a multiple of the {tier.name} tier")
    start, end = utc(start), utc(end)
    t = tier.table
    where = (t.c.currency_id == coin_id, t.c.bucket > start - timedelta(seconds=tier.seconds), t.c.bucket <= end)
    if step == tier.seconds:
        query = (sa.select(t.c.bucket, t.c.open, t.c.high, t.c.low, t.c.close, t.c.volume_24h, t.c.n,
                           t.c.n_backfill, t.c.confidence_min, t.c.open_at, t.c.close_at, t.c.sources,
                           t.c.source_close, t.c.price_low, t.c.price_high, t.c.unverified_n)
                 .where(*where).order_by(t.c.bucket))
    else:
        key = (_epoch_seconds(engine, t.c.bucket) // step).label("k")
        agg = (sa.select(key, sa.func.min(t.c.bucket).label("first_bucket"),
                         sa.func.max(t.c.bucket).label("last_bucket"), sa.func.max(t.c.high).label("high"),
                         sa.func.min(t.c.low).label("low"), sa.func.sum(t.c.n).label("n"),
                         sa.func.sum(t.c.n_backfill).label("n_backfill"),
                         sa.func.min(t.c.confidence_min).label("confidence_min"),
                         sa.func.min(t.c.open_at).label("open_at"), sa.func.max(t.c.close_at).label("close_at"),
                         sa.func.min(t.c.price_low).label("price_low"), sa.func.max(t.c.price_high).label("price_high"),
                         sa.func.sum(t.c.unverified_n).label("unverified_n"))
               .where(*where).group_by(key).subquery("agg"))
        first, last, joined = _first_and_last(t, agg, coin_id, "bucket", "first_bucket", "last_bucket")
        query = (sa.select((agg.c.k * step).label("bucket"), first.c.open, agg.c.high, agg.c.low, last.c.close,
                           last.c.volume_24h, agg.c.n, agg.c.n_backfill, agg.c.confidence_min, agg.c.open_at,
                           agg.c.close_at, last.c.sources, last.c.source_close, agg.c.price_low, agg.c.price_high,
                           agg.c.unverified_n)
                 .select_from(joined).order_by(agg.c.k))
    out = []
    for (b, o, hi, lo, c, v, n, backfill, conf, open_at, close_at, used, closes, band_lo, band_hi,
         unverified) in _all(engine, query, limit):
        time = datetime.fromtimestamp(int(b), tz=UTC) if isinstance(b, int | float) else utc(b)
        out.append(Candle(time=time, open=float(o), high=float(hi), low=float(lo), close=float(c), volume=_float(v),
                          n=int(n), n_backfill=int(backfill or 0), confidence_min=_float(conf),
                          open_at=utc(open_at), close_at=utc(close_at), sources=used or "",
                          source_close=closes if isinstance(closes, dict) else None, price_low=_float(band_lo),
                          price_high=_float(band_hi), unverified_n=int(unverified or 0)))
    return out


def source_lines(engine: sa.Engine, coin_id: str, start: datetime, end: datetime, limit: int,
                 step: int | None = None) -> dict[str, list[tuple[datetime, float, bool]]]:
    """Each source's own price in [start, end]: source -> [(observed_at, price, used), ...] oldest first.

    With ``step``: downsampled in SQL to each source's last quote per ``step``-second bucket.
    """
    start, end = utc(start), utc(end)
    q = source_quotes.c
    in_range = (q.currency_id == coin_id, q.observed_at >= start, q.observed_at <= end)
    if step is None:
        query = (sa.select(q.source, q.observed_at, q.price, q.used)
                 .where(*in_range).order_by(q.source, q.observed_at).limit(limit))
    else:
        bucket = _epoch_seconds(engine, q.observed_at) // step
        last = (sa.select(q.source.label("source"), sa.func.max(q.observed_at).label("at"))
                .where(*in_range).group_by(q.source, bucket).subquery("last"))
        query = (sa.select(q.source, q.observed_at, q.price, q.used)
                 .join(last, sa.and_(q.currency_id == coin_id, q.source == last.c.source, q.observed_at == last.c.at))
                 .order_by(q.source, q.observed_at).limit(limit))
    lines: dict[str, list[tuple[datetime, float, bool]]] = {}
    with engine.connect() as conn:
        for source, at, price, used in conn.execute(query):
            stamp = utc(at)
            assert stamp is not None
            lines.setdefault(str(source), []).append((stamp, float(price), bool(used)))
    return lines


def count_history(engine: sa.Engine, coin_id: str, start: datetime, end: datetime, limit: int) -> int:
    """Raw history rows of the coin in [start, end], counted up to ``limit`` (an index range, never more)."""
    h = currency_data_history.c
    rows = (sa.select(h.observed_at)
            .where(h.currency_id == coin_id, h.observed_at >= utc(start), h.observed_at <= utc(end))
            .limit(limit).subquery())
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar_one())


# --- what each tier holds ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coverage:
    """Where a coin's data starts: in any tier, in the raw rows, in the 5-minute candles."""

    first: datetime | None  # its first observation (the open of its first 1-day candle)
    raw_from: datetime | None  # its oldest raw history row
    five_from: datetime | None  # its oldest 5-minute candle


def coverage(engine: sa.Engine, coin_id: str) -> Coverage:
    """Three primary-key lookups."""
    h, five, day = currency_data_history.c, candles_5m.c, candles_1d.c
    with engine.connect() as conn:
        raw_from = conn.execute(sa.select(sa.func.min(h.observed_at)).where(h.currency_id == coin_id)).scalar()
        five_from = conn.execute(sa.select(sa.func.min(five.bucket)).where(five.currency_id == coin_id)).scalar()
        first = conn.execute(sa.select(day.open_at).where(day.currency_id == coin_id)
                             .order_by(day.bucket).limit(1)).scalar()
    earliest = [utc(t) for t in (first, raw_from) if t is not None]
    return Coverage(min(earliest) if earliest else None, utc(raw_from), utc(five_from))


def has_data_before(engine: sa.Engine, coin_id: str, start: datetime, end: datetime, since: datetime | None, *,
                    or_backfilled: bool = False) -> bool:
    """Whether an hourly candle of the coin holds data in [start, end] older than ``since`` (None: any data),
    or (``or_backfilled``) backfilled points there: what a finer tier that starts at ``since`` lacks."""
    c = candles_1h.c
    start, end = utc(start), utc(end)
    query = sa.select(c.bucket).where(c.currency_id == coin_id, c.bucket > start - timedelta(hours=1),
                                      c.bucket <= end, c.close_at >= start, c.open_at <= end)
    if since is not None:
        older = c.open_at < utc(since)
        query = query.where(sa.or_(older, c.n_backfill > 0) if or_backfilled else sa.and_(older, c.bucket < since))
    with engine.connect() as conn:
        return conn.execute(query.limit(1)).first() is not None


# --- database state ------------------------------------------------------------------------------------


_COUNTED = (currencies, currency_data, currency_data_history, source_quotes, pipeline_runs, quote_rejections)
# Large, append-only tables: once big, PostgreSQL's statistics are good enough for a gauge, and cheap.
_ESTIMATED = {currency_data_history.name, source_quotes.name, quote_rejections.name}
EXACT_COUNT_BELOW = 200_000


@dataclass(frozen=True, slots=True)
class DatabaseState:
    rows: dict[str, int]
    last_observation: datetime | None
    last_run: datetime | None
    sources_up: dict[str, bool]
    dlq_messages: int | None


def database_state(engine: sa.Engine) -> DatabaseState:
    """What ``/metrics`` reports from the database: row counts, newest observation, last run, DLQ size."""
    dead_letters = metadata.tables.get("dead_letters")
    with engine.connect() as conn:
        estimates: dict[str, int] = {}
        if engine.dialect.name == "postgresql":
            stats = conn.execute(sa.text(
                "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE relname = ANY(:names)"),
                {"names": sorted(_ESTIMATED)})
            estimates = {str(name): int(n) for name, n in stats}
        rows: dict[str, int] = {}
        for table in _COUNTED:
            if estimates.get(table.name, 0) >= EXACT_COUNT_BELOW:
                rows[table.name] = estimates[table.name]
            else:
                rows[table.name] = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
        dlq: int | None = None
        if dead_letters is not None and sa.inspect(conn).has_table(dead_letters.name):
            dlq = int(conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one())
            rows[dead_letters.name] = dlq
        last_observation = utc(conn.execute(sa.select(sa.func.max(currency_data.c.observed_at))).scalar_one())
        run = conn.execute(sa.select(pipeline_runs.c.started_at, pipeline_runs.c.finished_at,
                                     pipeline_runs.c.sources)
                           .order_by(pipeline_runs.c.id.desc()).limit(1)).first()
    sources_up: dict[str, bool] = {}
    last_run = None
    if run is not None:
        last_run = utc(run.finished_at or run.started_at)
        sources_up = {str(name): not (rep or {}).get("error") for name, rep in (run.sources or {}).items()}
    return DatabaseState(rows, last_observation, last_run, sources_up, dlq)
