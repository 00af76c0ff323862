"""History read side and storage: a year of tiered history against the previous design's raw rows.

Two fresh databases, one after the other:

* **tiers** (the latest schema): a synthetic year for 250 coins as the running system leaves it: raw
  history and source quotes only for the raw-retention window (30 days, daily partitions) at write-on-change
  density (the top tenth of the coins every minute; the others when their price moves, every few minutes,
  and at least on the 10-minute heartbeat; 3 sources per snapshot for the top 40 %, 2 for the others, an
  occasional outlier left out), 5-minute candles for the year, hourly
  and daily candles for the year, the coins and their current values. Inside the raw window the candles are
  aggregated from the raw rows written (the writer's rules: open/close of the first/last row, high/low, the
  last row's market cap, volume and per-source prices, the lowest confidence, the union of the sources);
  before it, 5-minute candles are drawn directly (the same per-coin price walk and recording pattern), and
  every hourly and daily candle is the merge of the candles below it.
* **baseline** (migration 0004, the design before the tiers): one raw row a minute, bitcoin for 365 days
  and the other coins for 7 days, in plain (unpartitioned) history and source-quote tables with their old
  keys and indexes; read with the previous API's SQL and the previous dashboards' panel SQL, kept below.

Every table is loaded with binary ``COPY ... FREEZE`` (rows built as COPY bytes), its keys and indexes
dropped before and created again after (the same definitions), then ``VACUUM (ANALYZE)``: the state
autovacuum would leave, without the hours of a real year.

Then, each as the median and p95 of repeated calls (20, or as many as 2 s allow but at least 5; for the
baseline, whose calls take up to seconds, as many as 1 s allows but at least 2), after one untimed call
(a first call slower than 0.3 s counts instead: the load and its vacuum read those rows moments before);
the data is in memory, as on a server that serves it all day:

* the dashboard's history calls for 1 d, 7 d, 30 d and 1 y (bitcoin, the coin with the most rows), with the
  parameters ``api/static/app.js`` sends, through the real FastAPI app (``create_app``, starlette
  ``TestClient``); beside them, the same requests answered by the previous API's route and SQL (the
  previous dashboard's two calls: raw points and source lines, then candles of the step ours answers with);
* the top-100 table (``/api/coins?sort=market_cap&order=desc&limit=100``), the same route on both;
* every Grafana panel that reads price history, over 1 d, 7 d, 30 d and 1 y ending now, its SQL expanded as
  Grafana does (``benchmarks/grafana.py``: variables, macros, ``$__interval`` from the range and the panel's
  width or ``maxDataPoints``), run as ``cryptoviz_reader`` when that role exists (else the owner); the panel's
  targets run one after the other, a panel's time is their sum. The previous panels over 1 y: only those of
  one coin (bitcoin's year; the other coins have 7 days of rows, so a year of them reads what 7 days read).

Storage: every table, partition, index and TOAST table (``pg_total_relation_size``) after the load, over
coins x minutes in the year (bytes per coin-minute); the baseline's over the coin-minutes it stores.
Growth: for each call and panel measured at both, p95 over 1 year / p95 over 7 days; the worst one.
"""

from __future__ import annotations

import math
import random
import re
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg

from benchmarks.common import Services, fresh_database, percentile, plain_pg_url, progress, setting
from benchmarks.grafana import TimeRange, grafana_sql, load_dashboards, panel_interval, panels, variable_defaults
from cryptoviz.store.candles import union_sources

SOURCES = ("coingecko", "coinmarketcap", "coinpaprika")
HEARTBEAT_MINUTES = 10  # CRYPTOVIZ_HISTORY_HEARTBEAT: a quiet coin is recorded at least this often
COIN = "bitcoin"  # the coin of the dashboards' history calls and of the coin panels
READER = "cryptoviz_reader"
DAY = 86_400
YEAR_DAYS = 365
RANGES = {"1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "1y": YEAR_DAYS * DAY}
GRAFANA_RANGES = ("1d", "7d", "30d", "1y")
TARGETS = {"api_p95_ms": 50.0, "grafana_p95_ms": 250.0, "bytes_per_coin_minute": 150.0, "growth_ratio": 2.0}
HISTORY_TABLES = re.compile(r"\b(currency_data_history|source_quotes|candles_(?:5m|1h|1d))\b")


@dataclass(frozen=True, slots=True)
class Sizes:
    coins: int = 250
    raw_days: int = 30  # raw rows kept (CRYPTOVIZ_RETENTION_RAW)
    days: int = YEAR_DAYS  # candles; also the baseline's long coin (bitcoin)
    baseline_days: int = 7  # the baseline's other coins
    reps: int = 20  # timed calls per measurement at most...
    budget: float = 2.0  # ...and no more once this many seconds went into them...
    min_reps: int = 5  # ...but at least this many
    baseline_budget: float = 1.0  # the same for the baseline's calls (some take seconds)
    baseline_min_reps: int = 2


# --- The coins ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Coin:
    index: int
    id: str
    symbol: str
    name: str
    rank: int
    price: float
    supply: float
    volume_ratio: float
    sources: tuple[str, ...]
    change_p: float  # chance that a minute moves one of its values: a history row (write on change)
    vol_minute: float  # relative price volatility per minute


def universe(n: int, rng: random.Random) -> list[Coin]:
    """``n`` coins by market cap: bitcoin, ethereum, then a long tail (caps falling as rank^-1.4)."""
    coins = []
    every_minute = max(1, n // 10)
    for i in range(n):
        rank = i + 1
        cap = 1.3e12 * rank ** -1.4
        if i == 0:
            cid, symbol, name, price = "bitcoin", "BTC", "Bitcoin", 90_000.0
        elif i == 1:
            cid, symbol, name, price = "ethereum", "ETH", "Ethereum", 3_200.0
        else:
            cid, symbol, name, price = f"coin-{rank:03d}", f"C{rank:03d}", f"Coin {rank}", 10 ** rng.uniform(-3, 3)
        sources = SOURCES if rank <= max(2, n * 2 // 5) else SOURCES[:2]
        change_p = 1.0 if rank <= every_minute else (0.35 if rank <= max(2, n * 2 // 5) else 0.2)
        coins.append(Coin(i, cid, symbol, name, rank, price, cap / price, rng.uniform(0.02, 0.2), sources, change_p,
                          rng.uniform(0.0004, 0.0012)))
    return coins


# --- Binary COPY ----------------------------------------------------------------------------------------

PG_EPOCH = 946_684_800  # 2000-01-01 in Unix seconds: binary timestamps count microseconds from there
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
_I4 = struct.Struct(">i")
_TS = struct.Struct(">iq")
# candles_*: bucket, open, high, low, close, open_at, close_at, market_cap, volume_24h, n, n_backfill,
# confidence_min (between currency_id and sources, source_close)
_CANDLE = struct.Struct(">iq" + "id" * 4 + "iq" * 2 + "id" * 2 + "ii" * 2 + "id")
# currency_data_history: observed_at, rank, price, market_cap, volume_24h, change_1h/24h/7d, confidence,
# n_sources (between currency_id and sources, currency)
_HISTORY = struct.Struct(">iq" + "ii" + "id" * 7 + "ih")
# source_quotes: price, market_cap, volume_24h, last_updated, used (after currency_id, source, observed_at,
# source_id; before dropped_reason)
_QUOTE = struct.Struct(">" + "id" * 3 + "iq" + "ib")
_CANDLE_COLUMNS = ("currency_id, bucket, open, high, low, close, open_at, close_at, market_cap, volume_24h, n, "
                   "n_backfill, confidence_min, sources, source_close")
_HISTORY_COLUMNS = ("currency_id, observed_at, rank, price, market_cap, volume_24h, change_1h, change_24h, "
                    "change_7d, confidence, n_sources, sources, currency")
_QUOTE_COLUMNS = ("currency_id, source, observed_at, source_id, price, market_cap, volume_24h, last_updated, used, "
                  "dropped_reason")


def _text(value: str) -> bytes:
    data = value.encode()
    return _I4.pack(len(data)) + data


def _us(epoch_seconds: float) -> int:
    return int(round((epoch_seconds - PG_EPOCH) * 1_000_000))


class Stream:
    """One binary ``COPY ... FROM STDIN (FORMAT BINARY, FREEZE)`` at a time on a connection of its own, into a
    table truncated in the same transaction (so the rows go in frozen and all-visible, as after vacuums).
    Rows are appended to :attr:`buf` as COPY bytes; :meth:`flush` sends them."""

    LIMIT = 1 << 22

    def __init__(self, url: str, columns: str) -> None:
        self.conn = psycopg.connect(plain_pg_url(url))
        self.columns = columns
        self.buf = bytearray()
        self.rows = 0
        self._copy: Any = None
        self._context: Any = None

    def start(self, table: str) -> None:
        if self._context is not None:
            self.finish()
        self.conn.execute(f"TRUNCATE {table}")
        self._context = self.conn.cursor().copy(
            f"COPY {table} ({self.columns}) FROM STDIN (FORMAT BINARY, FREEZE)")
        self._copy = self._context.__enter__()
        self.buf += SIGNATURE

    def flush(self, force: bool = False) -> None:
        if self.buf and (force or len(self.buf) >= self.LIMIT):
            self._copy.write(bytes(self.buf))
            self.buf.clear()

    def finish(self) -> None:
        if self._context is None:
            return
        self.buf += TRAILER
        self.flush(force=True)
        self._context.__exit__(None, None, None)
        self._context = self._copy = None

    def close(self) -> None:
        self.finish()
        self.conn.commit()
        self.conn.close()


@contextmanager
def streams(url: str, columns: dict[str, str]) -> Iterator[dict[str, Stream]]:
    """One :class:`Stream` per name, committed and closed on the way out."""
    opened = {name: Stream(url, cols) for name, cols in columns.items()}
    try:
        yield opened
        for s in opened.values():
            s.close()
    finally:
        for s in opened.values():
            if not s.conn.closed:
                s.conn.close()


@dataclass(frozen=True, slots=True)
class Keys:
    """A table's primary key, foreign keys and other indexes, as DDL to create them again."""

    table: str
    drop: tuple[str, ...]
    create: tuple[str, ...]


def keys_of(conn: psycopg.Connection[Any], table: str) -> Keys:
    constraints = conn.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype IN ('p', 'u', 'f') ORDER BY contype DESC, conname", (table,)).fetchall()
    indexes = conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = "
        "i.indexrelid AND k.conrelid = i.indrelid) ORDER BY c.relname", (table,)).fetchall()
    drop = [f"ALTER TABLE {table} DROP CONSTRAINT {name}" for name, kind, _ in constraints if kind == "f"]
    drop += [f"ALTER TABLE {table} DROP CONSTRAINT {name}" for name, kind, _ in constraints if kind != "f"]
    drop += [f"DROP INDEX {name}" for name, _ in indexes]
    # "ON ONLY" (an index of a partitioned table as pg_get_indexdef shows it) would skip the partitions.
    create = [f"ALTER TABLE {table} ADD CONSTRAINT {name} {ddl}" for name, kind, ddl in constraints if kind != "f"]
    create += [ddl.replace(" ON ONLY ", " ON ") for _, ddl in indexes]
    create += [f"ALTER TABLE {table} ADD CONSTRAINT {name} {ddl}" for name, kind, ddl in constraints if kind == "f"]
    return Keys(table, tuple(drop), tuple(create))


@contextmanager
def without_keys(url: str, tables: Sequence[str]) -> Iterator[None]:
    """Drop the keys and indexes of ``tables`` for a bulk load, then build them again (as they were)."""
    with psycopg.connect(plain_pg_url(url), autocommit=True) as conn:
        saved = [keys_of(conn, t) for t in tables]
        for keys in saved:
            for statement in keys.drop:
                conn.execute(statement)
    yield
    with psycopg.connect(plain_pg_url(url), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        for keys in saved:
            for statement in keys.create:
                conn.execute(statement)


# --- The market: one price walk per coin, its history rows, source quotes and candles ---------------------


Candle = tuple[Any, ...]  # (bucket_us, open, high, low, close, open_at_us, close_at_us, market_cap, volume_24h,
#                            n, confidence_min, sources, source_close jsonb bytes)


class Market:
    """Per-coin state and the COPY bytes of each row kind."""

    def __init__(self, coins: list[Coin], rng: random.Random) -> None:
        self.coins = coins
        self.rnd = rng.random
        self.price = [c.price for c in coins]
        self.last_minute = [0.0] * len(coins)
        self.candle_head = [struct.pack(">h", 15) + _text(c.id) for c in coins]
        self.history_head = [struct.pack(">h", 13) + _text(c.id) for c in coins]
        self.quote_head = [struct.pack(">h", 10) + _text(c.id) for c in coins]
        self.source_name = {s: _text(s) for s in SOURCES}
        self.source_id = [[_text(self._source_id(c, s)) for s in c.sources] for c in coins]
        self.json = [b"\x01{" + b", ".join(b'"%s": %%.8g' % s.encode() for s in c.sources) + b"}" for c in coins]
        self.sources = [",".join(c.sources) for c in coins]
        self.all_sources = [_text(text) for text in self.sources]
        self.text: dict[str, bytes] = {}
        self.usd = _text("usd")
        self.outlier = _text("outlier")
        self.rows: dict[str, int] = defaultdict(int)

    @staticmethod
    def _source_id(coin: Coin, source: str) -> str:
        if source == "coinmarketcap":
            return str(1000 + coin.index)
        if source == "coinpaprika":
            return f"{coin.symbol.lower()}-{coin.id}"
        return coin.id

    def text_of(self, value: str) -> bytes:
        found = self.text.get(value)
        if found is None:
            found = self.text[value] = _text(value)
        return found

    def candle_row(self, i: int, c: Candle) -> bytes:
        js = c[12]
        fixed = _CANDLE.pack(8, c[0], 8, c[1], 8, c[2], 8, c[3], 8, c[4], 8, c[5], 8, c[6], 8, c[7], 8, c[8], 4, c[9],
                             4, 0, 8, c[10])
        return b"".join((self.candle_head[i], fixed, self.text_of(c[11]), _I4.pack(len(js)), js))

    def record(self, i: int, t: float, history: bytearray, quotes: bytearray) -> Candle:
        """A recorded snapshot of coin ``i`` at ``t`` (Unix seconds): its history row and source quotes go to
        ``history`` and ``quotes``; returns it as a one-row candle (bucket left 0)."""
        rnd, coin = self.rnd, self.coins[i]
        gap = max(1.0, (t - self.last_minute[i]) / 60) if self.last_minute[i] else 1.0
        self.last_minute[i] = t
        p = self.price[i] * (1.0 + coin.vol_minute * math.sqrt(gap) * (rnd() + rnd() + rnd() - 1.5) * 2)
        self.price[i] = p
        at = _us(t)
        cap = p * coin.supply
        volume = cap * coin.volume_ratio * (0.9 + 0.2 * rnd())
        own = [float(b"%.8g" % (p * (1.0 + 0.002 * (rnd() - 0.5)))) for _ in coin.sources]
        n_used = len(own)
        dropped = n_used > 2 and rnd() < 0.005
        if dropped:  # the last source is off: an outlier the consensus left out
            own[-1] = float(b"%.8g" % (own[-1] * 1.05))
            n_used -= 1
        used_sources = ",".join(coin.sources[:n_used])
        confidence = (0.6 if dropped else 0.9) + 0.1 * rnd()
        history += self.history_head[i]
        history += _HISTORY.pack(8, at, 4, coin.rank, 8, p, 8, cap, 8, volume, 8, (rnd() - 0.5) * 2,
                                 8, (rnd() - 0.5) * 8, 8, (rnd() - 0.5) * 20, 8, confidence, 2, n_used)
        history += self.text_of(used_sources)
        history += self.usd
        head, ids, name = self.quote_head[i], self.source_id[i], self.source_name
        stamp = _TS.pack(8, at)
        for j, source in enumerate(coin.sources):
            ok = j < n_used
            quotes += head
            quotes += name[source]
            quotes += stamp
            quotes += ids[j]
            quotes += _QUOTE.pack(8, own[j], 8, cap * (1.0 + 0.001 * j), 8, volume * (1.0 + 0.05 * j),
                                  8, at - int(rnd() * 60_000_000), 1, ok)
            quotes += NULL if ok else self.outlier
        self.rows["currency_data_history"] += 1
        self.rows["source_quotes"] += len(own)
        js = self.json[i] % tuple(own)
        return (0, p, p, p, p, at, at, cap, volume, 1, confidence, used_sources, js)

    def draw_bucket(self, t5: int, patterns: list[list[tuple[int, int, int] | None]], parts: list[list[Candle]],
                    buf: bytearray) -> int:
        """The 5-minute candles of the bucket starting at ``t5`` (before the raw window: drawn without rows):
        per coin, ``n`` recorded snapshots at minutes ``first``..``last`` of the bucket drawn from its pattern
        (or none), OHLC from its price walk. Appends them to ``buf`` (COPY bytes) and ``parts`` (each coin's
        candles of the hour); returns how many."""
        rnd, price, pack, i4 = self.rnd, self.price, _CANDLE.pack, _I4.pack
        at = _us(t5)
        made = 0
        for i, coin in enumerate(self.coins):
            pattern = patterns[i]
            drawn = pattern[int(rnd() * len(pattern))]
            if drawn is None:
                continue
            n, first, last = drawn
            step = coin.vol_minute * 2.2
            o = price[i]
            c = o * (1.0 + step * (rnd() + rnd() + rnd() - 1.5) * 2)
            price[i] = c
            if n == 1:
                o = high = low = c
            else:
                high = (o if o > c else c) * (1.0 + step * 0.3 * rnd())
                low = (o if o < c else c) * (1.0 - step * 0.3 * rnd())
            cap = c * coin.supply
            volume = cap * coin.volume_ratio * (0.9 + 0.2 * rnd())
            confidence = 0.9 + 0.1 * rnd()
            if len(coin.sources) == 3:
                js = self.json[i] % (c * (0.999 + 0.002 * rnd()), c * (0.999 + 0.002 * rnd()),
                                     c * (0.999 + 0.002 * rnd()))
            else:
                js = self.json[i] % (c * (0.999 + 0.002 * rnd()), c * (0.999 + 0.002 * rnd()))
            opened, closed = at + first * 60_000_000, at + last * 60_000_000
            buf += self.candle_head[i]
            buf += pack(8, at, 8, o, 8, high, 8, low, 8, c, 8, opened, 8, closed, 8, cap, 8, volume, 4, n, 4, 0,
                        8, confidence)
            buf += self.all_sources[i]
            buf += i4(len(js))
            buf += js
            parts[i].append((at, o, high, low, c, opened, closed, cap, volume, n, confidence, self.sources[i], js))
            made += 1
        return made


def merged(bucket_us: int, parts: list[Candle]) -> Candle:
    """One candle of consecutive candles (or one-row candles) of one coin, in time order: the writer's rules."""
    first, last = parts[0], parts[-1]
    if len(parts) == 1:
        return (bucket_us, *first[1:])
    columns = tuple(zip(*parts, strict=True))
    sources = first[11]
    if columns[11].count(sources) != len(parts):
        sources = union_sources(*columns[11])
    return (bucket_us, first[1], max(columns[2]), min(columns[3]), last[4], first[5], last[6], last[7], last[8],
            sum(columns[9]), min(columns[10]), sources, last[12])


def recording_pattern(coin: Coin, rng: random.Random, buckets: int = 2_000) -> list[tuple[int, int, int] | None]:
    """(rows, first minute, last minute) of each 5-minute bucket over ``buckets`` buckets of the coin's write
    on change (a change a minute with probability ``change_p``, a row at least every heartbeat); None: no row."""
    out: list[tuple[int, int, int] | None] = []
    since = 0
    for _ in range(buckets):
        minutes = []
        for m in range(5):
            since += 1
            if since >= HEARTBEAT_MINUTES or rng.random() < coin.change_p:
                minutes.append(m)
                since = 0
        out.append((len(minutes), minutes[0], minutes[-1]) if minutes else None)
    return out


def _day(t: float) -> date:
    return datetime.fromtimestamp(t, UTC).date()


def load_tiers(url: str, coins: list[Coin], end: int, sizes: Sizes, rng: random.Random) -> dict[str, int]:
    """The tiered database of a year ending at ``end`` (Unix seconds, a multiple of 300); returns rows per
    table."""

    from cryptoviz.store import partitions
    from cryptoviz.store.engine import make_engine

    start, raw_start = end - sizes.days * DAY, end - sizes.raw_days * DAY
    raw_days = sorted({_day(t) for t in range(raw_start, end, 3600)} | {_day(end - 1)})
    engine = make_engine(url)
    with engine.begin() as conn:
        partitions.ensure_days(conn, raw_days + partitions.ahead(datetime.fromtimestamp(end, UTC)))
    engine.dispose()
    _load_coins(url, coins, start, end)
    market = Market(coins, rng)
    tables = ["candles_5m", "candles_1h", "candles_1d", "currency_data_history", "source_quotes"]
    with without_keys(url, tables), streams(url, {
            "candles_5m": _CANDLE_COLUMNS, "candles_1h": _CANDLE_COLUMNS, "candles_1d": _CANDLE_COLUMNS,
            "history": _HISTORY_COLUMNS, "quotes": _QUOTE_COLUMNS}) as out:
        for name in ("candles_5m", "candles_1h", "candles_1d"):
            out[name].start(name)
        _generate_tiers(market, out, start, raw_start, end, rng)
    rows = dict(market.rows)
    rows.update({name: out[name].rows for name in ("candles_5m", "candles_1h", "candles_1d")})
    return rows


def _generate_tiers(market: Market, out: dict[str, Stream], start: int, raw_start: int, end: int,
                    rng: random.Random) -> None:
    from cryptoviz.store.partitions import partition_name

    coins, rnd = market.coins, rng.random
    n = len(coins)
    patterns = [recording_pattern(c, rng) for c in coins]
    five, hourly, daily = out["candles_5m"], out["candles_1h"], out["candles_1d"]
    history, quotes = out["history"], out["quotes"]
    hour_parts: list[list[Candle]] = [[] for _ in coins]
    day_parts: list[list[Candle]] = [[] for _ in coins]
    due: dict[int, list[int]] = defaultdict(list)
    for i, coin in enumerate(coins):  # the raw window starts with each coin's row within a heartbeat
        due[raw_start // 60 + (0 if coin.change_p >= 1 else rng.randrange(HEARTBEAT_MINUTES))].append(i)

    def emit(stream: Stream, i: int, candle: Candle) -> None:
        stream.buf += market.candle_row(i, candle)
        stream.rows += 1

    def close_hour(t: int) -> None:
        bucket = _us(t - t % 3600)
        for i in range(n):
            if hour_parts[i]:
                candle = merged(bucket, hour_parts[i])
                emit(hourly, i, candle)
                day_parts[i].append(candle)
                hour_parts[i] = []
        hourly.flush()

    def close_day(t: int) -> None:
        bucket = _us(t - t % DAY)
        for i in range(n):
            if day_parts[i]:
                emit(daily, i, merged(bucket, day_parts[i]))
                day_parts[i] = []
        daily.flush()

    last_progress = time.monotonic()
    for t5 in range(start, end, 300):
        bucket = _us(t5)
        if t5 < raw_start:
            five.rows += market.draw_bucket(t5, patterns, hour_parts, five.buf)
        else:
            if t5 == raw_start or t5 % DAY == 0:
                history.start(partition_name("currency_data_history", _day(t5)))
                quotes.start(partition_name("source_quotes", _day(t5)))
            bucket_rows: list[list[Candle]] = [[] for _ in coins]
            hbuf, qbuf = history.buf, quotes.buf
            for minute in range(t5 // 60, t5 // 60 + 5):
                for i in due.pop(minute, ()):
                    coin = coins[i]
                    bucket_rows[i].append(market.record(i, minute * 60, hbuf, qbuf))
                    if coin.change_p >= 1:
                        gap = 1
                    else:  # minutes to the next change (geometric), or the heartbeat
                        gap = min(HEARTBEAT_MINUTES, 1 + int(math.log(1.0 - rnd()) / math.log(1.0 - coin.change_p)))
                    due[minute + gap].append(i)
            for i in range(n):
                if bucket_rows[i]:
                    candle = merged(bucket, bucket_rows[i])
                    emit(five, i, candle)
                    hour_parts[i].append(candle)
            history.flush()
            quotes.flush()
        five.flush()
        if (t5 + 300) % 3600 == 0:
            close_hour(t5 + 299)
        if (t5 + 300) % DAY == 0:
            close_day(t5 + 299)
        if time.monotonic() - last_progress > 15:
            last_progress = time.monotonic()
            progress(f"history: generated up to {datetime.fromtimestamp(t5, UTC):%Y-%m-%d %H:%M}, "
                     f"{five.rows:,} 5-minute candles, {market.rows['currency_data_history']:,} raw rows")
    close_hour(end - 1)  # the hour and day in progress, as the writer leaves them
    close_day(end - 1)


def _load_coins(url: str, coins: list[Coin], first_seen: int, end: int) -> None:
    """``currencies`` and ``currency_data``: every coin, its current value from the last cycle."""
    from psycopg.types.json import Jsonb

    now = datetime.fromtimestamp(end - 60, UTC)
    with psycopg.connect(plain_pg_url(url)) as conn, conn.cursor() as cur:
        with cur.copy("COPY currencies (id, symbol, name, slug, coingecko_id, coinmarketcap_id, source_ids, "
                      "first_seen_at, last_seen_at) FROM STDIN") as copy:
            for c in coins:
                ids = {s: Market._source_id(c, s) for s in c.sources}
                copy.write_row((c.id, c.symbol, c.name, c.id, c.id, ids["coinmarketcap"], Jsonb(ids),
                                datetime.fromtimestamp(first_seen, UTC), now))
        with cur.copy("COPY currency_data (currency_id, rank, price, market_cap, volume_24h, change_1h, change_24h, "
                      "change_7d, circulating_supply, total_supply, max_supply, confidence, n_sources, sources, "
                      "currency, observed_at, updated_at) FROM STDIN") as copy:
            for c in coins:
                copy.write_row((c.id, c.rank, c.price, c.price * c.supply, c.price * c.supply * c.volume_ratio, 0.1,
                                -1.2, 3.4, c.supply, c.supply, None, 0.95, len(c.sources), ",".join(c.sources), "usd",
                                now, now))


def load_baseline(url: str, coins: list[Coin], end: int, sizes: Sizes, rng: random.Random) -> dict[str, int]:
    """The previous design: a raw row a minute, bitcoin for ``sizes.days`` and the others for
    ``sizes.baseline_days``; returns rows per table."""
    start, recent = end - sizes.days * DAY, end - sizes.baseline_days * DAY
    _load_coins(url, coins, start, end)
    market = Market(coins, rng)
    everyone = list(range(len(coins)))
    long_lived = [c.index for c in coins if c.id == COIN]
    last_progress = time.monotonic()
    with without_keys(url, ["currency_data_history", "source_quotes"]), streams(
            url, {"history": _HISTORY_COLUMNS, "quotes": _QUOTE_COLUMNS}) as out:
        history, quotes = out["history"], out["quotes"]
        history.start("currency_data_history")
        quotes.start("source_quotes")
        hbuf, qbuf = history.buf, quotes.buf
        for t in range(start, end, 60):
            for i in (long_lived if t < recent else everyone):
                market.record(i, t, hbuf, qbuf)
            history.flush()
            quotes.flush()
            if time.monotonic() - last_progress > 15:
                last_progress = time.monotonic()
                progress(f"history: baseline generated up to {datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M}, "
                         f"{market.rows['currency_data_history']:,} raw rows")
    return dict(market.rows)


def settle(url: str) -> None:
    """What autovacuum would have done by now: visibility map, free space map, statistics; and the
    dashboards' role may read every table."""
    with psycopg.connect(plain_pg_url(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone():
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER}")


# --- The previous design's read side (migration 0004; the API and dashboards before the tiers) -----------

# The previous API's SQL (api/queries.py before the tiers), as SQLAlchemy rendered it for PostgreSQL.
BASELINE_API_SQL = {
    "coin_exists": "SELECT currencies.id FROM currencies WHERE currencies.id = %(coin)s::VARCHAR",
    "points": """\
SELECT currency_data_history.observed_at, currency_data_history.price, currency_data_history.market_cap,
       currency_data_history.volume_24h, currency_data_history.confidence
FROM currency_data_history
WHERE currency_data_history.currency_id = %(coin)s::VARCHAR
  AND currency_data_history.observed_at >= %(start)s::TIMESTAMP WITH TIME ZONE
  AND currency_data_history.observed_at <= %(end)s::TIMESTAMP WITH TIME ZONE
ORDER BY currency_data_history.observed_at
LIMIT %(limit)s::INTEGER""",
    "candles": """\
SELECT agg.bucket, first_row.price AS open, agg.high, agg.low, last_row.price AS close,
       last_row.volume_24h AS volume, agg.n
FROM (SELECT CAST(floor(EXTRACT(epoch FROM currency_data_history.observed_at)) AS BIGINT) / %(step)s::BIGINT AS bucket,
             min(currency_data_history.observed_at) AS first_at, max(currency_data_history.observed_at) AS last_at,
             max(currency_data_history.price) AS high, min(currency_data_history.price) AS low, count(*) AS n
      FROM currency_data_history
      WHERE currency_data_history.currency_id = %(coin)s::VARCHAR
        AND currency_data_history.observed_at >= %(start)s::TIMESTAMP WITH TIME ZONE
        AND currency_data_history.observed_at <= %(end)s::TIMESTAMP WITH TIME ZONE
      GROUP BY CAST(floor(EXTRACT(epoch FROM currency_data_history.observed_at)) AS BIGINT) / %(step)s::BIGINT
     ) AS agg
JOIN currency_data_history AS first_row ON first_row.currency_id = %(coin)s::VARCHAR
     AND first_row.observed_at = agg.first_at
JOIN currency_data_history AS last_row ON last_row.currency_id = %(coin)s::VARCHAR
     AND last_row.observed_at = agg.last_at
ORDER BY agg.bucket
LIMIT %(limit)s::INTEGER""",
    "source_lines": """\
SELECT source_quotes.source, source_quotes.observed_at, source_quotes.price, source_quotes.used
FROM source_quotes
WHERE source_quotes.currency_id = %(coin)s::VARCHAR
  AND source_quotes.observed_at >= %(start)s::TIMESTAMP WITH TIME ZONE
  AND source_quotes.observed_at <= %(end)s::TIMESTAMP WITH TIME ZONE
ORDER BY source_quotes.source, source_quotes.observed_at
LIMIT %(limit)s::INTEGER""",
}
BASELINE_MAX_POINTS = 50_000  # raw points (or source points) in one answer of the previous API
BASELINE_MAX_CANDLES = 10_000


@dataclass(frozen=True, slots=True)
class BaselinePanel:
    board: str
    title: str
    width: int  # gridPos.w
    interval: str | None  # the panel's minimum interval
    targets: tuple[tuple[str, str], ...]  # (refId, rawSql)

    def as_panel(self) -> dict[str, Any]:
        return {"title": self.title, "gridPos": {"w": self.width}, "interval": self.interval,
                "targets": [{"refId": r, "rawSql": sql} for r, sql in self.targets]}


# The previous dashboards' panels that read price history (grafana/dashboards/*.json before the tiers).
BASELINE_PANELS: tuple[BaselinePanel, ...] = (
    BaselinePanel("market-overview", "Total market cap", 12, None, (
        ("A", """\
WITH last_in_bucket AS (
  SELECT $__timeGroup(observed_at, $__interval) AS bucket,
         currency_id,
         market_cap,
         row_number() OVER (PARTITION BY currency_id, $__timeGroup(observed_at, $__interval)
                            ORDER BY observed_at DESC) AS n
  FROM currency_data_history
  WHERE $__timeFilter(observed_at) AND market_cap > 0
)
    SELECT bucket AS "time", sum(market_cap) AS total_market_cap
    FROM last_in_bucket
    WHERE n = 1
    GROUP BY bucket
    ORDER BY bucket
"""),
    )),
    BaselinePanel("market-overview", "Market dominance", 12, None, (
        ("A", """\
WITH last_in_bucket AS (
  SELECT $__timeGroup(observed_at, $__interval) AS bucket,
         currency_id,
         market_cap,
         row_number() OVER (PARTITION BY currency_id, $__timeGroup(observed_at, $__interval)
                            ORDER BY observed_at DESC) AS n
  FROM currency_data_history
  WHERE $__timeFilter(observed_at) AND market_cap > 0
)
    SELECT bucket AS "time",
           100 * sum(market_cap) FILTER (WHERE currency_id = 'bitcoin') / sum(market_cap) AS "BTC",
           100 * sum(market_cap) FILTER (WHERE currency_id = 'ethereum') / sum(market_cap) AS "ETH",
           100 * sum(market_cap) FILTER (WHERE currency_id NOT IN ('bitcoin', 'ethereum'))
               / sum(market_cap) AS "Others"
    FROM last_in_bucket
    WHERE n = 1
    GROUP BY bucket
    ORDER BY bucket
"""),
    )),
    BaselinePanel("coin-detail", "Price and 24h volume", 12, None, (
        ("A", """\
SELECT $__timeGroupAlias(observed_at, $__interval),
       avg(price) AS price
FROM currency_data_history
WHERE currency_id = '$coin' AND $__timeFilter(observed_at)
GROUP BY 1
ORDER BY 1
"""),
        ("B", """\
SELECT $__timeGroupAlias(observed_at, $__interval),
       avg(volume_24h) AS volume_24h
FROM currency_data_history
WHERE currency_id = '$coin' AND $__timeFilter(observed_at) AND volume_24h IS NOT NULL
GROUP BY 1
ORDER BY 1
"""),
    )),
    BaselinePanel("coin-detail", "Price candles (OHLC)", 12, None, (
        ("A", """\
SELECT $__timeGroupAlias(observed_at, $__interval),
       (array_agg(price ORDER BY observed_at ASC))[1] AS open,
       max(price) AS high,
       min(price) AS low,
       (array_agg(price ORDER BY observed_at DESC))[1] AS close
FROM currency_data_history
WHERE currency_id = '$coin' AND $__timeFilter(observed_at)
GROUP BY 1
ORDER BY 1
"""),
    )),
    BaselinePanel("coin-detail", "Price per source and consensus", 12, None, (
        ("A", """\
SELECT $__timeGroupAlias(observed_at, $__interval),
       source AS metric,
       avg(price) AS price
FROM source_quotes
WHERE currency_id = '$coin' AND $__timeFilter(observed_at)
GROUP BY 1, 2
ORDER BY 1
"""),
        ("B", """\
SELECT $__timeGroupAlias(observed_at, $__interval),
       avg(price) AS consensus
FROM currency_data_history
WHERE currency_id = '$coin' AND $__timeFilter(observed_at)
GROUP BY 1
ORDER BY 1
"""),
    )),
    BaselinePanel("coin-detail", "Latest quote per source", 12, None, (
        ("A", """\
WITH latest AS (
  SELECT max(observed_at) AS observed_at FROM source_quotes WHERE currency_id = '$coin'
)
SELECT q.source AS source,
       q.price AS price,
       100 * (q.price - h.price) / h.price AS deviation_pct,
       q.market_cap AS market_cap,
       q.volume_24h AS volume_24h,
       q.used AS used,
       q.dropped_reason AS dropped_reason,
       q.last_updated AS last_updated,
       q.observed_at AS observed_at
FROM source_quotes q
JOIN latest l ON l.observed_at = q.observed_at
LEFT JOIN currency_data_history h ON h.currency_id = q.currency_id AND h.observed_at = q.observed_at
WHERE q.currency_id = '$coin'
ORDER BY q.source
"""),
    )),
    BaselinePanel("coin-detail", "Confidence and sources used", 24, None, (
        ("A", """\
SELECT $__timeGroupAlias(observed_at, $__interval),
       avg(confidence) AS confidence,
       avg(n_sources) AS sources_used
FROM currency_data_history
WHERE currency_id = '$coin' AND $__timeFilter(observed_at)
GROUP BY 1
ORDER BY 1
"""),
    )),
    BaselinePanel("data-quality", "Spread between sources (latest observation)", 12, None, (
        ("A", """\
WITH latest AS (
  SELECT currency_id, max(observed_at) AS observed_at
  FROM source_quotes
  WHERE $__timeFilter(observed_at)
  GROUP BY currency_id
)
SELECT c.name AS name,
       c.symbol AS symbol,
       count(*) AS sources,
       min(q.price) AS min_price,
       max(q.price) AS max_price,
       100 * (max(q.price) - min(q.price)) / max(q.price) AS spread_pct,
       string_agg(q.source || CASE WHEN q.used THEN '' ELSE ' (dropped)' END, ', '
                  ORDER BY q.source) AS quotes,
       l.observed_at AS observed_at
FROM latest l
JOIN source_quotes q ON q.currency_id = l.currency_id AND q.observed_at = l.observed_at
JOIN currencies c ON c.id = l.currency_id
GROUP BY l.currency_id, c.name, c.symbol, l.observed_at
HAVING count(*) > 1
ORDER BY spread_pct DESC
LIMIT 50
"""),
    )),
    BaselinePanel("data-quality", "Spread between sources over time", 12, None, (
        ("A", """\
WITH spreads AS (
  SELECT observed_at,
         100 * (max(price) - min(price)) / max(price) AS spread_pct
  FROM source_quotes
  WHERE $__timeFilter(observed_at)
  GROUP BY currency_id, observed_at
  HAVING count(*) > 1
)
SELECT $__timeGroupAlias(observed_at, $__interval),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY spread_pct) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY spread_pct) AS p95
FROM spreads
GROUP BY 1
ORDER BY 1
"""),
    )),
    BaselinePanel("data-quality", "Source freshness", 8, None, (
        ("A", """\
WITH known AS (
  SELECT s.key AS source
  FROM pipeline_runs r
  CROSS JOIN LATERAL jsonb_each(r.sources::jsonb) AS s(key, value)
  WHERE $__timeFilter(r.started_at)
  UNION
  SELECT source FROM source_quotes WHERE $__timeFilter(observed_at)
),
seen AS (
  SELECT source, max(observed_at) AS last_observed
  FROM source_quotes
  WHERE $__timeFilter(observed_at)
  GROUP BY source
)
SELECT k.source AS source,
       s.last_observed AS last_observed,
       extract(epoch FROM now() - s.last_observed) AS age_s,
       CASE WHEN s.last_observed IS NULL THEN 'missing'
            WHEN now() - s.last_observed > interval '15 minutes' THEN 'stale'
            ELSE 'ok' END AS state
FROM known k
LEFT JOIN seen s ON s.source = k.source
ORDER BY age_s DESC NULLS FIRST
"""),
    )),
    BaselinePanel("data-quality", "Coins missing a source (latest observation)", 16, None, (
        ("A", """\
WITH expected AS (
  SELECT DISTINCT source FROM source_quotes WHERE $__timeFilter(observed_at)
)
SELECT c.name AS name,
       c.symbol AS symbol,
       e.source AS missing_source,
       (SELECT string_agg(q.source, ', ' ORDER BY q.source)
          FROM source_quotes q
         WHERE q.currency_id = d.currency_id AND q.observed_at = d.observed_at) AS present_sources,
       d.observed_at AS observed_at
FROM currency_data d
JOIN currencies c ON c.id = d.currency_id
CROSS JOIN expected e
WHERE d.observed_at >= (SELECT max(observed_at) FROM currency_data) - interval '15 minutes'
  AND $__timeFilter(d.observed_at)
  AND NOT EXISTS (SELECT 1 FROM source_quotes q
                   WHERE q.currency_id = d.currency_id AND q.source = e.source
                     AND q.observed_at = d.observed_at)
ORDER BY e.source, d.rank NULLS LAST, c.name
LIMIT 200
"""),
    )),
    BaselinePanel("pipeline-health", "Records per minute", 12, "1m", (
        ("A", """\
SELECT $__timeGroupAlias(observed_at, $__interval),
       count(*) * 60000.0 / $__interval_ms AS stored_per_min
FROM currency_data_history
WHERE $__timeFilter(observed_at)
GROUP BY 1
ORDER BY 1
"""),
        ("B", """\
SELECT $__timeGroupAlias(started_at, $__interval),
       sum(published) * 60000.0 / $__interval_ms AS published_per_min
FROM pipeline_runs
WHERE $__timeFilter(started_at)
GROUP BY 1
ORDER BY 1
"""),
    )),
)


# --- Timing ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Timing:
    seconds: list[float] = field(default_factory=list)

    @property
    def p95_ms(self) -> float:
        return percentile(self.seconds, 0.95) * 1000

    @property
    def median_ms(self) -> float:
        return percentile(self.seconds, 0.5) * 1000


def repeat(call: Callable[[], Any], reps: int, budget: float, min_reps: int, slow: float = 0.3) -> Timing:
    """``call`` once untimed, then timed ``reps`` times, or fewer (but ``min_reps``) once ``budget`` seconds
    went into it. A first call slower than ``slow`` seconds counts as the first timed one (its rows were read
    moments before, by the load and its vacuum: a warm-up would only double a long wait)."""
    timing = Timing()
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    if first > slow:
        timing.seconds.append(first)
    started = time.perf_counter()
    while len(timing.seconds) < reps and (len(timing.seconds) < min_reps or time.perf_counter() - started < budget):
        t0 = time.perf_counter()
        call()
        timing.seconds.append(time.perf_counter() - t0)
    return timing


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


# --- The API --------------------------------------------------------------------------------------------

# app.js: its candle steps, and at most this many candles beyond the raw range
JS_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)
LONG_CANDLES = 300


def js_auto_step(times_ms: Sequence[float]) -> int:
    """app.js ``autoStep``: the candle step it asks for over raw points."""
    if len(times_ms) < 2:
        return 60
    span = (times_ms[-1] - times_ms[0]) / 1000
    gaps = sorted((b - a) / 1000 for a, b in zip(times_ms, times_ms[1:], strict=False))
    gap = gaps[len(gaps) // 2] or 1
    wanted = max(span / 40, gap * 2, 1)
    return next((s for s in JS_STEPS if s >= wanted), 86400)


def _iso(at: datetime) -> str:
    """JavaScript's ``Date.toISOString()``."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def history_url(coin: str, start: datetime, end: datetime, **extra: str) -> str:
    return f"/api/coins/{coin}/history?" + urlencode({"start": _iso(start), "end": _iso(end), **extra})


@dataclass(slots=True)
class ApiCall:
    range: str
    name: str  # "history": the first call (sources, max_candles); "ohlc": candles over raw points
    url: str
    status: int = 200
    bytes: int = 0
    tier: str = ""
    interval: int = 0
    start: datetime = datetime.min.replace(tzinfo=UTC)
    end: datetime = datetime.min.replace(tzinfo=UTC)


def dashboard_calls(client: Any, latest: datetime, now: datetime) -> list[ApiCall]:
    """The history requests app.js sends for each range (auto interval) once the coin is selected."""
    calls = []
    end = max(latest, now) + timedelta(seconds=1)
    for name, seconds in RANGES.items():
        start = latest - timedelta(seconds=seconds)
        first = ApiCall(name, "history", history_url(COIN, start, end, sources="true", max_candles=str(LONG_CANDLES)),
                        start=start, end=end)
        answer = client.get(first.url)
        answer.raise_for_status()
        body = answer.json()
        first.tier, first.interval = body["tier"], body["interval"] or 0
        calls.append(first)
        if body["points"] is not None:  # raw points: then candles of a step that suits them
            step = js_auto_step([_ms(p[0]) for p in body["points"]])
            ohlc = ApiCall(name, "ohlc", history_url(COIN, start, end, interval=str(step)), start=start, end=end)
            second = client.get(ohlc.url)
            second.raise_for_status()
            ohlc.tier, ohlc.interval = second.json()["tier"], second.json()["interval"]
            calls.append(ohlc)
    return calls


def baseline_history_app(engine: Any) -> Any:
    """The previous ``/api/coins/{id}/history`` (before the tiers) over ``engine``, its SQL as above: raw points
    (or candles of ``interval`` computed from the raw rows) and, with ``sources``, every raw source quote; a
    400 beyond 50,000 points. Answers with orjson (no response model: a little faster than the route was)."""
    import orjson
    from fastapi import FastAPI, Response

    app = FastAPI()

    def rows(sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql, params)]

    def too_many(what: str) -> Response:
        return Response(orjson.dumps({"error": "bad parameter", "detail": f"more than {BASELINE_MAX_POINTS} {what}"}),
                        status_code=400, media_type="application/json")

    @app.get("/api/coins/{coin_id}/history")
    def history(coin_id: str, start: datetime, end: datetime, interval: int | None = None,
                sources: bool = False) -> Response:
        if not rows(BASELINE_API_SQL["coin_exists"], coin=coin_id):
            return Response(b'{"error": "not found"}', status_code=404, media_type="application/json")
        body: dict[str, Any] = {"coin": coin_id, "start": start, "end": end, "interval": interval,
                                "points": None, "candles": None, "sources": None}
        if interval is None:
            points = rows(BASELINE_API_SQL["points"], coin=coin_id, start=start, end=end, limit=BASELINE_MAX_POINTS + 1)
            if len(points) > BASELINE_MAX_POINTS:
                return too_many("points")
            body["points"] = [[at, float(p), cap, vol, float(conf)] for at, p, cap, vol, conf in points]
        else:
            found = rows(BASELINE_API_SQL["candles"], coin=coin_id, start=start, end=end, step=interval,
                         limit=BASELINE_MAX_CANDLES + 1)
            body["candles"] = [{"time": datetime.fromtimestamp(int(b) * interval, tz=UTC), "open": o, "high": h,
                                "low": lo, "close": c, "volume": v, "n": n} for b, o, h, lo, c, v, n in found]
        if sources:
            quotes = rows(BASELINE_API_SQL["source_lines"], coin=coin_id, start=start, end=end,
                          limit=BASELINE_MAX_POINTS + 1)
            if len(quotes) > BASELINE_MAX_POINTS:
                return too_many("source points")
            lines: dict[str, list[list[Any]]] = {}
            for source, at, price, used in quotes:
                lines.setdefault(source, []).append([at, float(price), bool(used)])
            body["sources"] = lines
        return Response(orjson.dumps(body), media_type="application/json")

    return app


def measure_api(client: Any, calls: list[ApiCall], sizes: Sizes, *, baseline: bool) -> dict[str, Timing]:
    budget, min_reps = (sizes.baseline_budget, sizes.baseline_min_reps) if baseline else (sizes.budget, sizes.min_reps)
    out = {}
    for call in calls:
        def get(call: ApiCall = call) -> None:
            answer = client.get(call.url)
            call.status, call.bytes = answer.status_code, len(answer.content)
            if answer.status_code not in (200, 400):
                raise RuntimeError(f"history: {call.url} answered {answer.status_code}: {answer.text[:300]}")

        out[f"{call.range}.{call.name}"] = repeat(get, sizes.reps, budget, min_reps)
    return out


def top100(client: Any, sizes: Sizes, *, baseline: bool) -> Timing:
    budget, min_reps = (sizes.baseline_budget, sizes.baseline_min_reps) if baseline else (sizes.budget, sizes.min_reps)

    def get() -> None:
        answer = client.get("/api/coins?sort=market_cap&order=desc&limit=100")
        answer.raise_for_status()

    return repeat(get, sizes.reps, budget, min_reps)


# --- Grafana --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Panel:
    slug: str
    board: str
    panel: dict[str, Any]  # for $__interval: gridPos, maxDataPoints, interval
    targets: tuple[str, ...]  # rawSql of each target, in order
    variables: dict[str, str]

    @property
    def per_coin(self) -> bool:
        """One coin's panel ($coin): the baseline has a year of rows for that coin only."""
        return any("$coin" in sql for sql in self.targets)


def history_panels() -> tuple[list[Panel], list[Panel]]:
    """(the dashboards' panels, the previous dashboards' same panels) of every panel reading price history."""
    old = {p.title: p for p in BASELINE_PANELS}
    ours, theirs = [], []
    for board_name, board in load_dashboards().items():
        variables = variable_defaults(board)
        if "coin" in variables:
            variables["coin"] = COIN
        for panel in panels(board["panels"]):
            sqls = tuple(t["rawSql"] for t in panel.get("targets", []))
            previous = old.pop(panel["title"], None)
            if not any(HISTORY_TABLES.search(s) for s in sqls) and previous is None:
                continue
            ours.append(Panel(slug(panel["title"]), board_name, panel, sqls, variables))
            if previous is not None:
                theirs.append(Panel(slug(previous.title), previous.board, previous.as_panel(),
                                    tuple(sql for _, sql in previous.targets), variables))
    if old:
        raise RuntimeError(f"history: previous panels no longer on the dashboards: {', '.join(sorted(old))}")
    return ours, theirs


def reader_url(url: str) -> tuple[str, str]:
    """(libpq URL to read ``url``'s database as the dashboards do, the role): ``cryptoviz_reader`` when it exists
    and ``CRYPTOVIZ_READER_DATABASE_URL`` says how to log in, else the owner."""
    plain = plain_pg_url(url)
    with psycopg.connect(plain) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone() is not None
    reader = setting("CRYPTOVIZ_READER_DATABASE_URL")
    if exists and reader:
        database = plain.split("?", 1)[0].rsplit("/", 1)[1]
        return plain_pg_url(reader).split("?", 1)[0].rsplit("/", 1)[0] + "/" + database, READER
    return plain, "owner"


def measure_panels(url: str, items: list[Panel], end: datetime, sizes: Sizes, *, baseline: bool) -> dict[str, Timing]:
    """Each panel over each of :data:`GRAFANA_RANGES` ending at ``end``; on the baseline, over a year only the
    panels of one coin (its other coins have 7 days of rows: a year reads what 7 days read)."""
    budget, min_reps = (sizes.baseline_budget, sizes.baseline_min_reps) if baseline else (sizes.budget, sizes.min_reps)
    out = {}
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        for item in items:
            for name in GRAFANA_RANGES:
                if baseline and name == "1y" and not item.per_coin:
                    continue
                span = TimeRange(end - timedelta(seconds=RANGES[name]), end)
                interval = panel_interval(item.panel, span)
                sqls = [grafana_sql(s, variables=item.variables, time_range=span, interval=interval)
                        for s in item.targets]

                def run(sqls: list[str] = sqls) -> None:
                    for sql in sqls:
                        conn.execute(sql).fetchall()

                out[f"{item.slug}.{name}"] = repeat(run, sizes.reps, budget, min_reps)
    return out


# --- Storage --------------------------------------------------------------------------------------------


def storage(url: str) -> dict[str, tuple[int, int]]:
    """Per table (a partitioned table with its partitions): (bytes with indexes and TOAST, bytes of indexes)."""
    with psycopg.connect(plain_pg_url(url)) as conn:
        found = conn.execute(
            "SELECT coalesce(p.relname, c.relname)::text, sum(pg_total_relation_size(c.oid))::bigint, "
            "sum(pg_indexes_size(c.oid))::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema() "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE c.relkind = 'r' GROUP BY 1 ORDER BY 1").fetchall()
    return {name: (int(total), int(indexes)) for name, total, indexes in found}


# --- The run --------------------------------------------------------------------------------------------


def _timings(out: dict[str, Any], prefix: str, timings: dict[str, Timing]) -> None:
    for key, timing in timings.items():
        out[f"{prefix}.{key}.p95_ms"] = timing.p95_ms
        out[f"{prefix}.{key}.median_ms"] = timing.median_ms
        out[f"{prefix}.{key}.calls"] = len(timing.seconds)


def _growth(timings: dict[str, Timing]) -> tuple[float, str]:
    """The worst p95 over 1 year / p95 over 7 days of the calls measured at both, and which call."""
    worst, which = 0.0, ""
    for key, timing in timings.items():
        head, _, tail = key.rpartition("1y")
        short = timings.get(f"{head}7d{tail}")
        if short is None or key.count("1y") != 1:
            continue
        ratio = timing.p95_ms / short.p95_ms
        if ratio > worst:
            worst, which = ratio, key.replace("1y", "{1y/7d}")
    return worst, which


def _test_client(app: Any) -> Any:
    """starlette's TestClient: requests through the ASGI app in this process (no server, no sockets)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*starlette.testclient")  # its note about httpx versions
        from fastapi.testclient import TestClient
    return TestClient(app)


def _settings() -> Any:
    from cryptoviz.config import Settings

    return Settings(_env_file=None, api_token=None)  # type: ignore[call-arg]  # explicit values win over CRYPTOVIZ_*


def _storage_figures(url: str, prefix: str, out: dict[str, Any]) -> int:
    by_table = storage(url)
    total = sum(t for t, _ in by_table.values())
    out.update({f"{prefix}.bytes.{k}": t for k, (t, _) in by_table.items() if t >= 1 << 20})
    out.update({f"{prefix}.index_bytes.{k}": i for k, (t, i) in by_table.items() if t >= 1 << 20})
    out[f"{prefix}.bytes"] = total
    return total


def measure_tiers(url: str, now: datetime, sizes: Sizes, out: dict[str, Any]) -> tuple[
        dict[str, Timing], dict[str, Timing], list[ApiCall]]:
    """The dashboard's history calls, the top-100 table and the panels over the tiered database at ``url``."""
    import sqlalchemy as sa

    from cryptoviz.api.app import create_app
    from cryptoviz.store.engine import make_engine

    engine = make_engine(url)
    client = _test_client(create_app(engine, _settings()))
    try:
        with engine.connect() as conn:
            latest = conn.execute(sa.text("SELECT observed_at FROM currency_data WHERE currency_id = :c"),
                                  {"c": COIN}).scalar_one()
        calls = dashboard_calls(client, latest, now)
        api = measure_api(client, calls, sizes, baseline=False)
        api["top100"] = top100(client, sizes, baseline=False)
    finally:
        client.close()
        engine.dispose()
    for call in calls:
        out[f"history.api.{call.range}.{call.name}.bytes"] = call.bytes
        out[f"history.api.{call.range}.{call.name}.tier"] = call.tier
        out[f"history.api.{call.range}.{call.name}.interval"] = call.interval
    read_url, role = reader_url(url)
    out["history.grafana_role"] = role
    grafana = measure_panels(read_url, history_panels()[0], now, sizes, baseline=False)
    return api, grafana, calls


def measure_baseline(url: str, calls: list[ApiCall], now: datetime, sizes: Sizes, out: dict[str, Any]) -> tuple[
        dict[str, Timing], dict[str, Timing]]:
    """The same over the previous design at ``url``: for each range, the previous dashboard's two calls (raw
    points and source lines; candles of the step ours answered with), the top-100 table, the previous panels."""
    from cryptoviz.api.app import create_app
    from cryptoviz.store.engine import make_engine

    engine = make_engine(url)
    steps = {c.range: c.interval for c in calls}  # each range's last call: the candles drawn
    base_calls = []
    for call in calls:
        if call.name == "history":
            base_calls.append(ApiCall(call.range, "history", history_url(COIN, call.start, call.end, sources="true"),
                                      start=call.start, end=call.end))
            base_calls.append(ApiCall(call.range, "ohlc", history_url(COIN, call.start, call.end,
                                                                      interval=str(steps[call.range])),
                                      start=call.start, end=call.end))
    with engine.begin() as conn:  # the route of today reads the value's interval (migration 0007): empty here
        conn.exec_driver_sql("ALTER TABLE currency_data ADD COLUMN IF NOT EXISTS price_low double precision, "
                             "ADD COLUMN IF NOT EXISTS price_high double precision, ADD COLUMN IF NOT EXISTS "
                             "unverified boolean NOT NULL DEFAULT false, ADD COLUMN IF NOT EXISTS price_at timestamptz")
    try:
        with _test_client(baseline_history_app(engine)) as client:
            api = measure_api(client, base_calls, sizes, baseline=True)
        with _test_client(create_app(engine, _settings())) as client:  # /api/coins: the same route before
            api["top100"] = top100(client, sizes, baseline=True)
    finally:
        engine.dispose()
    for call in base_calls:
        out[f"history.baseline.api.{call.range}.{call.name}.bytes"] = call.bytes
        out[f"history.baseline.api.{call.range}.{call.name}.status"] = call.status
    read_url, _ = reader_url(url)
    grafana = measure_panels(read_url, history_panels()[1], now, sizes, baseline=True)
    return api, grafana


def summarize(out: dict[str, Any], timings: dict[str, tuple[dict[str, Timing], dict[str, Timing]]]) -> None:
    """Per-call keys, the worst of each kind, growth, and whether each target is met."""
    for prefix, (api, grafana) in timings.items():
        _timings(out, f"{prefix}.api", api)
        _timings(out, f"{prefix}.grafana", grafana)
        for name in RANGES:
            worst = [t.p95_ms for k, t in api.items() if k.startswith(f"{name}.")]
            if worst:
                out[f"{prefix}.api.{name}.p95_ms"] = max(worst)
        out[f"{prefix}.api_p95_ms_max"] = max(t.p95_ms for k, t in api.items() if k != "top100")
        for name in GRAFANA_RANGES:
            out[f"{prefix}.grafana_p95_ms_max_{name}"] = max(t.p95_ms for k, t in grafana.items()
                                                             if k.endswith(f".{name}"))
        out[f"{prefix}.grafana_p95_ms_max"] = out[f"{prefix}.grafana_p95_ms_max_30d"]
        growth, which = _growth({**{f"api.{k}": t for k, t in api.items()},
                                 **{f"grafana.{k}": t for k, t in grafana.items()}})
        out[f"{prefix}.growth_ratio"], out[f"{prefix}.growth_worst"] = growth, which
        out[f"{prefix}.growth_ratio_api"] = _growth(api)[0]
        out[f"{prefix}.growth_ratio_grafana"] = _growth(grafana)[0]
    for key, limit in TARGETS.items():
        figure = {"api_p95_ms": "history.api_p95_ms_max", "grafana_p95_ms": "history.grafana_p95_ms_max",
                  "bytes_per_coin_minute": "history.bytes_per_coin_minute",
                  "growth_ratio": "history.growth_ratio"}[key]
        out[f"history.met.{key}"] = bool(out[figure] <= limit)


def run(services: Services, sizes: Sizes) -> dict[str, Any]:
    end = int(time.time()) // 300 * 300  # the data ends at the last whole 5 minutes
    now = datetime.fromtimestamp(end + 120, UTC)  # when the dashboards look at it
    coins = universe(sizes.coins, random.Random(7))
    out: dict[str, Any] = {
        "history.coins": sizes.coins, "history.raw_days": sizes.raw_days, "history.days": sizes.days,
        "history.baseline_days": sizes.baseline_days, "history.baseline_long_days": sizes.days,
        "history.reps": sizes.reps,
        **{f"history.target.{k}": v for k, v in TARGETS.items()},
    }
    progress(f"history: tiers, {sizes.coins} coins, {sizes.days} days of candles, {sizes.raw_days} days of raw rows")
    with fresh_database(services, "history") as url:
        started = time.monotonic()
        rows = load_tiers(url, coins, end, sizes, random.Random(11))
        settle(url)
        out["history.load_seconds"] = time.monotonic() - started
        out.update({f"history.rows.{k}": v for k, v in rows.items()})
        total = _storage_figures(url, "history", out)
        out["history.bytes_per_coin_minute"] = total / (sizes.coins * sizes.days * 1440)
        out["history.bytes_per_coin_day"] = total / (sizes.coins * sizes.days)
        out["history.bytes_per_day"] = total / sizes.days
        progress(f"history: tiers loaded in {out['history.load_seconds']:.0f}s, {total / 1e9:.2f} GB, "
                 f"{out['history.bytes_per_coin_minute']:.1f} bytes per coin-minute; measuring")
        started = time.monotonic()
        api, grafana, calls = measure_tiers(url, now, sizes, out)
        out["history.measure_seconds"] = time.monotonic() - started

    progress(f"history: baseline, one raw row a minute: {COIN} {sizes.days} days, the other coins "
             f"{sizes.baseline_days} days")
    with fresh_database(services, "history_base", "0004") as url:
        started = time.monotonic()
        rows = load_baseline(url, coins, end, sizes, random.Random(11))
        settle(url)
        out["history.baseline.load_seconds"] = time.monotonic() - started
        out.update({f"history.baseline.rows.{k}": v for k, v in rows.items()})
        total = _storage_figures(url, "history.baseline", out)
        out["history.baseline.coin_minutes"] = rows["currency_data_history"]
        out["history.baseline.bytes_per_coin_minute"] = total / rows["currency_data_history"]
        progress(f"history: baseline loaded in {out['history.baseline.load_seconds']:.0f}s, {total / 1e9:.2f} GB; "
                 "measuring")
        started = time.monotonic()
        base_api, base_grafana = measure_baseline(url, calls, now, sizes, out)
        out["history.baseline.measure_seconds"] = time.monotonic() - started

    summarize(out, {"history": (api, grafana), "history.baseline": (base_api, base_grafana)})
    figures = [f"{label} {out[f'history.{key}']:.1f} (baseline {out[f'history.baseline.{key}']:.1f})"
               for label, key in (("API p95 ms", "api_p95_ms_max"), ("Grafana 30 d p95 ms", "grafana_p95_ms_max"),
                                  ("bytes per coin-minute", "bytes_per_coin_minute"), ("growth", "growth_ratio"))]
    progress("history: " + ", ".join(figures))
    return out
