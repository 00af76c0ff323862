"""Kafka -> PostgreSQL sink: snapshots/s through the real consumer path, beside a raw COPY of the same rows.

The stream is produced into a fresh topic first (not timed), then drained by ``writer_loop.run_writer``
over a ``KafkaConsumer`` and a ``SnapshotWriter``, as ``cryptoviz consume`` runs them (consume, decode,
validate, upsert ``currencies`` and ``currency_data``, insert ``currency_data_history`` and
``source_quotes``, commit offsets), into a fresh database at the latest schema.

Baseline: the same history rows, already built as tuples, sent with one binary ``COPY`` (psycopg
``write_row``) in one transaction into a table of the same shape (``LIKE currency_data_history INCLUDING
ALL``: same columns, primary key and index, plus the same foreign key to ``currencies``). That is the fastest
way to store these rows from Python on this machine; the figure without the foreign key is reported too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC
from typing import Any

import psycopg

from benchmarks.common import Services, fresh_database, fresh_topic, group_name, plain_pg_url, progress
from benchmarks.kafka_io import drain, produce, stream
from cryptoviz.bus.kafka import KafkaConsumer
from cryptoviz.models import CoinSnapshot
from cryptoviz.store.engine import make_engine
from cryptoviz.store.writer import SnapshotWriter

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
            result = drain(consumer, SnapshotWriter(engine), count, batch_size=batch_size,
                           batch_timeout=batch_timeout)
        finally:
            consumer.close()
            engine.dispose()
        history, quotes, current = (_count(url, t) for t in ("currency_data_history", "source_quotes",
                                                             "currency_data"))
        if history != count or quotes != 2 * count or current != coins:
            raise RuntimeError(f"sink: {history} history rows, {quotes} source quotes, {current} current rows "
                               f"for {count} snapshots over {coins} coins")
        rate = result.stored / result.seconds
        progress(f"sink: {rate:,.0f} snapshots/s (poll+decode {result.poll_s:.1f}s, write {result.write_s:.1f}s, "
                 f"commit {result.commit_s:.1f}s); raw COPY baseline next")
        rows = history_rows(stream(count, coins))
        copy_fk = copy_baseline(url, rows, foreign_key=True)
        copy_plain = copy_baseline(url, rows, foreign_key=False)
    progress(f"sink: raw COPY {copy_fk:,.0f} rows/s with the foreign key, {copy_plain:,.0f} without; "
             f"ratio {rate / copy_fk:.3f}")
    return {
        "sink.rows_per_s": rate,
        "sink.copy_rows_per_s": copy_fk,
        "sink.ratio": rate / copy_fk,
        "sink.copy_nofk_rows_per_s": copy_plain,
        "sink.ratio_nofk": rate / copy_plain,
        "sink.table_rows_per_s": (history + quotes) / result.seconds,
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
