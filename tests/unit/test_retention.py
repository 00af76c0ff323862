"""Retention on SQLite: raw rows and 5-minute candles go after their limits (in chunks), 1-hour and 1-day
candles stay; a dry run counts without removing; the upkeep thread runs at once and then on its own."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cryptoviz.config import load_settings
from cryptoviz.errors import StoreError
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.retention import PruneReport, UpkeepThread, upkeep
from cryptoviz.store.sink import open_sink
from tests.factories import snapshot

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    url = f"sqlite:///{tmp_path / 'retention.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sink = open_sink(engine)
    # 3 coins: one observation a minute for 10 minutes, 400 days ago, 40 days ago and now
    for days in (400, 40, 0):
        at = NOW - timedelta(days=days)
        sink.write([snapshot(f"coin-{c}", at=at, minutes=m) for c in range(3) for m in range(10)])
    return engine


def test_raw_rows_and_5m_candles_go_after_their_limits_the_rest_stays(engine: sa.Engine) -> None:
    settings = load_settings(retention_raw="30d", retention_5m="1y")
    before = {t: count(engine, t) for t in ("currency_data_history", "source_quotes", "candles_5m", "candles_1h",
                                             "candles_1d")}
    assert before == {"currency_data_history": 90, "source_quotes": 180, "candles_5m": 18, "candles_1h": 9,
                      "candles_1d": 9}
    dry = upkeep(engine, settings, now=NOW, dry_run=True, chunk=7)
    assert dry.rows == {"currency_data_history": 60, "source_quotes": 120, "candles_5m": 6}
    assert {t: count(engine, t) for t in before} == before  # nothing removed
    done = upkeep(engine, settings, now=NOW, chunk=7)  # small chunks: several short transactions
    assert done.rows == dry.rows and done.total_rows == 186
    assert count(engine, "currency_data_history") == 30 and count(engine, "source_quotes") == 60
    assert count(engine, "candles_5m") == 12  # the 40-day-old ones are within a year
    assert count(engine, "candles_1h") == 9 and count(engine, "candles_1d") == 9  # forever
    assert upkeep(engine, settings, now=NOW).total_rows == 0


def test_a_limit_switched_off_keeps_everything(engine: sa.Engine) -> None:
    report = upkeep(engine, load_settings(retention_raw="off", retention_5m="off"), now=NOW)
    assert report.total_rows == 0 and report.cutoffs["currency_data_history"] is None
    assert count(engine, "currency_data_history") == 90


def test_the_upkeep_thread_runs_at_once_then_every_interval_and_survives_a_failure(engine: sa.Engine) -> None:
    calls: list[float] = []
    failed = threading.Event()

    def job(_engine: sa.Engine, _settings: object) -> PruneReport:
        calls.append(1.0)
        if len(calls) == 2:
            failed.set()
            raise StoreError("upkeep of the test database failed: disk I/O error")
        return PruneReport(dry_run=False)

    stop = threading.Event()
    thread = UpkeepThread(engine, load_settings(), stop, every=0.05, job=job)
    thread.start()
    assert failed.wait(5)
    while len(calls) < 4:
        threading.Event().wait(0.02)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and thread.runs >= 3
