"""Embedded mode: snapshots/s into SQLite through the in-process bus (MemoryBus + run_writer + open_sink).

Baseline beside it: a raw ``sqlite3`` ``executemany`` of the same history rows into a table of the same
shape, in one transaction, on the same kind of file (the machine's limit for SQLite).
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import progress
from benchmarks.kafka_io import stream
from cryptoviz.bus.memory import MemoryBus
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from cryptoviz.writer_loop import run_writer


def run(count: int, coins: int, batch_size: int, batch_timeout: float) -> dict[str, Any]:
    progress(f"embedded: {count:,} snapshots over {coins:,} coins into SQLite via MemoryBus")
    with tempfile.TemporaryDirectory(prefix="cv-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'embedded.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            bus = MemoryBus(maxsize=count + 1)
            bus.publisher().publish(list(stream(count, coins)))  # encoded as on Kafka
            bus.close()
            started = time.perf_counter()
            stored = run_writer(bus.consumer(), open_sink(engine), threading.Event(), batch_size=batch_size,
                                batch_timeout=batch_timeout)
            seconds = time.perf_counter() - started
            with engine.connect() as conn:
                history = conn.exec_driver_sql("SELECT count(*) FROM currency_data_history").scalar_one()
        finally:
            engine.dispose()
        if stored != count or history != count:
            raise RuntimeError(f"embedded: {stored} stored, {history} history rows, {count} expected")
        raw = _raw_sqlite(Path(tmp) / "raw.db", count, coins)
    rate = count / seconds
    progress(f"embedded: {rate:,.0f} snapshots/s; raw sqlite3 executemany {raw:,.0f} rows/s")
    return {"embedded.rows_per_s": rate, "embedded.snapshots": count, "embedded.seconds": seconds,
            "embedded.batch_size": batch_size, "embedded.raw_rows_per_s": raw,
            "embedded.ratio": rate / raw}


_HISTORY_TWIN = """
CREATE TABLE history_copy (
    currency_id VARCHAR(200) NOT NULL, observed_at DATETIME NOT NULL, rank INTEGER, price FLOAT NOT NULL,
    market_cap FLOAT, volume_24h FLOAT, change_1h FLOAT, change_24h FLOAT, change_7d FLOAT,
    confidence FLOAT NOT NULL, n_sources SMALLINT NOT NULL, sources VARCHAR(200) NOT NULL,
    currency VARCHAR(10) NOT NULL, PRIMARY KEY (currency_id, observed_at)
)"""


def _raw_sqlite(path: Path, count: int, coins: int) -> float:
    """Rows/s of one ``executemany`` of the history rows (pre-built tuples) into a same-shape table."""
    rows = [(s.coin_id, s.observed_at.isoformat(sep=" "), s.rank, s.price, s.market_cap, s.volume_24h, s.change_1h,
             s.change_24h, s.change_7d, s.confidence, 2, "coingecko,coinmarketcap", s.currency)
            for s in stream(count, coins)]
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_HISTORY_TWIN)
        conn.execute("CREATE INDEX ix_history_copy_observed_at ON history_copy (observed_at)")
        started = time.perf_counter()
        with conn:
            conn.executemany(f"INSERT INTO history_copy VALUES ({', '.join('?' * 13)})", rows)
        return count / (time.perf_counter() - started)
    finally:
        conn.close()
