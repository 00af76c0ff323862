"""PostgreSQL batch path of the writer: binary COPY, then one set-based statement per table.

Per batch, in the caller's one transaction:

1. ``COPY ... FROM STDIN (FORMAT BINARY)`` of one row per snapshot into a session-local staging table
   (``TEMPORARY ... ON COMMIT DELETE ROWS``: created once per database session, emptied by every commit,
   never WAL-logged);
2. one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` each for ``currencies`` and ``currency_data``
   (foreign keys: the coins first);
3. the new rows, optimistically, inside a savepoint: a plain ``INSERT ... SELECT`` of the staged rows into
   ``currency_data_history`` and a binary ``COPY`` of the source values straight into ``source_quotes``.
   A batch that holds a row already stored (a redelivery after a crash or a rebalance) or the same key
   twice fails that with a unique violation; it is then rolled back to the savepoint and done the
   idempotent way: the source values are staged too and both tables get ``INSERT ... SELECT DISTINCT ON
   ... ON CONFLICT DO NOTHING``. Plain inserts skip the conflict arbitration, and the source values
   (two or more rows per snapshot) skip the staging table, which makes the usual batch markedly cheaper.

The statements reproduce :func:`cryptoviz.store.writer.snapshot_rows` plus the upserts of the generic
path exactly: within a batch the latest observation of a key wins (``DISTINCT ON`` ordered by time, then
by position in the batch, the later one winning a tie), ``first_seen_at`` is the earliest observation;
against the tables, a current row is only replaced by a newer-or-equal ``observed_at``, ids are
coalesced, and history and source quotes are insert-only, so a replayed batch adds no row. The inserted
counts come from the command tags (or the number of rows copied when nothing conflicted).

The only per-row Python work is building the tuple that ``copy.write_row`` encodes (in C).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa

from cryptoviz.errors import StoreError
from cryptoviz.models import CoinSnapshot

STAGE_SNAPSHOTS = "cryptoviz_stage_snapshots"
STAGE_QUOTES = "cryptoviz_stage_quotes"
_READY = "cryptoviz_pg_copy_staging"  # key in the pooled DBAPI connection's info dict

# Staging columns are loose on purpose (text, int8): the merge casts them to the target types, so an
# out-of-range or too long value fails the batch exactly like a direct INSERT into the table would.
_SNAPSHOT_COLUMNS = (
    ("seq", "int4"), ("currency_id", "text"), ("symbol", "text"), ("name", "text"), ("slug", "text"),
    ("coingecko_id", "text"), ("coinmarketcap_id", "text"), ("rank", "int8"), ("price", "float8"),
    ("market_cap", "float8"), ("volume_24h", "float8"), ("change_1h", "float8"), ("change_24h", "float8"),
    ("change_7d", "float8"), ("circulating_supply", "float8"), ("total_supply", "float8"),
    ("max_supply", "float8"), ("confidence", "float8"), ("n_sources", "int8"), ("sources", "text"),
    ("currency", "text"), ("observed_at", "timestamptz"),
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
SAVEPOINT = "cryptoviz_new_rows"

# The latest observation of each coin in the batch (a later position wins a tie). Rows are merged in key
# order, so concurrent writers lock rows in the same order.
MERGE_CURRENCIES = f"""
INSERT INTO currencies AS c
    (id, symbol, name, slug, coingecko_id, coinmarketcap_id, first_seen_at, last_seen_at)
SELECT DISTINCT ON (currency_id)
    currency_id, symbol, name, slug, coingecko_id, coinmarketcap_id,
    min(observed_at) OVER (PARTITION BY currency_id), observed_at
FROM {STAGE_SNAPSHOTS}
ORDER BY currency_id, observed_at DESC, seq DESC
ON CONFLICT (id) DO UPDATE SET
    symbol = EXCLUDED.symbol,
    name = EXCLUDED.name,
    slug = coalesce(EXCLUDED.slug, c.slug),
    coingecko_id = coalesce(EXCLUDED.coingecko_id, c.coingecko_id),
    coinmarketcap_id = coalesce(EXCLUDED.coinmarketcap_id, c.coinmarketcap_id),
    first_seen_at = CASE WHEN EXCLUDED.first_seen_at < c.first_seen_at
                         THEN EXCLUDED.first_seen_at ELSE c.first_seen_at END,
    last_seen_at = CASE WHEN EXCLUDED.last_seen_at > c.last_seen_at
                        THEN EXCLUDED.last_seen_at ELSE c.last_seen_at END
"""

_CURRENT = ("rank", "price", "market_cap", "volume_24h", "change_1h", "change_24h", "change_7d",
            "circulating_supply", "total_supply", "max_supply", "confidence", "n_sources", "sources",
            "currency", "observed_at")
MERGE_CURRENT = f"""
INSERT INTO currency_data AS d (currency_id, {", ".join(_CURRENT)}, updated_at)
SELECT DISTINCT ON (currency_id) currency_id, {", ".join(_CURRENT)}, %(now)s::timestamptz
FROM {STAGE_SNAPSHOTS}
ORDER BY currency_id, observed_at DESC, seq DESC
ON CONFLICT (currency_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in (*_CURRENT, "updated_at"))}
WHERE d.observed_at <= EXCLUDED.observed_at
"""

_HISTORY = ("currency_id", "observed_at", "rank", "price", "market_cap", "volume_24h", "change_1h",
            "change_24h", "change_7d", "confidence", "n_sources", "sources", "currency")
INSERT_HISTORY_NEW = f"""
INSERT INTO currency_data_history ({", ".join(_HISTORY)})
SELECT {", ".join(_HISTORY)} FROM {STAGE_SNAPSHOTS}
"""
INSERT_HISTORY = f"""
INSERT INTO currency_data_history ({", ".join(_HISTORY)})
SELECT DISTINCT ON (currency_id, observed_at) {", ".join(_HISTORY)}
FROM {STAGE_SNAPSHOTS}
ORDER BY currency_id, observed_at, seq DESC
ON CONFLICT DO NOTHING
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


def _aware(value: datetime) -> datetime:
    """Naive times are UTC (as on SQLite); aware ones are sent as the instant they name."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def staging_rows(snapshots: Sequence[CoinSnapshot]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(snapshot rows, source-value rows) in batch order.

    Snapshot rows follow the staging table's columns; source-value rows follow ``source_quotes``'s (the
    staging table's without its leading ``seq``).
    """
    snap_rows: list[tuple[Any, ...]] = []
    quote_rows: list[tuple[Any, ...]] = []
    add_snap = snap_rows.append
    add_quote = quote_rows.append
    for s in snapshots:
        observed = s.observed_at
        if observed.tzinfo is None:
            observed = observed.replace(tzinfo=UTC)
        coin = s.coin_id
        used: list[str] = []
        for v in s.sources:
            last = v.last_updated
            if last is not None and last.tzinfo is None:
                last = last.replace(tzinfo=UTC)
            add_quote((coin, v.source, observed, v.source_id, v.price, v.market_cap, v.volume_24h, last, v.used,
                       v.dropped_reason))
            if v.used:
                used.append(v.source)
        add_snap((len(snap_rows), coin, s.symbol, s.name, s.slug, s.coingecko_id, s.coinmarketcap_id, s.rank,
                  s.price, s.market_cap, s.volume_24h, s.change_1h, s.change_24h, s.change_7d,
                  s.circulating_supply, s.total_supply, s.max_supply, s.confidence, len(used) or 1,
                  ",".join(used)[:200], s.currency, observed))
    return snap_rows, quote_rows


def _copy_rows(cur: psycopg.Cursor[Any], statement: str, types: list[str], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    with cur.copy(statement) as copy:
        copy.set_types(types)
        write = copy.write_row
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
    snap_rows, quote_rows = staging_rows(snapshots)
    try:
        with raw.cursor() as cur:
            if not pooled.info.get(_READY):
                for statement in CREATE_STAGING:
                    cur.execute(statement)
            _copy_rows(cur, COPY_SNAPSHOTS, SNAPSHOT_TYPES, snap_rows)
            cur.execute(MERGE_CURRENCIES)
            cur.execute(MERGE_CURRENT, {"now": now})
            return _insert_new_rows(cur, quote_rows)
    except psycopg.Error as exc:
        text = str(exc).strip()
        raise StoreError(f"{type(exc).__name__}: {text.splitlines()[0] if text else 'refused'}") from exc
    except (TypeError, ValueError, OverflowError) as exc:  # a value the binary encoder cannot send
        raise StoreError(f"a value of the batch cannot be stored: {type(exc).__name__}: {exc}") from exc


def _insert_new_rows(cur: psycopg.Cursor[Any], quote_rows: list[tuple[Any, ...]]) -> tuple[int, int]:
    """History and source-quote rows: plain inserts when none exists yet, else the idempotent merge."""
    cur.execute(f"SAVEPOINT {SAVEPOINT}")
    try:
        cur.execute(INSERT_HISTORY_NEW)
        history = max(cur.rowcount, 0)
        _copy_rows(cur, COPY_SOURCE_QUOTES, SOURCE_QUOTE_TYPES, quote_rows)
    except psycopg.errors.UniqueViolation:
        # Rows already stored (a redelivered batch) or one key twice in the batch: skip what exists.
        cur.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
        cur.execute(INSERT_HISTORY)
        history = max(cur.rowcount, 0)
        if not quote_rows:
            return history, 0
        _copy_rows(cur, COPY_QUOTES, QUOTE_TYPES, [(seq, *row) for seq, row in enumerate(quote_rows)])
        cur.execute(INSERT_QUOTES)
        return history, max(cur.rowcount, 0)
    cur.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
    return history, len(quote_rows)


def mark_ready(info: dict[Any, Any]) -> None:
    """Remember that the session behind ``info`` (a pooled connection's info) has its staging tables."""
    info[_READY] = True


def forget(info: dict[Any, Any]) -> None:
    """Check for the staging tables again on the next batch of this session (after a failed batch)."""
    info.pop(_READY, None)
