"""Backfill and gaps on a real PostgreSQL (partitioned history, the set-based sink): candles from the
simulator's past, twice the same rows, live candles untouched and merged into later, gaps found and filled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cryptoviz.backfill import Backfill, Fetch, Job, Report, Target, backfill
from cryptoviz.config import Settings, load_settings
from cryptoviz.simulator import Simulator, start_simulator
from cryptoviz.store import migrate
from cryptoviz.store.candles import bucket_of
from cryptoviz.store.engine import make_engine
from cryptoviz.store.gaps import find_gaps
from cryptoviz.store.sink import open_sink
from tests.factories import snapshot

pytestmark = pytest.mark.integration

COLUMNS = "currency_id, bucket, open, high, low, close, open_at, close_at, market_cap, volume_24h, n, n_backfill, sources"
MIN = timedelta(minutes=20)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with start_simulator(faults="none", seed=11, step_seconds=3600.0) as running:
        yield running


@pytest.fixture
def pg(pg_database: str) -> Iterator[sa.Engine]:
    migrate.upgrade(pg_database)
    engine = make_engine(pg_database)
    yield engine
    engine.dispose()


def settings_of(simulator: Simulator, engine: sa.Engine) -> Settings:
    return load_settings(**simulator.settings_overrides(),
                         database_url=engine.url.render_as_string(hide_password=False))


def rows(engine: sa.Engine, table: str, coin: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            f"SELECT {COLUMNS} FROM {table} WHERE currency_id = :c ORDER BY bucket"), {"c": coin})]


def test_backfill_into_postgresql(sim: Simulator, pg: sa.Engine) -> None:
    settings = settings_of(sim, pg)
    report = backfill(pg, settings, days=3, coins="bitcoin,ethereum", throttle=False)
    fine = backfill(pg, settings, days=1, coins="solana", throttle=False)
    assert len(report.of("done")) == 2 and len(fine.of("done")) == 1
    with httpx.Client(base_url=sim.url) as http:
        doc = http.get("/api/v3/coins/bitcoin/market_chart", params={"vs_currency": "usd", "days": 3}).json()
    prices = {datetime.fromtimestamp(ms / 1000, UTC): p for ms, p in doc["prices"][:-1]}
    hourly = rows(pg, "candles_1h", "bitcoin")
    assert 72 <= len(hourly) <= 73
    matched = [r for r in hourly if r[1] in prices]
    assert len(matched) >= 70
    for r in matched[:-1]:
        assert r[2] == r[3] == r[4] == r[5] == prices[r[1]]
        assert (r[10], r[11], r[12]) == (0, 1, "coingecko")
    assert 288 <= len(rows(pg, "candles_5m", "solana")) <= 289
    assert rows(pg, "candles_5m", "bitcoin") == []

    # twice: covered, then rewritten without the coverage check: the same rows (but for "now")
    before = rows(pg, "candles_1h", "bitcoin")
    assert [r.reason for r in backfill(pg, settings, days=3, coins="bitcoin", throttle=False).results] == [
        "already covered"]
    with Backfill(pg, settings, throttle=False) as run:
        run.run([Job(Target("bitcoin", "bitcoin"), [Fetch(3, 3600)])], Report("coingecko", 3))
    current = bucket_of(datetime.now(UTC), 3600)
    after = rows(pg, "candles_1h", "bitcoin")
    assert [r for r in after if r[1] < current] == [r for r in before if r[1] < current]


def test_live_candles_are_never_overwritten_and_later_rows_merge(sim: Simulator, pg: sa.Engine) -> None:
    live_at = (datetime.now(UTC) - timedelta(hours=12)).replace(minute=1, second=0, microsecond=0)
    sink = open_sink(pg)
    sink.write([snapshot("bitcoin", price=2.0 + m, at=live_at, minutes=m) for m in range(3)])
    live = {t: rows(pg, t, "bitcoin") for t in ("candles_5m", "candles_1h", "candles_1d")}
    backfill(pg, settings_of(sim, pg), days=2, coins="bitcoin", throttle=False)
    for table, held in live.items():
        assert set(held) <= set(rows(pg, table, "bitcoin"))
    later = bucket_of(datetime.now(UTC) - timedelta(hours=30), 3600) + timedelta(minutes=30)
    backfilled = next(r for r in rows(pg, "candles_1h", "bitcoin") if r[1] == bucket_of(later, 3600))
    sink.write([snapshot("bitcoin", price=9.0, at=later)])  # the PostgreSQL sink's set-based merge
    merged = next(r for r in rows(pg, "candles_1h", "bitcoin") if r[1] == bucket_of(later, 3600))
    assert (merged[10], merged[11]) == (1, 1)
    assert merged[2] == backfilled[2] and merged[5] == 9.0  # the backfilled point opens, the live row closes
    assert merged[12] == "coingecko,coinmarketcap"


def test_gaps_found_and_filled_on_postgresql(sim: Simulator, pg: sa.Engine) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    hour = timedelta(hours=1)
    holes = {"bitcoin": (now - 40 * hour - timedelta(minutes=3), now - 35 * hour),
             "ethereum": (now - 6 * hour, now - 4 * hour - timedelta(minutes=2))}
    snaps = []
    for coin, (a, b) in holes.items():
        at = now - 3 * 24 * hour
        while at < now:
            if not a < at < b:
                snaps.append(snapshot(coin, at=at))
            at += timedelta(minutes=5)
    open_sink(pg).write(snaps)
    found = find_gaps(pg, since=now - timedelta(days=7), min_length=MIN)
    assert [g.coin for g in found] == ["bitcoin", "ethereum"]
    for gap in found:
        a, b = holes[gap.coin]
        assert gap.start <= a < b <= gap.end and gap.end - gap.start < b - a + timedelta(minutes=10)
    assert find_gaps(pg, since=now - timedelta(days=7), min_length=MIN, coins=["ethereum"], limit=5) == found[1:]

    report = backfill(pg, settings_of(sim, pg), days=7, gaps=True, throttle=False)
    assert report.gaps_found == 2 and len(report.of("done")) == 2
    assert find_gaps(pg, since=now - timedelta(days=7), min_length=MIN) == []
