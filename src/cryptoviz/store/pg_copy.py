"""PostgreSQL batch path of the writer: binary COPY, then one set-based statement per table.

Per batch, in the caller's one transaction:

1. ``COPY ... FROM STDIN (FORMAT BINARY)`` of one row per snapshot into a session-local staging table
   (``TEMPORARY ... ON COMMIT DELETE ROWS``: created once per database session, emptied by every commit,
   never WAL-logged). Each coin's latest row in the batch is flagged while the rows are built, with the
   coin's earliest observation in the batch, so the merges need no ``DISTINCT ON`` or window function;
2. one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` each for ``currencies`` and ``currency_data``
   (foreign keys: the coins first), from the flagged rows;
3. the new rows, optimistically, inside a savepoint: a plain ``INSERT ... SELECT`` of the staged rows into
   ``currency_data_history`` (sent with both merges in one round trip) and a binary ``COPY`` of the source
   values straight into ``source_quotes``.
   A batch that holds a row already stored (a redelivery after a crash or a rebalance) or the same key
   twice fails that with a unique violation; it is then rolled back to the savepoint and done the
   idempotent way: the source values are staged too and both tables get ``INSERT ... SELECT DISTINCT ON
   ... ON CONFLICT DO NOTHING``. Plain inserts skip the conflict arbitration, and the source values
   (two or more rows per snapshot) skip the staging table, which makes the usual batch markedly cheaper.

The statements reproduce :func:`cryptoviz.store.writer.snapshot_rows` plus the upserts of the SQL sink
exactly: within a batch the latest observation of a key wins (by time, then by position in the batch,
the later one winning a tie), ``first_seen_at`` is the earliest observation;
against the tables, a current row is only replaced by a newer-or-equal ``observed_at``, ids are
coalesced, and history and source quotes are insert-only, so a replayed batch adds no row. The inserted
counts come from the command tags (or the number of rows copied when nothing conflicted).

The only per-row Python work is building the tuple that ``copy.write_row`` encodes (in C), done while
the rows are copied: the server works on the rows already sent meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from psycopg import sql

from cryptoviz.errors import StoreError
from cryptoviz.gcpause import paused_gc
from cryptoviz.models import CoinSnapshot
from cryptoviz.store.candles import PG_MERGE, pg_new_rows
from cryptoviz.store.engine import redact
from cryptoviz.store.sink import WriteResult
from cryptoviz.timeutil import utc_now

STAGE_SNAPSHOTS = "cryptoviz_stage_snapshots"
STAGE_QUOTES = "cryptoviz_stage_quotes"
_READY = "cryptoviz_pg_copy_staging"  # key in the pooled DBAPI connection's info dict

# Staging columns are loose on purpose (text, int8): the merge casts them to the target types, so an
# out-of-range or too long value fails the batch exactly like a direct INSERT into the table would.
_SNAPSHOT_COLUMNS = (
    ("seq", "int4"), ("currency_id", "text"), ("symbol", "text"), ("name", "text"), ("slug", "text"),
    ("coingecko_id", "text"), ("coinmarketcap_id", "text"), ("source_ids", "text"), ("rank", "int8"),
    ("price", "float8"),
    ("market_cap", "float8"), ("volume_24h", "float8"), ("change_1h", "float8"), ("change_24h", "float8"),
    ("change_7d", "float8"), ("circulating_supply", "float8"), ("total_supply", "float8"),
    ("max_supply", "float8"), ("confidence", "float8"), ("n_sources", "int8"), ("sources", "text"),
    ("currency", "text"), ("observed_at", "timestamptz"),
    # The latest row of each coin in the batch (see _Batch), which alone carries the coin's earliest
    # observation in the batch.
    ("latest", "bool"), ("first_seen_at", "timestamptz"),
    # Whether the snapshot makes a history row (write on change: CoinSnapshot.record), and each source's
    # own price (a JSON object) for the candles' per-source closes.
    ("record", "bool"), ("source_prices", "text"),
    # What the value is worth: its interval, whether it is verified, when its price was quoted.
    ("price_low", "float8"), ("price_high", "float8"), ("unverified", "bool"), ("price_at", "timestamptz"),
)
_QUOTE_COLUMNS = (
    ("seq", "int4"), ("currency_id", "text"), ("source", "text"), ("observed_at", "timestamptz"),
    ("source_id", "text"), ("price", "float8"), ("market_cap", "float8"), ("volume_24h", "float8"),
    ("last_updated", "timestamptz"), ("used", "bool"), ("dropped_reason", "text"),
)


def _create(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    body = ", ".join(f"{name} {type_}" for name, type_ in columns)
    return f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({body}) ON COMMIT DELETE ROWS"


def _copy(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    return f"COPY {table} ({', '.join(name for name, _ in columns)}) FROM STDIN (FORMAT BINARY)"


CREATE_STAGING = (_create(STAGE_SNAPSHOTS, _SNAPSHOT_COLUMNS), _create(STAGE_QUOTES, _QUOTE_COLUMNS))
COPY_SNAPSHOTS = _copy(STAGE_SNAPSHOTS, _SNAPSHOT_COLUMNS)
COPY_QUOTES = _copy(STAGE_QUOTES, _QUOTE_COLUMNS)
SNAPSHOT_TYPES = [type_ for _, type_ in _SNAPSHOT_COLUMNS]
QUOTE_TYPES = [type_ for _, type_ in _QUOTE_COLUMNS]
# The source values straight into the table (no seq column): the optimistic path.
COPY_SOURCE_QUOTES = (f"COPY source_quotes ({', '.join(name for name, _ in _QUOTE_COLUMNS[1:])}) "
                      "FROM STDIN (FORMAT BINARY)")
SOURCE_QUOTE_TYPES = QUOTE_TYPES[1:]

# The latest observation of each coin in the batch (flagged while staging). Rows are merged in key order,
# so concurrent writers lock rows in the same order.
MERGE_CURRENCIES = f"""
INSERT INTO currencies AS c
    (id, symbol, name, slug, coingecko_id, coinmarketcap_id, source_ids, first_seen_at, last_seen_at)
SELECT currency_id, symbol, name, slug, coingecko_id, coinmarketcap_id, source_ids::jsonb, first_seen_at,
    observed_at
FROM {STAGE_SNAPSHOTS}
WHERE latest
ORDER BY currency_id
ON CONFLICT (id) DO UPDATE SET
    symbol = EXCLUDED.symbol,
    name = EXCLUDED.name,
    slug = coalesce(EXCLUDED.slug, c.slug),
    coingecko_id = coalesce(EXCLUDED.coingecko_id, c.coingecko_id),
    coinmarketcap_id = coalesce(EXCLUDED.coinmarketcap_id, c.coinmarketcap_id),
    source_ids = coalesce(c.source_ids, '{{}}'::jsonb) || EXCLUDED.source_ids,
    first_seen_at = CASE WHEN EXCLUDED.first_seen_at < c.first_seen_at
                         THEN EXCLUDED.first_seen_at ELSE c.first_seen_at END,
    last_seen_at = CASE WHEN EXCLUDED.last_seen_at > c.last_seen_at
                        THEN EXCLUDED.last_seen_at ELSE c.last_seen_at END
"""

_CURRENT = ("rank", "price", "market_cap", "volume_24h", "change_1h", "change_24h", "change_7d",
            "circulating_supply", "total_supply", "max_supply", "confidence", "n_sources", "sources",
            "currency", "observed_at", "price_low", "price_high", "unverified", "price_at")
# ``{now}``: the write time, as an SQL literal (see _MERGE_AND_INSERT_HEAD).
MERGE_CURRENT = f"""
INSERT INTO currency_data AS d (currency_id, {", ".join(_CURRENT)}, updated_at)
SELECT currency_id, {", ".join(_CURRENT)}, {{now}}
FROM {STAGE_SNAPSHOTS}
WHERE latest
ORDER BY currency_id
ON CONFLICT (currency_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in (*_CURRENT, "updated_at"))}
WHERE d.observed_at <= EXCLUDED.observed_at
"""
SAVEPOINT = "cryptoviz_new_rows"

_HISTORY = ("currency_id", "observed_at", "rank", "price", "market_cap", "volume_24h", "change_1h",
            "change_24h", "change_7d", "confidence", "n_sources", "sources", "currency", "price_low", "price_high",
            "unverified", "price_at")
# The new history rows, and the candle tiers updated from exactly those rows (a redelivered row is not
# new, so it changes no candle); the statement's one result row is the number of history rows inserted.
_INSERT_NEW = f"""INSERT INTO currency_data_history ({", ".join(_HISTORY)})
    SELECT {", ".join(_HISTORY)} FROM {STAGE_SNAPSHOTS} WHERE record"""
INSERT_HISTORY_NEW = f"""
WITH {pg_new_rows(_INSERT_NEW, STAGE_SNAPSHOTS, all_new=True)},{PG_MERGE}
SELECT count(*) FROM inserted_rows
"""
# Both merges, the savepoint and the optimistic history insert in one round trip (simple query protocol:
# no parameters, so the write time goes in as a literal, between these two parts). Only the last
# statement can meet an existing row.
_MERGE_AND_INSERT_HEAD, _MERGE_AND_INSERT_TAIL = ";\n".join(
    (MERGE_CURRENCIES.strip(), MERGE_CURRENT.strip(), f"SAVEPOINT {SAVEPOINT}", INSERT_HISTORY_NEW.strip())
).split("{now}")
_INSERT_IDEMPOTENT = f"""INSERT INTO currency_data_history ({", ".join(_HISTORY)})
    SELECT DISTINCT ON (currency_id, observed_at) {", ".join(_HISTORY)}
    FROM {STAGE_SNAPSHOTS}
    WHERE record
    ORDER BY currency_id, observed_at, seq DESC
    ON CONFLICT DO NOTHING"""
INSERT_HISTORY = f"""
WITH {pg_new_rows(_INSERT_IDEMPOTENT, STAGE_SNAPSHOTS, all_new=False)},{PG_MERGE}
SELECT count(*) FROM inserted_rows
"""

_QUOTES = ("currency_id", "source", "observed_at", "source_id", "price", "market_cap", "volume_24h",
           "last_updated", "used", "dropped_reason")
INSERT_QUOTES = f"""
INSERT INTO source_quotes ({", ".join(_QUOTES)})
SELECT DISTINCT ON (currency_id, source, observed_at) {", ".join(_QUOTES)}
FROM {STAGE_QUOTES}
ORDER BY currency_id, source, observed_at, seq DESC
ON CONFLICT DO NOTHING
"""


class _Batch:
    """One batch, ready to stage: each snapshot's ``observed_at`` as an aware time, and which rows are the
    latest of their coin.

    The latest row of a coin has the latest ``observed_at`` (the later position wins a tie); it feeds
    ``currencies`` and ``currency_data`` and carries the coin's earliest ``observed_at`` in the batch
    (``first_seen_at``). Every row feeds the history. Rows are built while they are copied, so building
    and encoding overlap with the server's work on the rows already sent.
    """

    __slots__ = ("first_seen", "observed", "quotes", "snapshots")

    def __init__(self, snapshots: Sequence[CoinSnapshot]) -> None:
        self.snapshots = snapshots
        observed: list[datetime] = []
        latest: dict[str, int] = {}  # coin -> position of its latest snapshot so far
        first: dict[str, datetime] = {}  # coin -> its earliest observation so far
        quotes = 0
        for i, s in enumerate(snapshots):
            at = s.observed_at
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            observed.append(at)
            if s.record:
                quotes += len(s.sources)
            coin = s.coin_id
            j = latest.get(coin)
            if j is None:
                latest[coin] = i
                first[coin] = at
            else:
                if at >= observed[j]:
                    latest[coin] = i
                if at < first[coin]:
                    first[coin] = at
        self.observed = observed
        self.first_seen = {i: first[coin] for coin, i in latest.items()}  # latest position -> first seen
        self.quotes = quotes  # source values in the batch

    def snapshot_rows(self) -> Iterator[tuple[Any, ...]]:
        """Staging rows, in batch order and the staging table's column order."""
        dumps = orjson.dumps
        first_seen = self.first_seen.get
        seq = 0
        for s, observed in zip(self.snapshots, self.observed, strict=True):
            ids: dict[str, str] = {}  # each source's id of the coin (a later value of a source wins)
            prices: dict[str, float] = {}
            used: list[str] = []
            for v in s.sources:
                source = v.source
                ids[source] = v.source_id
                prices[source] = v.price
                if v.used:
                    used.append(source)
            first = first_seen(seq)
            price_at = s.price_at
            if price_at is not None and price_at.tzinfo is None:
                price_at = price_at.replace(tzinfo=UTC)
            yield (seq, s.coin_id, s.symbol, s.name, s.slug, s.coingecko_id, s.coinmarketcap_id, dumps(ids).decode(),
                   s.rank, s.price, s.market_cap, s.volume_24h, s.change_1h, s.change_24h, s.change_7d,
                   s.circulating_supply, s.total_supply, s.max_supply, s.confidence, len(used) or 1,
                   ",".join(used)[:200], s.currency, observed, first is not None, first, s.record,
                   dumps(prices).decode() if s.record and prices else None, s.price_low, s.price_high,
                   s.unverified, price_at)
            seq += 1

    def quote_rows(self) -> Iterator[tuple[Any, ...]]:
        """``source_quotes`` rows (in its column order), in batch order."""
        for s, observed in zip(self.snapshots, self.observed, strict=True):
            if not s.record:
                continue
            coin = s.coin_id
            for v in s.sources:
                last = v.last_updated
                if last is not None and last.tzinfo is None:
                    last = last.replace(tzinfo=UTC)
                yield (coin, v.source, observed, v.source_id, v.price, v.market_cap, v.volume_24h, last, v.used,
                       v.dropped_reason)


def _copy_rows(cur: psycopg.Cursor[Any], statement: str, types: list[str], rows: Iterable[Sequence[Any]]) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(types)
        write = copy.write_row
        with paused_gc():  # rows built here: many small acyclic objects, nothing for the cyclic collector
            for row in rows:
                write(row)


def write_batch(conn: sa.Connection, snapshots: Sequence[CoinSnapshot], now: datetime) -> tuple[int, int]:
    """Stage and merge one batch inside ``conn``'s open transaction; returns (history, source_quotes) inserted.

    Raises ``StoreError`` for a value PostgreSQL (or the binary encoder) refuses; the caller then rolls the
    transaction back. Once the transaction has committed, call :func:`mark_ready` with
    ``conn.connection.info`` so the next batches of this session skip creating the staging tables.
    """
    pooled = conn.connection
    raw = pooled.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise StoreError(f"the PostgreSQL COPY path needs psycopg 3, got {type(raw).__module__}")
    batch = _Batch(snapshots)
    try:
        with raw.cursor() as cur:
            if not pooled.info.get(_READY):
                for statement in CREATE_STAGING:
                    cur.execute(statement)
            _copy_rows(cur, COPY_SNAPSHOTS, SNAPSHOT_TYPES, batch.snapshot_rows())
            return _merge_and_insert(cur, sql.Literal(now).as_string(raw), batch)
    except psycopg.Error as exc:
        text = str(exc).strip()
        raise StoreError(f"{type(exc).__name__}: {text.splitlines()[0] if text else 'refused'}") from exc
    except (TypeError, ValueError, OverflowError) as exc:  # a value the binary encoder cannot send
        raise StoreError(f"a value of the batch cannot be stored: {type(exc).__name__}: {exc}") from exc


def _merge_and_insert(cur: psycopg.Cursor[Any], now: str, batch: _Batch) -> tuple[int, int]:
    """The merges, then history and source-quote rows: plain inserts when none exists yet, else the
    idempotent merge. ``now`` is the write time as an SQL literal."""
    try:
        cur.execute(_MERGE_AND_INSERT_HEAD + now + _MERGE_AND_INSERT_TAIL)
        while cur.nextset():  # the history insert's count is the last result
            pass
        history = _count(cur)
        if batch.quotes:
            _copy_rows(cur, COPY_SOURCE_QUOTES, SOURCE_QUOTE_TYPES, batch.quote_rows())
    except psycopg.errors.UniqueViolation:
        # Rows already stored (a redelivered batch) or one key twice in the batch: skip what exists.
        cur.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
        cur.execute(INSERT_HISTORY)
        history = _count(cur)
        if not batch.quotes:
            return history, 0
        _copy_rows(cur, COPY_QUOTES, QUOTE_TYPES, ((seq, *row) for seq, row in enumerate(batch.quote_rows())))
        cur.execute(INSERT_QUOTES)
        return history, max(cur.rowcount, 0)
    return history, batch.quotes  # the commit releases the savepoint


def _count(cur: psycopg.Cursor[Any]) -> int:
    row = cur.fetchone()
    return int(row[0]) if row else 0


def mark_ready(info: dict[Any, Any]) -> None:
    """Remember that the session behind ``info`` (a pooled connection's info) has its staging tables."""
    info[_READY] = True


def forget(info: dict[Any, Any]) -> None:
    """Check for the staging tables again on the next batch of this session (after a failed batch)."""
    info.pop(_READY, None)


class PostgresCopySink:
    """The PostgreSQL sink: each batch staged with binary COPY and merged, in one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise StoreError(f"the COPY sink writes to PostgreSQL, not {engine.dialect.name}")
        self.engine = engine

    def close(self) -> None:
        """Nothing of its own to release: the engine belongs to the caller."""

    def write(self, snapshots: Sequence[CoinSnapshot]) -> WriteResult:
        if not snapshots:
            return WriteResult(0, 0, 0)
        info: dict[Any, Any] = {}
        where = redact(str(self.engine.url))
        try:
            with self.engine.begin() as conn:
                info = conn.connection.info
                history, quotes = write_batch(conn, snapshots, utc_now())
        except StoreError as exc:  # a value refused inside the transaction (rolled back)
            forget(info)  # cheap to check again; heals a session whose temporary tables went away
            raise StoreError(f"writing {len(snapshots)} snapshots to {where} failed: {exc}") from exc
        except sa.exc.DBAPIError as exc:  # connecting or committing failed
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreError(f"writing {len(snapshots)} snapshots to {where} failed: "
                             f"{type(exc.orig).__name__}: {reason}") from exc
        mark_ready(info)  # committed: this session's staging tables exist from now on
        return WriteResult(len(snapshots), history, quotes)
