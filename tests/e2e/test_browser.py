"""The built-in dashboard in headless Chromium: real pipeline data, a drawn chart, live updates over SSE.

The market simulator feeds the embedded pipeline (in-process bus, SQLite) for some cycles; the API
serves that database; Chromium (Debian's, driven by Playwright) opens the page. While the page stays
open the pipeline runs more cycles and one more observation is written: the page must show them
without a reload. The screenshot goes to a temporary directory, kept and printed when the test fails;
``make screenshot`` copies it to docs/img/dashboard.png (``DASHBOARD_SCREENSHOT``).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from cryptoviz.api.app import create_app
from cryptoviz.api.server import ServerHandle, serve_in_thread
from cryptoviz.config import Settings, load_settings
from cryptoviz.models import CoinSnapshot, SourceValue
from cryptoviz.runtime import Pipeline
from cryptoviz.simulator import Simulator, start_simulator
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.registry import build_sources
from cryptoviz.store import migrate
from cryptoviz.store.candles import TIER_BY_NAME, Point, aggregate, write_backfill
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from cryptoviz.store.tables import currencies, currency_data, currency_data_history, source_quotes

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_TO = os.environ.get("DASHBOARD_SCREENSHOT")  # set by `make screenshot`; tests write no tracked file
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
FIRST_CYCLES = 30  # one a second: enough history for candles
LIVE_CYCLES = 3
TIMEOUT_MS = 20_000
NOT_SOURCES = {"95 % low", "95 % interval", "unverified"}  # the chart's other traces: the band and its marks


def chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    message = "Chromium is not installed (expected /usr/bin/chromium): run `make browser`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")


@dataclass
class Market:
    settings: Settings
    engine: sa.Engine
    simulator: Simulator
    http: HttpClient

    def run_cycles(self, n: int, on_write: Callable[[int], None] | None = None) -> int:
        sources, warnings = build_sources(self.settings, self.http)
        assert not warnings, warnings
        for source in sources:
            # The public APIs' request budgets do not apply to the local simulator: one cycle a second.
            self.http.set_rate_limit(source.name, 6000, 100)
        with Pipeline(self.settings, engine=self.engine, sources=sources, on_write=on_write) as pipeline:
            cycles = pipeline.run(max_cycles=n)
        assert cycles == n
        return pipeline.stored


@pytest.fixture
def market(tmp_path: Path) -> Iterator[Market]:
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    simulator = start_simulator(port=0, faults="outlier", seed=11)
    settings = load_settings(**simulator.settings_overrides(), database_url=url, interval=1.0,
                             sources="coingecko,coinmarketcap", top_n=len(simulator.coins))
    http = HttpClient(settings)
    try:
        yield Market(settings, engine, simulator, http)
    finally:
        http.close()
        simulator.stop()
        engine.dispose()


@pytest.fixture
def app(market: Market) -> FastAPI:
    return create_app(market.engine, market.settings, poll_interval=0.5)


@pytest.fixture
def server(app: FastAPI) -> Iterator[ServerHandle]:
    handle = serve_in_thread(app, port=0)
    try:
        yield handle
    finally:
        handle.stop()


def current(engine: sa.Engine, coin: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(currency_data, currencies.c.symbol, currencies.c.name)
                           .join(currencies, currencies.c.id == currency_data.c.currency_id)
                           .where(currency_data.c.currency_id == coin)).mappings().one()
    return dict(row)


def next_observation(engine: sa.Engine, coin: str, factor: float) -> CoinSnapshot:
    """The coin's current row, one second later, price times ``factor``."""
    row = current(engine, coin)
    observed = row["observed_at"].replace(tzinfo=UTC) + timedelta(seconds=1)  # stored as UTC
    price = round(row["price"] * factor, 2)
    base = CoinSnapshot(
        coin_id=coin, symbol=row["symbol"], name=row["name"], slug=coin, rank=row["rank"], price=price,
        market_cap=row["market_cap"], volume_24h=row["volume_24h"], change_1h=row["change_1h"],
        change_24h=row["change_24h"], change_7d=row["change_7d"], circulating_supply=row["circulating_supply"],
        total_supply=row["total_supply"], max_supply=row["max_supply"], confidence=row["confidence"],
        observed_at=observed, currency=row["currency"], coingecko_id=coin,
    )
    return replace(base, sources=(
        SourceValue("coingecko", coin, price, row["market_cap"], row["volume_24h"], observed),
        SourceValue("coinmarketcap", "1", round(price * 1.0005, 2), None, None, observed),
    ))


CHART_TAIL = """(() => { const d = document.getElementById('chart').data;
  const n = d[0].close.length;
  return {points: d[1].x.length, candles: n, close: d[0].close[n - 1], high: d[0].high[n - 1]}; })()"""
# Records the class changes of bitcoin's price cell (a flash lasts about a second) and marks its row.
WATCH_FLASHES = """(() => {
  window.__flashes = [];
  const row = document.querySelector('[data-testid=coin-row][data-id=bitcoin]');
  row.__watched = true;
  const cell = row.querySelector('[data-testid=price]');
  new MutationObserver(() => window.__flashes.push({cls: cell.className, text: cell.textContent}))
    .observe(cell, {attributes: true, attributeFilter: ['class']});
})()"""


def test_dashboard_shows_the_market_and_updates_live(market: Market, app: FastAPI, server: ServerHandle) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    stored = market.run_cycles(FIRST_CYCLES)
    assert stored >= FIRST_CYCLES * 150
    problems: list[str] = []
    shot = Path(tempfile.mkdtemp(prefix="cryptoviz-dashboard-")) / "dashboard.png"
    print(f"dashboard screenshot (kept when this test fails): {shot}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100}, device_scale_factor=1)
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type == "error" else None)
            page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}")
                    if "/api/stream" not in req.url else None)
            page.goto(f"{server.url}/")

            # The table: the simulator's coins, bitcoin selected by default.
            page.wait_for_function("document.querySelectorAll('[data-testid=coin-row]').length >= 100")
            assert page.locator("[data-testid=coin-count]").inner_text().endswith("coins")
            page.wait_for_selector("[data-testid=coin-row][data-id=bitcoin].selected")
            page.wait_for_function("document.querySelector('[data-testid=coin-title]').textContent === 'Bitcoin'")

            # The chart: candles, the consensus line and one line per source, drawn by Plotly.
            page.wait_for_function(
                "(() => { const c = document.getElementById('chart');"
                " return c && c.data && c.data.length >= 4 && c.querySelector('.main-svg'); })()")
            traces = page.evaluate(
                "document.getElementById('chart').data.map(t => ({type: t.type, name: t.name, n: (t.x || []).length}))")
            assert traces[0]["type"] == "candlestick" and traces[0]["n"] >= 5, traces
            assert traces[1]["name"] == "consensus" and traces[1]["n"] >= FIRST_CYCLES - 2, traces
            assert {t["name"] for t in traces[2:]} - NOT_SOURCES == {"coingecko", "coinmarketcap"}, traces
            assert page.locator("#chart .main-svg .trace path").count() > 0
            assert page.locator("[data-testid=source-values] .chip").count() == 2
            page.wait_for_function("document.querySelectorAll('[data-testid=source]').length === 2")
            assert "coins published" in page.locator("[data-testid=last-run]").inner_text()
            page.wait_for_selector("[data-testid=live-indicator][data-state=live]")

            # Sorting by a column header, both ways, then back to market cap.
            def column(name: str) -> list[float]:
                texts = page.locator(f"[data-testid=coin-row] td[data-col={name}]").all_inner_texts()
                return [float(t.replace("%", "").replace("+", "")) for t in texts if t != "—"]

            page.click("th[data-sort=change_24h]")
            values = column("change_24h")
            assert len(values) >= 100 and values == sorted(values, reverse=True)
            page.click("th[data-sort=change_24h]")
            values = column("change_24h")
            assert values == sorted(values)
            page.click("th[data-sort=market_cap]")
            assert page.locator("[data-testid=coin-row]").first.get_attribute("data-id") == "bitcoin"

            # Another coin: its own chart; then back to bitcoin.
            page.click("[data-testid=coin-row][data-id=ethereum]")
            page.wait_for_function("document.querySelector('[data-testid=coin-title]').textContent === 'Ethereum'")
            page.wait_for_function("document.getElementById('chart').data[1].y[0] < 100000")
            page.click("[data-testid=coin-row][data-id=bitcoin]")
            page.wait_for_function("document.querySelector('[data-testid=coin-title]').textContent === 'Bitcoin'")
            page.wait_for_function("document.getElementById('chart').data.length >= 4")

            # Live: the pipeline keeps collecting while the page is open; each committed batch wakes the stream
            # (the wiring of `cryptoviz run`).
            before_text = page.locator("[data-testid=last-update]").inner_text()
            before_time = page.locator("[data-testid=last-update]").get_attribute("datetime")
            before_points = page.evaluate("document.getElementById('chart').data[1].x.length")
            market.run_cycles(LIVE_CYCLES, on_write=app.state.live.notify)
            latest = current(market.engine, "bitcoin")["observed_at"]
            iso = latest.strftime("%Y-%m-%dT%H:%M:%S")
            page.wait_for_function(
                f"(document.querySelector('[data-testid=last-update]').getAttribute('datetime') || '')"
                f".startsWith('{iso}')")
            assert page.locator("[data-testid=last-update]").get_attribute("datetime") != before_time
            assert page.locator("[data-testid=last-update]").inner_text() != before_text
            page.wait_for_function(f"document.getElementById('chart').data[1].x.length >= {before_points + 1}")

            # One more observation with a known price: the table cell and the chart follow.
            last_price = current(market.engine, "bitcoin")["price"]
            page.wait_for_function(  # the cycles above have all arrived, in the line and in the last candle
                "(price) => { const d = document.getElementById('chart').data;"
                " return d[1].y[d[1].y.length - 1] === price && d[0].close[d[0].close.length - 1] === price; }",
                arg=last_price)
            chart_before = page.evaluate(CHART_TAIL)
            page.evaluate(WATCH_FLASHES)
            new = next_observation(market.engine, "bitcoin", 1.002)
            open_sink(market.engine).write([new])
            app.state.live.notify(1)
            expected = f"${new.price:,.2f}"
            cell = page.locator("[data-testid=coin-row][data-id=bitcoin] [data-testid=price]")
            page.wait_for_function(
                "(expected) => document.querySelector("
                "'[data-testid=coin-row][data-id=bitcoin] [data-testid=price]').textContent === expected", arg=expected)
            assert cell.inner_text() == expected
            # It flashed green (the price went up), in place: the same row, updated by a delta of the stream.
            flashes = page.evaluate("window.__flashes")
            assert {"cls": "num flash-up", "text": expected} in flashes, flashes
            assert page.evaluate("document.querySelector('[data-testid=coin-row][data-id=bitcoin]').__watched")
            assert page.locator("[data-testid=coin-row][data-id=bitcoin]").get_attribute("class") == "selected"
            # The chart gained the live point, and its last candle closes at the new price.
            page.wait_for_function(
                "(price) => { const d = document.getElementById('chart').data[1];"
                " return d.y[d.y.length - 1] === price; }", arg=new.price)
            chart_after = page.evaluate(CHART_TAIL)
            assert chart_after["points"] == chart_before["points"] + 1, (chart_before, chart_after)
            assert chart_after["close"] == new.price and chart_after["high"] >= new.price, chart_after
            assert chart_after["candles"] in (chart_before["candles"], chart_before["candles"] + 1)
            assert page.locator("[data-testid=coin-price]").inner_text() == expected
            assert page.locator("[data-testid=live-indicator]").get_attribute("data-state") == "live"
            assert re.fullmatch(r"stream \d+s ago", page.locator("[data-testid=stream-age]").inner_text())
            assert re.fullmatch(r"\d{1,2}:\d{2}:\d{2}( [AP]M)?", page.locator("[data-testid=last-update]").inner_text())

            page.wait_for_function("!document.querySelector('.flash-up, .flash-down')")  # the price flash is over
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    assert not problems, problems
    if SCREENSHOT_TO:
        target = ROOT / SCREENSHOT_TO  # relative to the repository (tests run in their own directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    shutil.rmtree(shot.parent)  # passed: nothing to look at


def test_dashboard_passes_the_token_to_its_requests_and_stream(tmp_path: Path) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    from tests.factories import T0, snapshot

    url = f"sqlite:///{tmp_path / 'token.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    open_sink(engine).write([snapshot(coin, price=p, minutes=m, symbol=coin[:3].upper())
                                  for m in range(3) for coin, p in (("bitcoin", 100.0 + m), ("ethereum", 10.0))])
    token = "t0ken/with+odd=chars"
    settings = load_settings(database_url=url, api_token=token)
    handle = serve_in_thread(create_app(engine, settings, poll_interval=0.3), port=0)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(f"{handle.url}/?coin=ethereum&token={token.replace('+', '%2B').replace('/', '%2F')}")
                page.wait_for_function("document.querySelectorAll('[data-testid=coin-row]').length === 2")
                page.wait_for_selector("[data-testid=live-indicator][data-state=live]")
                page.wait_for_function("document.querySelector('[data-testid=coin-title]').textContent === 'Ethereum'")
                page.wait_for_function("(() => { const c = document.getElementById('chart');"
                                       " return c && c.data && c.data.length >= 2; })()")
                assert "token" not in page.url and "coin=ethereum" in page.url  # kept for the tab, not in the bar
                # A new observation arrives through the authenticated stream.
                open_sink(engine).write([snapshot("bitcoin", price=123.25, minutes=5)])
                page.wait_for_function("document.querySelector("
                                       "'[data-testid=coin-row][data-id=bitcoin] [data-testid=price]')"
                                       ".textContent === '$123.25'")
                assert page.locator("[data-testid=last-update]").get_attribute("datetime") == \
                    (T0 + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")

                # Without the token: the page says what is missing.
                other = browser.new_page()
                other.set_default_timeout(TIMEOUT_MS)
                other.goto(f"{handle.url}/")
                other.wait_for_selector("#banner:not([hidden])")
                assert "token" in other.locator("#banner").inner_text()
            finally:
                browser.close()
    finally:
        handle.stop()
        engine.dispose()


def chart_state(page: Any) -> dict[str, Any]:
    return page.evaluate(
        "(() => { const c = document.getElementById('chart'); const info = document.getElementById('chart-info');"
        " return {tier: info.dataset.tier, lineTier: info.dataset.lineTier, step: Number(info.dataset.step),"
        " info: info.textContent, banner: document.getElementById('banner').hidden ? '' : "
        "document.getElementById('banner').textContent,"
        " traces: (c.data || []).map(t => ({type: t.type, name: t.name, n: (t.x || []).length,"
        " nulls: (t.y || []).filter(v => v === null).length}))}; })()")


def long_history(url: str, now: datetime) -> None:
    """Bitcoin and ether every 10 minutes for 40 days (but an 8-hour hole 20 days ago), raw rows kept only
    3 days (as retention leaves them), and 5 backfilled days 200 days ago."""
    from tests.factories import snapshot

    migrate.upgrade(url)
    engine = make_engine(url)
    start = now - timedelta(days=40)
    hole = (now - timedelta(days=20), now - timedelta(days=20) + timedelta(hours=8))
    times = [start + timedelta(minutes=10 * k) for k in range(40 * 144)]
    open_sink(engine).write([snapshot(coin, price=p * (1 + 0.05 * math.sin(k / 50)), at=t, symbol=symbol)
                             for k, t in enumerate(times) if not hole[0] <= t < hole[1]
                             for coin, symbol, p in (("bitcoin", "BTC", 60_000.0), ("ethereum", "ETH", 3_000.0))])
    with engine.begin() as conn:
        for table in (currency_data_history, source_quotes):
            conn.execute(sa.delete(table).where(table.c.observed_at < now - timedelta(days=3)))
        old = (now - timedelta(days=200)).replace(hour=0, minute=0, second=0)  # 5 whole days
        points = [Point("bitcoin", old + timedelta(hours=h), 20_000.0 + 10 * h) for h in range(5 * 24)]
        for tier in (TIER_BY_NAME["1h"], TIER_BY_NAME["1d"]):
            write_backfill(conn, tier, aggregate(points, tier.seconds, backfill=True).values())
    engine.dispose()


def test_long_ranges_draw_candles_from_the_tiers(tmp_path: Path) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{tmp_path / 'long.db'}"
    long_history(url, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5))
    engine = make_engine(url)
    handle = serve_in_thread(create_app(engine, load_settings(database_url=url), poll_interval=0.5), port=0)
    problems: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 1100})
                page.set_default_timeout(TIMEOUT_MS)
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                        if msg.type == "error" else None)
                page.goto(f"{handle.url}/?coin=bitcoin")

                def show(label: str, tier: str) -> dict[str, Any]:
                    button = page.locator("[data-range]", has_text=label).first
                    button.click()
                    page.wait_for_function(
                        "([range, tier]) => { const info = document.getElementById('chart-info').dataset;"
                        " return info.range === range && info.tier === tier; }",
                        arg=[button.get_attribute("data-range"), tier])
                    state = chart_state(page)
                    assert state["banner"] == "", state
                    assert state["traces"][0]["type"] == "candlestick" and state["traces"][1]["name"] == "consensus"
                    return state

                # 24h: the raw points (kept 3 days) and candles of a step that suits them.
                page.wait_for_function("(() => { const c = document.getElementById('chart');"
                                       " return c && c.data && c.data.length >= 4; })()")
                day = chart_state(page)
                assert day["lineTier"] == "raw" and day["traces"][1]["n"] >= 140, day

                # 30d: hourly candles (the raw rows are gone), each source's close beside them, the hole a gap.
                month = show("30d", "1h")
                assert month["lineTier"] == "1h" and month["step"] % 3600 == 0
                assert month["traces"][0]["n"] >= 100, month
                assert {t["name"] for t in month["traces"][2:]} - NOT_SOURCES == {"coingecko", "coinmarketcap"}, month
                assert month["traces"][1]["nulls"] == 1, month  # the 8-hour hole: no line across it

                # 1y: daily candles; the backfilled days lighter, the time between them and the live data a gap.
                year = show("1y", "1d")
                assert year["step"] == 86_400 and year["traces"][0]["n"] >= 39, year
                assert year["traces"][-1] == {"type": "candlestick", "name": "backfilled", "n": 5, "nulls": 0}, year
                assert year["traces"][1]["nulls"] >= 1 and "5 backfilled" in year["info"], year

                whole = show("all", "1d")
                assert whole["traces"] == year["traces"], whole
                back = show("24h", day["tier"])
                assert back["lineTier"] == "raw", back
            finally:
                browser.close()
    finally:
        handle.stop()
        engine.dispose()
    assert not problems, problems


def quality_database(url: str, now: datetime) -> list[CoinSnapshot]:
    """Bitcoin every minute for the last 30 minutes, each value with its 95 % interval (price +- 2 %), quoted
    20 s before the cycle, every 7th one unverified; ether last seen 2 hours ago (stale); tether unverified
    now. Returns bitcoin's snapshots."""
    from tests.factories import snapshot

    migrate.upgrade(url)
    engine = make_engine(url)
    btc = []
    for k in range(30):
        at = now - timedelta(minutes=29 - k)
        price = 60_000.0 + 100 * math.sin(k / 4)
        btc.append(replace(snapshot("bitcoin", price=price, at=at, symbol="BTC"), price_low=round(price * 0.98, 2),
                           price_high=round(price * 1.02, 2), unverified=k % 7 == 3,
                           price_at=at - timedelta(seconds=20)))
    sink = open_sink(engine)
    sink.write(btc)
    sink.write([snapshot("ethereum", price=3_000.0, at=now - timedelta(hours=2), symbol="ETH"),
                replace(snapshot("tether", price=1.0, at=now, symbol="USDT"), unverified=True)])
    engine.dispose()
    return btc


CHART_QUALITY = """(() => { const d = document.getElementById('chart').data || [];
  return d.map(t => ({name: t.name, type: t.type, fill: t.fill || null, n: (t.x || []).length,
                      y: t.y, showlegend: t.showlegend !== false})); })()"""


def test_dashboard_shows_the_interval_band_stale_rows_and_unverified_marks(tmp_path: Path) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{tmp_path / 'quality.db'}"
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    btc = quality_database(url, now)
    engine = make_engine(url)
    settings = load_settings(database_url=url, max_staleness=900)
    app = create_app(engine, settings, poll_interval=0.3)
    handle = serve_in_thread(app, port=0)
    problems: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 1100})
                page.set_default_timeout(TIMEOUT_MS)
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                        if msg.type == "error" else None)
                page.goto(f"{handle.url}/?coin=bitcoin")
                page.wait_for_function("document.querySelectorAll('[data-testid=coin-row]').length === 3")
                page.wait_for_selector("[data-testid=live-indicator][data-state=live]")

                # The band: the low edge, then the high edge filled down to it, right after the consensus line.
                page.wait_for_function("(() => { const d = document.getElementById('chart').data;"
                                       " return d && d.some(t => t.name === '95 % interval'); })()")
                traces = page.evaluate(CHART_QUALITY)
                names = [t["name"] for t in traces]
                assert names[1] == "consensus", names
                low, high = traces[2], traces[3]
                assert (low["name"], low["fill"], low["showlegend"]) == ("95 % low", None, False), traces
                assert (high["name"], high["fill"]) == ("95 % interval", "tonexty"), traces
                assert low["y"] == [s.price_low for s in btc] and high["y"] == [s.price_high for s in btc]
                line = traces[1]["y"]
                assert all(lo < y < hi for lo, y, hi in zip(low["y"], line, high["y"], strict=True))
                # each unverified value is marked on the line
                marks = next(t for t in traces if t["name"] == "unverified")
                assert marks["type"] == "scatter" and marks["y"] == [s.price for s in btc if s.unverified]
                assert page.locator("[data-testid=coin-interval]").inner_text() == \
                    f"${btc[-1].price_low:,.2f} – ${btc[-1].price_high:,.2f}"

                # Ether has had no quote for 2 hours: still listed, greyed, its age in the tooltip.
                eth = page.locator("[data-testid=coin-row][data-id=ethereum]")
                assert "stale" in (eth.get_attribute("class") or "").split()
                assert re.fullmatch(r"Stale: last value 2 h old, beyond the staleness limit", eth.get_attribute("title")
                                    or ""), eth.get_attribute("title")
                assert page.evaluate("getComputedStyle(document.querySelector("
                                     "'[data-testid=coin-row][data-id=ethereum] td[data-col=price]')).opacity") == "0.55"
                fresh = page.locator("[data-testid=coin-row][data-id=bitcoin]")
                assert "stale" not in (fresh.get_attribute("class") or "").split()
                assert fresh.get_attribute("title") is None

                # Tether's value is unverified: a visible mark with a tooltip; bitcoin's current one is not.
                mark = page.locator("[data-testid=coin-row][data-id=tether] [data-testid=unverified-mark]")
                assert mark.is_visible() and mark.get_attribute("title").startswith("Unverified: two sources")
                assert page.locator("[data-testid=coin-row][data-id=bitcoin] [data-testid=unverified-mark]").count() == 0
                page.hover("[data-testid=coin-row][data-id=tether] [data-testid=unverified-mark]")

                # A new value comes through the stream: the band follows the line.
                last = btc[-1]
                new = replace(last, observed_at=last.observed_at + timedelta(seconds=30), price=last.price + 50,
                              price_low=last.price + 10, price_high=last.price + 90, unverified=True,
                              price_at=last.observed_at + timedelta(seconds=25))
                open_sink(engine).write([new])
                app.state.live.notify(1)
                page.wait_for_function(
                    "(hi) => { const d = document.getElementById('chart').data;"
                    " const t = d.find(t => t.name === '95 % interval'); return t && t.y[t.y.length - 1] === hi; }",
                    arg=new.price_high)
                traces = page.evaluate(CHART_QUALITY)
                band = {t["name"]: t for t in traces}
                assert band["95 % low"]["y"][-1] == new.price_low and band["95 % low"]["n"] == len(btc) + 1
                assert band["unverified"]["y"][-1] == new.price
                page.wait_for_selector("[data-testid=coin-flags] [data-testid=unverified-mark]")
            finally:
                browser.close()
    finally:
        handle.stop()
        engine.dispose()
    assert not problems, problems
