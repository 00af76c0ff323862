"""``cryptoviz backfill`` against the real simulator into SQLite: candle rows and values, idempotence, resume
after an interruption, live rows untouched, the source's limits, the shared request budget, the demo's past."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from rich.console import Console
from typer.testing import CliRunner

from cryptoviz import cli
from cryptoviz.backfill import (
    BACKFILL_SHARE,
    Backfill,
    CoinGeckoHistory,
    Fetch,
    Job,
    Report,
    Target,
    backfill,
    covered,
    demo_history,
    plan_gaps,
)
from cryptoviz.config import Settings, load_settings
from cryptoviz.errors import TerminalSourceError
from cryptoviz.simulator import Simulator, start_simulator
from cryptoviz.sources.coingecko_history import History, HistoryRangeError
from cryptoviz.sources.http import HttpClient
from cryptoviz.store import migrate
from cryptoviz.store.candles import bucket_of
from cryptoviz.store.engine import make_engine
from cryptoviz.store.gaps import Gap
from cryptoviz.store.sink import open_sink
from tests.factories import snapshot

FROZEN = 3600.0  # the simulated market stands still for the length of a test
COLUMNS = "currency_id, bucket, open, high, low, close, open_at, close_at, market_cap, volume_24h, n, n_backfill, sources"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with start_simulator(faults="none", seed=7, step_seconds=FROZEN) as running:
        yield running


def make_db(path: Path) -> tuple[sa.Engine, str]:
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    return make_engine(url), url


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """The command line configures logging on streams the test runner closes: put the root logger back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[sa.Engine, str]]:
    engine, url = make_db(tmp_path / "backfill.db")
    yield engine, url
    engine.dispose()


def settings_of(simulator: Simulator, url: str, **more: Any) -> Settings:
    return load_settings(**simulator.settings_overrides(), database_url=url, **more)


def rows(engine: sa.Engine, table: str, coin: str | None = None) -> list[tuple[Any, ...]]:
    where = f" WHERE currency_id = '{coin}'" if coin else ""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT {COLUMNS} FROM {table}{where} ORDER BY 1, 2"))]


def count(engine: sa.Engine, table: str, coin: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE currency_id = :c"), {"c": coin})
                   .scalar_one())


def chart_prices(simulator: Simulator, coin: str, days: int) -> dict[datetime, float]:
    with httpx.Client(base_url=simulator.url) as http:
        doc = http.get(f"/api/v3/coins/{coin}/market_chart", params={"vs_currency": "usd", "days": days}).json()
    return {datetime.fromtimestamp(ms / 1000, UTC): price for ms, price in doc["prices"]}


def stamp(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# --- what is written ---------------------------------------------------------------------------------


def test_hourly_points_fill_the_1h_and_1d_tiers_with_the_simulators_past(sim: Simulator,
                                                                         db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    report = backfill(engine, settings_of(sim, url), days=3, coins="bitcoin,ethereum,tether", throttle=False)
    assert [r.status for r in report.results] == ["done"] * 3 and report.error is None
    assert report.requests == 3 and report.points == 3 * 73
    prices = chart_prices(sim, "bitcoin", 3)
    hourly = rows(engine, "candles_1h", "bitcoin")
    assert 72 <= len(hourly) <= 73 and count(engine, "candles_5m", "bitcoin") == 0
    assert 3 <= count(engine, "candles_1d", "bitcoin") <= 4
    checked = 0
    for coin, bucket, open_, high, low, close, open_at, _close_at, cap, volume, n, n_backfill, sources in hourly[:-1]:
        at = stamp(bucket)
        assert (coin, n, n_backfill, sources) == ("bitcoin", 0, 1, "coingecko")
        assert stamp(open_at) == at  # the hourly point sits on the hour
        if at in prices:
            assert open_ == high == low == close == prices[at]
            assert cap == pytest.approx(prices[at] * 19.7e6) and volume > 0
            checked += 1
    assert checked >= 70
    last = hourly[-1]
    assert last[5] == sim.market.price("bitcoin") and last[11] == 2  # the hour's point and "now"
    daily = rows(engine, "candles_1d", "bitcoin")
    full_day = daily[1]  # a whole day: 24 hourly points
    points = sorted((t, p) for t, p in prices.items() if bucket_of(t, 86_400) == stamp(full_day[1]))
    assert full_day[11] == 24 and full_day[2] == points[0][1] and full_day[5] == points[-1][1]
    assert full_day[3] == max(p for _, p in points) and full_day[4] == min(p for _, p in points)
    assert report.written() == {"5m": 0, "1h": sum(count(engine, "candles_1h", c) for c in ("bitcoin", "ethereum",
                                                                                            "tether")),
                                "1d": sum(count(engine, "candles_1d", c) for c in ("bitcoin", "ethereum", "tether"))}


def test_five_minute_points_fill_every_tier(sim: Simulator, db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    report = backfill(engine, settings_of(sim, url), days=1, coins="solana", throttle=False)
    assert report.points == 289
    assert 288 <= count(engine, "candles_5m", "solana") <= 289
    assert 24 <= count(engine, "candles_1h", "solana") <= 25
    assert 1 <= count(engine, "candles_1d", "solana") <= 2
    assert max(r[11] for r in rows(engine, "candles_1h", "solana")) == 12  # twelve 5-minute points an hour


def test_running_twice_gives_the_same_rows(sim: Simulator, db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    settings = settings_of(sim, url)
    first = backfill(engine, settings, days=2, coins="bitcoin,ethereum", throttle=False)
    before = {t: rows(engine, t) for t in ("candles_5m", "candles_1h", "candles_1d")}
    again = backfill(engine, settings, days=2, coins="bitcoin,ethereum", throttle=False)
    assert [r.reason for r in again.results] == ["already covered"] * 2 and again.requests == 0
    # fetched and written again (no coverage check): the same rows still
    jobs = [Job(Target(c, c), [Fetch(2, 3600)]) for c in ("bitcoin", "ethereum")]
    with Backfill(engine, settings, throttle=False) as run:
        rewritten = run.run(jobs, Report("coingecko", 2))
    assert rewritten.written() == first.written()
    # but for the last point, "now", which moved on (the current bucket of each tier)
    after = {t: rows(engine, t) for t in before}
    for table, width in (("candles_1h", 3600), ("candles_1d", 86_400)):
        current = bucket_of(datetime.now(UTC), width)
        assert [r for r in after[table] if stamp(r[1]) < current] == \
            [r for r in before[table] if stamp(r[1]) < current]
        assert len(after[table]) == len(before[table])


def test_an_interrupted_run_resumes_where_it_stopped(sim: Simulator, tmp_path: Path) -> None:
    coins = "bitcoin,ethereum,tether,solana,ripple"
    stop = threading.Event()

    class Interrupted(CoinGeckoHistory):
        fetched = 0

        def fetch(self, target: Target, days: int, now: datetime) -> History:
            history = super().fetch(target, days, now)
            Interrupted.fetched += 1
            if Interrupted.fetched == 2:
                stop.set()  # Ctrl+C while the second coin is fetched
            return history

    engine, url = make_db(tmp_path / "interrupted.db")
    settings = settings_of(sim, url)
    with HttpClient(settings) as http, Backfill(engine, settings, Interrupted(settings, http), throttle=False,
                                                stop=stop) as run:
        jobs, report = run.prepare(days=2, coins=coins)
        first = run.run(jobs, report)
    assert first.interrupted and first.left == 3
    assert [r.coin for r in first.of("done")] == ["bitcoin", "ethereum"]
    resumed = backfill(engine, settings, days=2, coins=coins, throttle=False)
    assert {r.coin: r.reason or r.status for r in resumed.results} == {
        "bitcoin": "already covered", "ethereum": "already covered", "tether": "done", "solana": "done",
        "ripple": "done"}
    assert not resumed.interrupted and resumed.requests == 3
    # the same rows as a run never interrupted (away from the window's edges, which move with the clock)
    whole, whole_url = make_db(tmp_path / "whole.db")
    backfill(whole, settings_of(sim, whole_url), days=2, coins=coins, throttle=False)
    edge = datetime.now(UTC) - timedelta(hours=2)
    middle = [(t, [r for r in rows(e, t) if stamp(r[1]) < edge and stamp(r[1]) > edge - timedelta(hours=40)])
              for e in (engine, whole) for t in ("candles_1h",)]
    assert middle[0][1] == middle[1][1] and len(middle[0][1]) >= 5 * 39


def test_live_rows_are_never_overwritten(sim: Simulator, db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    live_at = (datetime.now(UTC) - timedelta(hours=10)).replace(minute=6, second=0, microsecond=0)
    open_sink(engine).write([snapshot("bitcoin", price=1.0 + m, at=live_at, minutes=m) for m in range(4)])
    live = {t: rows(engine, t, "bitcoin") for t in ("candles_5m", "candles_1h", "candles_1d")}
    assert [len(v) for v in live.values()] == [1, 1, 1]
    backfill(engine, settings_of(sim, url), days=3, coins="bitcoin", throttle=False)
    after = {t: rows(engine, t, "bitcoin") for t in live}
    for table, (row,) in live.items():
        assert row in after[table]  # untouched: n = 4, prices 1..4
    assert live["candles_1h"][0][10] == 4 and len(after["candles_1h"]) >= 72
    assert all(r[10] == 0 and r[11] >= 1 for r in after["candles_1h"] if r != live["candles_1h"][0])
    # a later live row folds into a backfilled bucket: counted beside the backfilled point
    later = datetime.now(UTC) - timedelta(hours=20)
    open_sink(engine).write([snapshot("bitcoin", price=5.0, at=later)])
    merged = next(r for r in rows(engine, "candles_1h", "bitcoin") if stamp(r[1]) == bucket_of(later, 3600))
    assert (merged[10], merged[11], merged[4]) == (1, 1, 5.0)


# --- coins, sources and their limits -------------------------------------------------------------------


def test_an_empty_database_takes_the_sources_top_list_and_logs_progress(
        sim: Simulator, db: tuple[sa.Engine, str], caplog: pytest.LogCaptureFixture) -> None:
    engine, url = db
    caplog.set_level(logging.INFO, logger="cryptoviz.backfill")
    report = backfill(engine, settings_of(sim, url), days=2, coins="top:12", throttle=False)
    done = [r.coin for r in report.of("done")]
    assert len(done) == 12 and set(done) >= {"bitcoin", "ethereum", "tether"}
    assert report.requests == 13  # the list, then a chart per coin
    lines = [r.getMessage() for r in caplog.records if "coins (" in r.getMessage()]
    assert lines == ["backfill from coingecko: 10/12 coins (10 done, 0 skipped, 0 failed)",
                     "backfill from coingecko: 12/12 coins (12 done, 0 skipped, 0 failed)"]


def test_stored_coins_go_by_market_cap(sim: Simulator, db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    open_sink(engine).write([snapshot("ethereum", price=10.0), snapshot("solana", price=1.0),
                             snapshot("bitcoin", price=100.0)])
    report = backfill(engine, settings_of(sim, url), days=2, coins="top:2", throttle=False)
    assert [r.coin for r in report.results] == ["bitcoin", "ethereum"] or \
        sorted(r.coin for r in report.results) == ["bitcoin", "ethereum"]


def test_a_coin_the_source_does_not_know_is_skipped_and_the_others_go_on(sim: Simulator,
                                                                          db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    report = backfill(engine, settings_of(sim, url), days=2, coins="no-such-coin,bitcoin", throttle=False)
    assert {r.coin: (r.status, r.reason) for r in report.results} == {
        "no-such-coin": ("skipped", "unknown to coingecko"), "bitcoin": ("done", "")}


def test_more_than_a_year_is_a_clear_message(sim: Simulator, db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    with pytest.raises(HistoryRangeError, match="at most the past 365 days, 400 were asked; use --days 365 or less"):
        backfill(engine, settings_of(sim, url), days=400, coins="bitcoin")
    # the API's own refusal (its limit changed, or another source asked it) stops the run the same way
    with Backfill(engine, settings_of(sim, url), throttle=False) as run:
        report = run.run([Job(Target("bitcoin", "bitcoin"), [Fetch(366, 86_400)])], Report("coingecko", 366))
    assert isinstance(report.error, HistoryRangeError)


def test_the_cli_says_it_in_one_line(sim: Simulator, db: tuple[sa.Engine, str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _engine, url = db
    monkeypatch.setenv("CRYPTOVIZ_COINGECKO_BASE_URL", f"{sim.url}/api/v3")
    result = CliRunner().invoke(cli.app, ["backfill", "--days", "400", "--database-url", url])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: coingecko: the keyless and demo API serve at most the past 365 days, 400 were asked; use --days 365 "
        "or less"]


def test_a_free_coinmarketcap_key_is_refused_in_one_line_naming_the_plan(
        sim: Simulator, db: tuple[sa.Engine, str], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, url = db
    report = backfill(engine, settings_of(sim, url), source="coinmarketcap", days=2, coins="top:3", throttle=False)
    assert isinstance(report.error, TerminalSourceError) and not report.of("done")
    for name, value in sim.settings_overrides().items():
        monkeypatch.setenv(f"CRYPTOVIZ_{name.upper()}", value)
    result = CliRunner().invoke(cli.app, ["backfill", "--source", "coinmarketcap", "--coins", "top:3",
                                          "--database-url", url])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: coinmarketcap: historical quotes are not in this API key's plan (error 1006: ")
    assert "free Basic plan" in line and "Hobbyist" in line


def test_coinmarketcap_on_a_paid_plan_fills_the_same_past(tmp_path: Path) -> None:
    with start_simulator(faults="none", seed=7, step_seconds=FROZEN, cmc_historical=True) as paid:
        engine, url = make_db(tmp_path / "cmc.db")
        report = backfill(engine, settings_of(paid, url), source="coinmarketcap", days=2, coins="top:2",
                          throttle=False)
        prices = chart_prices(paid, "bitcoin", 2)
    assert [r.coin for r in report.of("done")] == ["bitcoin", "ethereum"] or \
        sorted(r.coin for r in report.of("done")) == ["bitcoin", "ethereum"]
    hourly = rows(engine, "candles_1h", "bitcoin")
    assert len(hourly) >= 47 and {r[12] for r in hourly} == {"coinmarketcap"}
    assert sum(1 for r in hourly if stamp(r[1]) in prices and r[2] == prices[stamp(r[1])]) >= 46


def test_backfill_takes_half_of_the_shared_budget(sim: Simulator, db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    settings = settings_of(sim, url)
    with HttpClient(settings) as shared:  # the collector's client in a process that does both
        live = shared.set_rate_limit("coingecko", 10, 2)
        run = Backfill(engine, settings, http=shared)
        assert shared.limiter("coingecko") is live  # one limiter counts both
        assert run.gate is not None and run.gate.rate_per_minute == 10 * BACKFILL_SHARE
        jobs, report = run.prepare(days=2, coins="bitcoin")
        run.run(jobs, report)
        run.close()  # leaves the shared client open
        assert live.tokens < 1.5  # the backfill's request was counted by the live limiter
        assert run.gate.try_acquire() == pytest.approx(60 / (10 * BACKFILL_SHARE), rel=0.05)  # the next waits 12 s
        assert shared.get("coingecko", f"{sim.url}/api/v3/ping").status_code == 200
    with Backfill(engine, settings) as standalone:
        own = standalone.http.limiter("coingecko")
        assert own is not None and own.rate_per_minute == 10


def test_coverage_says_what_is_already_there(sim: Simulator, db: tuple[sa.Engine, str]) -> None:
    engine, url = db
    backfill(engine, settings_of(sim, url), days=2, coins="bitcoin", throttle=False)
    now = datetime.now(UTC)
    assert covered(engine, ["bitcoin", "ethereum"], Fetch(2, 3600), now) == {"bitcoin"}
    assert covered(engine, ["bitcoin"], Fetch(10, 3600), now) == set()  # a longer range is not covered
    assert covered(engine, ["bitcoin"], Fetch(1, 300), now) == set()  # nor a finer tier


def test_gap_plans_use_the_best_granularity_for_their_age() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    gaps = [Gap("a", now - timedelta(hours=5), now - timedelta(hours=4)),
            Gap("a", now - timedelta(days=3, hours=5), now - timedelta(days=3, hours=1)),
            Gap("a", now - timedelta(days=10), now - timedelta(days=9, hours=20)),
            Gap("b", now - timedelta(days=120, hours=3), now - timedelta(days=118)),
            Gap("b", now - timedelta(days=3, minutes=50), now - timedelta(days=3, minutes=5)),
            Gap("c", now - timedelta(days=400), now - timedelta(days=399))]
    plans, skipped = plan_gaps(gaps, now, 365)
    assert {c: [(f.days, f.step, len(f.keep)) for f in fetches] for c, fetches in plans.items()} == {
        "a": [(1, 300, 1), (11, 3600, 2)], "b": [(122, 86_400, 1)]}
    assert len(skipped) == 2
    assert "shorter than one 1h bucket" in skipped[0] and "older than the 365 days" in skipped[1]


# --- the command line and the demo ---------------------------------------------------------------------


def test_the_command_prints_a_summary_and_a_dry_run_plans(sim: Simulator, db: tuple[sa.Engine, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    engine, url = db
    open_sink(engine).write([snapshot("bitcoin"), snapshot("ethereum")])
    monkeypatch.setenv("CRYPTOVIZ_COINGECKO_BASE_URL", f"{sim.url}/api/v3")
    console = Console(record=True, width=200)
    monkeypatch.setattr(cli, "console", console)
    dry = CliRunner().invoke(cli.app, ["backfill", "--days", "2", "--dry-run", "--database-url", url])
    assert dry.exit_code == 0, dry.output
    assert "would backfill 2 coin(s) from coingecko, 2 day(s): 2 request(s), about 24s at 5 a minute" in \
        console.export_text()
    assert count(engine, "candles_1h", "bitcoin") == 1  # only the live row's candle: nothing written
    result = CliRunner().invoke(cli.app, ["backfill", "--days", "2", "--coins", "bitcoin", "--database-url", url])
    assert result.exit_code == 0, result.output
    text = console.export_text()
    assert "backfill from coingecko, 2 day(s): 1 coin(s)" in text
    assert "coins done" in text and "candles written 1h" in text
    assert count(engine, "candles_1h", "bitcoin") >= 48


def test_the_demo_opens_on_its_simulators_past(tmp_path: Path) -> None:
    with start_simulator(faults="demo", seed=42, step_seconds=FROZEN) as demo:
        url = f"sqlite:///{tmp_path / 'demo.db'}"
        settings = settings_of(demo, url)
        report = demo_history(settings, ["bitcoin", "ethereum", "tether"])
        again = demo_history(settings, ["bitcoin", "ethereum", "tether"])
    assert report is not None and len(report.of("done")) == 3 and report.requests == 6
    assert again is not None and [r.reason for r in again.results] == ["already covered"] * 3
    engine = make_engine(url)
    assert count(engine, "candles_1h", "bitcoin") >= 45  # 48 hours; a malformed point or three rejected
    assert count(engine, "candles_5m", "bitcoin") >= 280
    engine.dispose()


def test_ctrl_c_finishes_the_coin_in_hand_and_the_next_run_resumes(
        sim: Simulator, db: tuple[sa.Engine, str], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, url = db
    open_sink(engine).write([snapshot("bitcoin", price=3.0), snapshot("ethereum", price=2.0),
                             snapshot("solana", price=1.0)])
    monkeypatch.setenv("CRYPTOVIZ_COINGECKO_BASE_URL", f"{sim.url}/api/v3")
    console = Console(record=True, width=200)
    monkeypatch.setattr(cli, "console", console)
    # the first coin goes at once, the second waits its turn (12 s at half the keyless budget): Ctrl+C then
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        result = CliRunner().invoke(cli.app, ["backfill", "--days", "2", "--coins", "top:3", "--database-url", url])
    finally:
        timer.cancel()
    assert result.exit_code == 130, result.output
    text = console.export_text()
    assert "interrupted: 2 coin(s) left; run the same command again to resume" in text
    assert count(engine, "candles_1h", "bitcoin") >= 48 and count(engine, "candles_1h", "ethereum") == 1
    resumed = backfill(engine, settings_of(sim, url), days=2, coins="top:3", throttle=False)
    assert {r.coin: r.reason or r.status for r in resumed.results} == {
        "bitcoin": "already covered", "ethereum": "done", "solana": "done"}
