"""The built-in dashboard in headless Chromium: real pipeline data, a drawn chart, live updates over SSE.

The market simulator feeds the embedded pipeline (in-process bus, SQLite) for some cycles; the API
serves that database; Chromium (Debian's, driven by Playwright) opens the page. While the page stays
open the pipeline runs more cycles and one more observation is written: the page must show them
without a reload. A screenshot goes to test-artifacts/dashboard.png and docs/img/dashboard.png.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cryptoviz.api.app import create_app
from cryptoviz.api.server import ServerHandle, serve_in_thread
from cryptoviz.config import Settings, load_settings
from cryptoviz.models import CoinSnapshot, SourceValue
from cryptoviz.runtime import Pipeline
from cryptoviz.simulator import Simulator, start_simulator
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.registry import build_sources
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from cryptoviz.store.tables import currencies, currency_data

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "test-artifacts" / "dashboard.png"
DOCS_IMAGE = ROOT / "docs" / "img" / "dashboard.png"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
FIRST_CYCLES = 30  # one a second: enough history for candles
LIVE_CYCLES = 3
TIMEOUT_MS = 20_000


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

    def run_cycles(self, n: int) -> int:
        sources, warnings = build_sources(self.settings, self.http)
        assert not warnings, warnings
        for source in sources:
            # The public APIs' request budgets do not apply to the local simulator: one cycle a second.
            self.http.set_rate_limit(source.name, 6000, 100)
        with Pipeline(self.settings, engine=self.engine, sources=sources) as pipeline:
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
def server(market: Market) -> Iterator[ServerHandle]:
    handle = serve_in_thread(create_app(market.engine, market.settings, poll_interval=0.5), port=0)
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


def test_dashboard_shows_the_market_and_updates_live(market: Market, server: ServerHandle) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    stored = market.run_cycles(FIRST_CYCLES)
    assert stored >= FIRST_CYCLES * 150
    problems: list[str] = []
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
            assert {t["name"] for t in traces[2:]} == {"coingecko", "coinmarketcap"}, traces
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

            # Live: the pipeline keeps collecting while the page is open.
            before_text = page.locator("[data-testid=last-update]").inner_text()
            before_time = page.locator("[data-testid=last-update]").get_attribute("datetime")
            before_points = page.evaluate("document.getElementById('chart').data[1].x.length")
            market.run_cycles(LIVE_CYCLES)
            latest = current(market.engine, "bitcoin")["observed_at"]
            iso = latest.strftime("%Y-%m-%dT%H:%M:%S")
            page.wait_for_function(
                f"(document.querySelector('[data-testid=last-update]').getAttribute('datetime') || '')"
                f".startsWith('{iso}')")
            assert page.locator("[data-testid=last-update]").get_attribute("datetime") != before_time
            assert page.locator("[data-testid=last-update]").inner_text() != before_text
            page.wait_for_function(f"document.getElementById('chart').data[1].x.length >= {before_points + 1}")

            # One more observation with a known price: the table cell and the chart follow.
            new = next_observation(market.engine, "bitcoin", 1.002)
            open_sink(market.engine).write([new])
            expected = f"${new.price:,.2f}"
            cell = page.locator("[data-testid=coin-row][data-id=bitcoin] [data-testid=price]")
            page.wait_for_function(
                "(expected) => document.querySelector("
                "'[data-testid=coin-row][data-id=bitcoin] [data-testid=price]').textContent === expected", arg=expected)
            assert cell.inner_text() == expected
            page.wait_for_function(
                "(price) => { const d = document.getElementById('chart').data[1];"
                " return d.y[d.y.length - 1] === price; }", arg=new.price)
            assert page.locator("[data-testid=coin-price]").inner_text() == expected
            assert re.fullmatch(r"\d{1,2}:\d{2}:\d{2}( [AP]M)?", page.locator("[data-testid=last-update]").inner_text())

            page.wait_for_function("!document.querySelector('.flash-up, .flash-down')")  # the price flash is over
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACT), full_page=False)
        finally:
            browser.close()
    assert ARTIFACT.stat().st_size > 20_000
    DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ARTIFACT, DOCS_IMAGE)
    assert not problems, problems


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
