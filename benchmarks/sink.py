"""Kafka -> PostgreSQL sink: snapshots/s through the real consumer path, beside raw COPYs of its rows.

The stream is produced into a fresh topic first (not timed), then drained by ``writer_loop.run_writer``
over a ``KafkaConsumer`` and a sink (``open_sink``), as ``cryptoviz consume`` runs them (consume, decode,
validate, upsert ``currencies`` and ``currency_data``, insert ``currency_data_history`` and
``source_quotes``, commit offsets), into a fresh database at the latest schema.

Two baselines, both the fastest way to store rows from Python on this machine (binary ``COPY``, psycopg
``write_row``, rows already built as tuples, one transaction, timed from the start of the COPY to the commit):

* one history row per snapshot into one table of the same shape (``LIKE currency_data_history INCLUDING
  ALL``: same columns, primary key and index, plus the same foreign key to ``currencies``); the figure
  without the foreign key is reported too. ``sink.ratio`` compares snapshots/s with it.
* the same rows: exactly what the writer ends up storing for these snapshots in each of its four tables
  (:func:`cryptoviz.store.writer.snapshot_rows` over the whole stream: one ``currencies`` and one
  ``currency_data`` row per coin, one history row per snapshot, one ``source_quotes`` row per source
  value), into fresh twins of those tables (``LIKE ... INCLUDING ALL``, the same storage parameters, and
  the foreign keys the real tables have, pointing at the twins), loaded in dependency order.
  ``sink.table_ratio`` compares the writer's rows/s over the same rows with it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb

from benchmarks.common import Services, fresh_database, fresh_topic, group_name, plain_pg_url, progress
from benchmarks.kafka_io import drain, produce, stream
from cryptoviz.bus.kafka import KafkaConsumer
from cryptoviz.models import CoinSnapshot
from cryptoviz.store.candles import TIERS, Point, aggregate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from cryptoviz.store.tables import currencies, currency_data, currency_data_history, source_quotes
from cryptoviz.store.writer import snapshot_rows

_HISTORY_COLUMNS = ("currency_id", "observed_at", "rank", "price", "market_cap", "volume_24h", "change_1h",
                    "change_24h", "change_7d", "confidence", "n_sources", "sources", "currency")
_HISTORY_TYPES = ["text", "timestamptz", "int4", "float8", "float8", "float8", "float8", "float8", "float8",
                  "float8", "int2", "text", "text"]


def history_rows(snapshots: Iterable[CoinSnapshot]) -> list[tuple[Any, ...]]:
    """The rows ``currency_data_history`` gets for these snapshots, as tuples in column order."""
    rows = []
    for s in snapshots:
        used = [v.source for v in s.sources if v.used]
        rows.append((s.coin_id, s.observed_at.astimezone(UTC), s.rank, s.price, s.market_cap, s.volume_24h,
                     s.change_1h, s.change_24h, s.change_7d, s.confidence, len(used) or 1, ",".join(used),
                     s.currency))
    return rows


def copy_baseline(url: str, rows: list[tuple[Any, ...]], *, foreign_key: bool) -> float:
    """Rows/s of one binary COPY of ``rows`` into a fresh twin of ``currency_data_history``."""
    columns = ", ".join(_HISTORY_COLUMNS)
    with psycopg.connect(plain_pg_url(url)) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_history_copy")
        conn.execute("CREATE TABLE bench_history_copy (LIKE currency_data_history INCLUDING ALL)")
        if foreign_key:
            conn.execute("ALTER TABLE bench_history_copy ADD FOREIGN KEY (currency_id) REFERENCES currencies (id) "
                         "ON DELETE CASCADE")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY bench_history_copy ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_HISTORY_TYPES)
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_history_copy")
        conn.commit()
    return len(rows) / seconds


# The writer's tables in dependency order (a table after the ones its foreign keys point at), with the key of
# each in ``snapshot_rows``.
_TABLES: tuple[tuple[sa.Table, str], ...] = (
    (currencies, "currencies"), (currency_data, "currency_data"), (currency_data_history, "history"),
    (source_quotes, "source_quotes"), *((tier.table, tier.table.name) for tier in TIERS),
)
_TWIN = "bench_same_"


def same_rows(snapshots: Iterable[CoinSnapshot]) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows (table name -> tuples in column order): what the writer stores for ``snapshots``.

    :func:`snapshot_rows` over the whole stream is the writer's de-duplication (one row per table key, the
    latest observation winning); ``updated_at`` is the only value that differs (the time of the write).
    """
    rows = snapshot_rows(list(snapshots), datetime.now(UTC))
    # The candles the writer folds its history rows into (each equals the recomputation from its rows).
    prices = rows["source_prices"]
    points = [Point(h["currency_id"], h["observed_at"], h["price"], h["market_cap"], h["volume_24h"],
                    h["confidence"], h["sources"], prices.get((h["currency_id"], h["observed_at"])),
                    h["price_low"], h["price_high"], h["unverified"])
              for h in rows["history"]]
    for tier in TIERS:
        rows[tier.table.name] = [c.row() for c in aggregate(points, tier.seconds).values()]
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, key in _TABLES:
        names = [c.name for c in table.c]
        wrap = {n for n in names if isinstance(table.c[n].type, sa.JSON)}
        out[table.name] = [tuple(Jsonb(d[n]) if n in wrap and d[n] is not None else d[n] for n in names)
                           for d in rows.pop(key)]
    return out


def _twin_ddl(conn: psycopg.Connection[Any], table: str) -> tuple[list[str], dict[str, str]]:
    """(DDL making ``bench_same_<table>`` a fresh twin of ``table``, the type name of each column)."""
    twin = _TWIN + table
    ddl = [f"CREATE TABLE {twin} (LIKE {table} INCLUDING ALL)"]
    options = conn.execute("SELECT reloptions FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()
    if options and options[0]:
        ddl.append(f"ALTER TABLE {twin} SET ({', '.join(options[0])})")
    # The same foreign keys as the real table, pointing at the twins (also loaded in this order).
    for referenced, definition in conn.execute(
            "SELECT confrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname", (table,)):
        twin_def = re.sub(rf"\bREFERENCES {re.escape(referenced)}\(", f"REFERENCES {_TWIN}{referenced}(",
                          definition)
        if twin_def == definition:
            raise RuntimeError(f"sink: cannot point the foreign key {definition!r} of {table} at a twin")
        ddl.append(f"ALTER TABLE {twin} ADD {twin_def}")
    types = dict(conn.execute(
        "SELECT a.attname::text, t.typname::text FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped", (table,)).fetchall())
    return ddl, types


def same_rows_copy_baseline(url: str, rows: dict[str, list[tuple[Any, ...]]]) -> tuple[float, dict[str, float]]:
    """Rows/s of binary COPYs of ``rows`` into fresh twins of the writer's tables, in dependency order and one
    transaction; and the seconds each table took."""
    names = [table.name for table, _ in _TABLES]
    with psycopg.connect(plain_pg_url(url)) as conn:
        plans = {name: _twin_ddl(conn, name) for name in names}
        for name in reversed(names):  # the referencing twins first
            conn.execute(f"DROP TABLE IF EXISTS {_TWIN}{name} CASCADE")
        for name in names:
            for statement in plans[name][0]:
                conn.execute(statement)
        conn.commit()
        took: dict[str, float] = {}
        started = last = time.perf_counter()
        with conn.cursor() as cur:
            for table, _ in _TABLES:
                columns = ", ".join(c.name for c in table.c)
                with cur.copy(f"COPY {_TWIN}{table.name} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types([plans[table.name][1][c.name] for c in table.c])
                    for row in rows[table.name]:
                        copy.write_row(row)
                now = time.perf_counter()
                took[table.name], last = now - last, now
        conn.commit()
        done = time.perf_counter()
        seconds, took["commit"] = done - started, done - last
        for name in reversed(names):
            conn.execute(f"DROP TABLE {_TWIN}{name}")
        conn.commit()
    return sum(len(r) for r in rows.values()) / seconds, took


def _count(url: str, table: str) -> int:
    with psycopg.connect(plain_pg_url(url)) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed table names
    return int(row[0]) if row else 0


def run(services: Services, count: int, coins: int, batch_size: int, batch_timeout: float) -> dict[str, Any]:
    progress(f"sink: {count:,} snapshots over {coins:,} coins, Kafka -> PostgreSQL, batches of {batch_size:,}")
    with fresh_database(services, "sink") as url, fresh_topic(services, "sink") as topic:
        produced, produce_s = produce(services.bootstrap, topic, stream(count, coins), label="sink: ")
        progress(f"sink: {produced:,} messages in Kafka ({produced / produce_s:,.0f}/s); draining")
        engine = make_engine(url)
        consumer = KafkaConsumer(services.bootstrap, topic, group_name("sink"), client_id="cryptoviz-bench-sink")
        try:
            result = drain(consumer, open_sink(engine), count, batch_size=batch_size,
                           batch_timeout=batch_timeout)
        finally:
            consumer.close()
            engine.dispose()
        stored = {table.name: _count(url, table.name) for table, _ in _TABLES}
        history, quotes, current = (stored[t] for t in ("currency_data_history", "source_quotes", "currency_data"))
        if history != count or quotes != 2 * count or current != coins:
            raise RuntimeError(f"sink: {history} history rows, {quotes} source quotes, {current} current rows "
                               f"for {count} snapshots over {coins} coins")
        rate = result.stored / result.seconds
        table_rate = sum(stored.values()) / result.seconds
        progress(f"sink: {rate:,.0f} snapshots/s, {table_rate:,.0f} table rows/s (poll+decode "
                 f"{result.poll_s:.1f}s, write {result.write_s:.1f}s, commit {result.commit_s:.1f}s); "
                 "raw COPY baselines next")
        rows = history_rows(stream(count, coins))
        copy_fk = copy_baseline(url, rows, foreign_key=True)
        copy_plain = copy_baseline(url, rows, foreign_key=False)
        del rows
        progress(f"sink: raw COPY {copy_fk:,.0f} rows/s with the foreign key, {copy_plain:,.0f} without; "
                 f"ratio {rate / copy_fk:.3f}")
        same = same_rows(stream(count, coins))
        copied = {name: len(r) for name, r in same.items()}
        if copied != stored:  # the numerator and the baseline count the same rows
            raise RuntimeError(f"sink: the writer stored {stored}, the same-rows baseline has {copied}")
        copy_same, took = same_rows_copy_baseline(url, same)
        del same
    progress(f"sink: same rows by COPY {copy_same:,.0f} rows/s ("
             + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in took.items())
             + f"); table ratio {table_rate / copy_same:.3f}")
    return {
        "sink.rows_per_s": rate,
        "sink.copy_rows_per_s": copy_fk,
        "sink.ratio": rate / copy_fk,
        "sink.copy_nofk_rows_per_s": copy_plain,
        "sink.ratio_nofk": rate / copy_plain,
        "sink.table_rows_per_s": table_rate,
        "sink.same_rows_copy_rows_per_s": copy_same,
        "sink.table_ratio": table_rate / copy_same,
        "sink.table_rows": sum(stored.values()),
        "sink.snapshots": count,
        "sink.coins": coins,
        "sink.batch_size": batch_size,
        "sink.batches": result.batches,
        "sink.seconds": result.seconds,
        "sink.poll_decode_share": result.poll_s / result.seconds,
        "sink.write_share": result.write_s / result.seconds,
        "sink.commit_share": result.commit_s / result.seconds,
        "sink.produce_msgs_per_s": produced / produce_s,
    }
