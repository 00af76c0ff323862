"""The REST API, the SSE stream and the metrics, served by a real uvicorn server over a real SQLite file.

The database is filled through the real sink (``open_sink``) and ``record_run``; requests go
over HTTP with httpx.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cryptoviz import metrics
from cryptoviz.api import history as history_reader
from cryptoviz.api.app import create_app, parse_interval
from cryptoviz.api.live import LiveHub
from cryptoviz.api.server import ServerHandle, serve_in_thread
from cryptoviz.config import Settings
from cryptoviz.errors import CryptoVizError
from cryptoviz.models import CoinSnapshot, SourceValue
from cryptoviz.store import migrate
from cryptoviz.store.candles import TIER_BY_NAME, Point, aggregate, write_backfill
from cryptoviz.store.engine import make_engine
from cryptoviz.store.runs import RunReport, SourceReport, record_run
from cryptoviz.store.sink import open_sink
from cryptoviz.store.tables import candles_5m, currency_data_history, source_quotes
from tests.factories import numbered

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)  # aligned on 5 minutes and on the hour
CYCLES = 7
BTC = [100.0, 105.0, 95.0, 102.0, 110.0, 90.0, 108.0]  # one price per minute from T0
TOKEN = "s3cret-token"


@dataclass(frozen=True)
class Coin:
    id: str
    symbol: str
    name: str
    rank: int | None
    cap_per_price: float | None
    change_24h: float
    confidence: float

    def price(self, k: int) -> float:
        return {"bitcoin": BTC[k], "ethereum": 10.0 + k, "tether": 1.0, "dogecoin": 0.1 + 0.001 * k,
                "zcash": 50.0}[self.id]


COINS = [
    Coin("bitcoin", "BTC", "Bitcoin", 1, 19e6, -1.5, 0.95),
    Coin("ethereum", "ETH", "Ethereum", 2, 120e6, 2.5, 0.9),
    Coin("tether", "USDT", "Tether", 3, 1e8, 0.01, 0.99),
    Coin("zcash", "ZEC", "Zcash", 4, 1e7, -7.0, 0.5),
    Coin("dogecoin", "DOGE", "Dogecoin", None, None, 12.0, 0.8),  # no cap, no rank: sorts last
]


def snap(coin: Coin, k: int, *, at: datetime | None = None, price: float | None = None) -> CoinSnapshot:
    """Bitcoin's values carry an interval [price - 1, price + 2] quoted 45 s before the cycle; zcash's are
    unverified (its sources disagree); the others have neither."""
    observed = at or T0 + timedelta(minutes=k)
    p = coin.price(k) if price is None else price
    cap = None if coin.cap_per_price is None else p * coin.cap_per_price
    cmc_price, cmc_used, reason = p * 1.001, True, None
    if coin.id == "zcash":
        cmc_price, cmc_used, reason = p * 10, False, "outlier"
    interval: dict[str, Any] = {}
    if coin.id == "bitcoin":
        interval = {"price_low": p - 1, "price_high": p + 2, "price_at": observed - timedelta(seconds=45)}
    return CoinSnapshot(**interval, unverified=coin.id == "zcash",
        coin_id=coin.id, symbol=coin.symbol, name=coin.name, slug=coin.id, rank=coin.rank, price=p,
        market_cap=cap, volume_24h=p * 10, change_1h=0.1, change_24h=coin.change_24h, change_7d=3.0,
        circulating_supply=coin.cap_per_price, total_supply=None, max_supply=None, confidence=coin.confidence,
        observed_at=observed, currency="usd", coingecko_id=coin.id, coinmarketcap_id=str(COINS.index(coin) + 1),
        sources=(
            SourceValue("coingecko", coin.id, p, cap, p * 10, observed - timedelta(seconds=30)),
            SourceValue("coinmarketcap", str(COINS.index(coin) + 1), cmc_price, None, None,
                        observed - timedelta(seconds=20), used=cmc_used, dropped_reason=reason),
        ),
    )


def runs() -> list[RunReport]:
    """Three cycles: CoinMarketCap fails twice then recovers; CoinGecko fails in the last one."""
    out = []
    for i, (cg_error, cmc_error, breaker) in enumerate([
        (None, "coinmarketcap: HTTP 429 rate limited", "closed"),
        (None, "coinmarketcap: HTTP 429 rate limited", "open"),
        ("coingecko: timeout after 15s", None, "closed"),
    ]):
        start = T0 + timedelta(minutes=i)
        run = RunReport(started_at=start, finished_at=start + timedelta(seconds=3), status="partial")
        run.sources["coingecko"] = SourceReport("coingecko", fetched=0 if cg_error else 200 + i,
                                                rejected=0 if cg_error else 3, used=0 if cg_error else 5,
                                                error=cg_error, reasons={} if cg_error else {"stale": 2,
                                                                                            "price_not_positive": 1})
        run.sources["coinmarketcap"] = SourceReport("coinmarketcap", fetched=0 if cmc_error else 150,
                                                    used=0 if cmc_error else 5, error=cmc_error, breaker=breaker)
        out.append(run)
    return out


def build_database(url: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    writer = open_sink(engine)
    for k in range(CYCLES):  # one batch per cycle, as the pipeline writes them
        writer.write([snap(c, k) for c in COINS])
    for run in runs():
        record_run(engine, run)
    engine.dispose()


def no_token() -> Settings:
    # Explicit values win over CRYPTOVIZ_* variables: a developer's token never steers these tests.
    return Settings(_env_file=None, api_token=None)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    """The designed database, read-only: tests that write use ``engine`` (their own copy)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'api.db'}"
    build_database(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    build_database(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@dataclass
class Served:
    handle: ServerHandle
    http: httpx.Client


def serve(engine: sa.Engine, settings: Settings | None = None, poll_interval: float = 2.0) -> Iterator[Served]:
    yield from serve_app(create_app(engine, settings or no_token(), poll_interval=poll_interval))


def serve_app(app: FastAPI) -> Iterator[Served]:
    handle = serve_in_thread(app, port=0)
    http = httpx.Client(base_url=handle.url, timeout=10)
    try:
        yield Served(handle, http)
    finally:
        http.close()
        handle.stop()


@pytest.fixture(scope="module")
def api(shared_engine: sa.Engine) -> Iterator[httpx.Client]:
    """One server over the designed database for the read-only tests."""
    for served in serve(shared_engine):
        yield served.http


def get(api: httpx.Client, path: str, **params: Any) -> Any:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(page: dict[str, Any]) -> list[str]:
    return [c["id"] for c in page["coins"]]


# --- /api/coins ---------------------------------------------------------------------------------------


def test_coins_default_is_market_cap_descending_with_current_values(api: httpx.Client) -> None:
    page = get(api, "/api/coins")
    assert page["total"] == 5 and page["limit"] == 100 and page["offset"] == 0
    assert ids(page) == ["bitcoin", "ethereum", "zcash", "tether", "dogecoin"]
    btc = page["coins"][0]
    assert btc == {
        "id": "bitcoin", "symbol": "BTC", "name": "Bitcoin", "rank": 1, "price": 108.0,
        "market_cap": 108.0 * 19e6, "volume_24h": 1080.0, "change_1h": 0.1, "change_24h": -1.5, "change_7d": 3.0,
        "confidence": 0.95, "n_sources": 2, "sources": ["coingecko", "coinmarketcap"], "currency": "usd",
        "observed_at": "2026-11-27T12:06:00Z", "price_low": 107.0, "price_high": 110.0, "unverified": False,
        "price_at": "2026-11-27T12:05:15Z", "age_s": btc["age_s"], "stale": True,
    }
    # its age runs from when its price was quoted: days ago here, far beyond the 15 minutes allowed
    quoted = datetime(2026, 11, 27, 12, 5, 15, tzinfo=UTC)
    assert btc["age_s"] == pytest.approx((datetime.now(UTC) - quoted).total_seconds(), abs=5)
    zcash = next(c for c in page["coins"] if c["id"] == "zcash")
    assert zcash["n_sources"] == 1 and zcash["sources"] == ["coingecko"]  # the outlier was not used
    assert zcash["unverified"] is True and zcash["price_low"] is None and zcash["price_at"] is None


@pytest.mark.parametrize(("sort", "order", "expected"), [
    ("market_cap", "asc", ["tether", "zcash", "ethereum", "bitcoin", "dogecoin"]),  # missing cap stays last
    ("price", "asc", ["dogecoin", "tether", "ethereum", "zcash", "bitcoin"]),
    ("price", "desc", ["bitcoin", "zcash", "ethereum", "tether", "dogecoin"]),
    ("name", "asc", ["bitcoin", "dogecoin", "ethereum", "tether", "zcash"]),
    ("name", "desc", ["zcash", "tether", "ethereum", "dogecoin", "bitcoin"]),
    ("rank", "asc", ["bitcoin", "ethereum", "tether", "zcash", "dogecoin"]),
    ("rank", "desc", ["zcash", "tether", "ethereum", "bitcoin", "dogecoin"]),
    ("change_24h", "desc", ["dogecoin", "ethereum", "tether", "bitcoin", "zcash"]),
    ("confidence", "asc", ["zcash", "dogecoin", "ethereum", "bitcoin", "tether"]),
    ("volume_24h", "desc", ["bitcoin", "zcash", "ethereum", "tether", "dogecoin"]),
])
def test_coins_sorting(api: httpx.Client, sort: str, order: str, expected: list[str]) -> None:
    assert ids(get(api, "/api/coins", sort=sort, order=order)) == expected


def test_coins_pagination(api: httpx.Client) -> None:
    page = get(api, "/api/coins", sort="price", order="desc", limit=2, offset=1)
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    assert ids(page) == ["zcash", "ethereum"]
    assert ids(get(api, "/api/coins", sort="price", order="desc", limit=2, offset=4)) == ["dogecoin"]
    assert get(api, "/api/coins", offset=10)["coins"] == []


@pytest.mark.parametrize(("path", "params", "parameter"), [
    ("/api/coins", {"limit": 0}, "limit"),
    ("/api/coins", {"limit": 1001}, "limit"),
    ("/api/coins", {"limit": "many"}, "limit"),
    ("/api/coins", {"offset": -1}, "offset"),
    ("/api/coins", {"sort": "colour"}, "sort"),
    ("/api/coins", {"order": "up"}, "order"),
    ("/api/coins/bitcoin/history", {"start": "yesterday"}, "start"),
    ("/api/coins/bitcoin/history", {"end": "2026-13-40"}, "end"),
    ("/api/coins/bitcoin/history", {"interval": "7x"}, "interval"),
    ("/api/coins/bitcoin/history", {"interval": "0"}, "interval"),
    ("/api/coins/bitcoin/history", {"start": "2026-11-27T13:00:00Z", "end": "2026-11-27T12:00:00Z"}, "start"),
    ("/api/coins/bitcoin/history", {"sources": "perhaps"}, "sources"),
    ("/api/sources", {"runs": 0}, "runs"),
])
def test_bad_parameters_are_named(api: httpx.Client, path: str, params: dict[str, Any], parameter: str) -> None:
    response = api.get(path, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid parameter"
    assert body["parameter"] == parameter
    assert body["detail"]


def test_too_many_points_or_candles_give_coarser_candles_never_an_error(
        api: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_reader, "MAX_POINTS", 6)
    monkeypatch.setattr(history_reader, "MAX_CANDLES", 3)
    monkeypatch.setattr(history_reader, "MAX_SOURCE_QUOTES", 6)
    monkeypatch.setattr(history_reader, "MAX_SOURCE_POINTS", 12)  # per source over the hour: 5-minute buckets
    # No interval, more raw points than an answer holds: candles of an automatic step instead.
    auto = get(api, "/api/coins/bitcoin/history", **WINDOW)
    assert auto["points"] is None and (auto["tier"], auto["interval"], auto["requested_interval"]) == ("5m", 300, None)
    assert [(c["open"], c["close"], c["n"]) for c in auto["candles"]] == [(100.0, 110.0, 5), (90.0, 108.0, 2)]
    assert "raw points" in auto["note"]
    # An interval giving more candles than an answer holds: a coarser step, said so.
    monkeypatch.setattr(history_reader, "MAX_POINTS", 50_000)
    fine = get(api, "/api/coins/bitcoin/history", interval="1m", **WINDOW)
    # 1 hour of data in at most 3 candles: 20 minutes, merged from the 5-minute candles.
    assert (fine["tier"], fine["interval"], fine["requested_interval"]) == ("5m", 1200, 60)
    assert "1m" in fine["note"] and "20m" in fine["note"]
    assert [(c["open"], c["high"], c["low"], c["close"], c["n"]) for c in fine["candles"]] == [
        (100.0, 110.0, 90.0, 108.0, 7)]
    three = get(api, "/api/coins/bitcoin/history", interval="3m", **WINDOW)
    assert (three["tier"], three["interval"], len(three["candles"]), three["note"]) == ("raw", 180, 3, None)
    # More source quotes than an answer holds: downsampled (each source's last quote per bucket).
    lines = get(api, "/api/coins/bitcoin/history", sources="true", **WINDOW)["sources"]
    assert [p[1] for p in lines["coingecko"]] == [110.0, 108.0]


def test_a_long_range_with_small_candles_is_fine_when_points_are_few(api: httpx.Client) -> None:
    # Only stored points make candles: a year in 1 s buckets is 7 candles here, not 31 million.
    year = get(api, "/api/coins/bitcoin/history", start="2026-01-01T00:00:00Z", end="2026-12-31T00:00:00Z",
               interval="1s")
    assert [(c["open"], c["close"], c["n"]) for c in year["candles"]] == [(p, p, 1) for p in BTC]


def test_unknown_coin_and_route_are_404_json(api: httpx.Client) -> None:
    for path in ("/api/coins/no-such-coin", "/api/coins/no-such-coin/history"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "not found", "detail": "unknown coin 'no-such-coin'"}
    response = api.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not found"


# --- /api/coins/{id} ------------------------------------------------------------------------------------


def test_coin_detail_has_current_row_and_each_sources_latest_value(api: httpx.Client) -> None:
    coin = get(api, "/api/coins/zcash")
    assert coin["id"] == "zcash" and coin["price"] == 50.0 and coin["confidence"] == 0.5
    assert coin["slug"] == "zcash" and coin["coinmarketcap_id"] == "4" and coin["circulating_supply"] == 1e7
    assert coin["first_seen_at"] == "2026-11-27T12:00:00Z" and coin["last_seen_at"] == "2026-11-27T12:06:00Z"
    quotes = {q["source"]: q for q in coin["source_quotes"]}
    assert set(quotes) == {"coingecko", "coinmarketcap"}
    assert quotes["coingecko"] == {
        "source": "coingecko", "source_id": "zcash", "price": 50.0, "market_cap": 5e8, "volume_24h": 500.0,
        "last_updated": "2026-11-27T12:05:30Z", "observed_at": "2026-11-27T12:06:00Z", "used": True,
        "dropped_reason": None,
    }
    assert quotes["coinmarketcap"]["price"] == 500.0
    assert quotes["coinmarketcap"]["used"] is False and quotes["coinmarketcap"]["dropped_reason"] == "outlier"


# --- history ---------------------------------------------------------------------------------------------

WINDOW = {"start": "2026-11-27T11:00:00Z", "end": "2026-11-27T13:00:00Z"}


def test_history_raw_points(api: httpx.Client) -> None:
    h = get(api, "/api/coins/bitcoin/history", **WINDOW)
    assert h["interval"] is None and h["candles"] is None and h["sources"] is None
    assert h["columns"] == ["observed_at", "price", "market_cap", "volume_24h", "confidence", "price_low",
                            "price_high", "unverified", "price_at"]
    assert [p[1] for p in h["points"]] == BTC
    assert h["points"][0] == ["2026-11-27T12:00:00Z", 100.0, 100.0 * 19e6, 1000.0, 0.95, 99.0, 102.0, False,
                              "2026-11-27T11:59:15Z"]
    assert h["stale"] is True and h["age_s"] > 86_400  # the current value's age, at the request
    assert h["points"][-1][0] == "2026-11-27T12:06:00Z"
    part = get(api, "/api/coins/bitcoin/history", start="2026-11-27T12:02:00Z", end="2026-11-27T12:04:00Z")
    assert [p[1] for p in part["points"]] == [95.0, 102.0, 110.0]  # both ends included
    # A time with an offset is the same instant: 13:02+01:00 is 12:02Z.
    shifted = get(api, "/api/coins/bitcoin/history", start="2026-11-27T13:02:00+01:00",
                  end="2026-11-27T13:04:00+01:00")
    assert [p[1] for p in shifted["points"]] == [95.0, 102.0, 110.0]


def test_history_candles_have_exact_ohlc(api: httpx.Client) -> None:
    h = get(api, "/api/coins/bitcoin/history", interval="5m", **WINDOW)
    assert h["interval"] == 300 and h["points"] is None
    assert h["tier"] == "5m" and h["requested_interval"] == 300 and h["note"] is None
    live = {"n_backfill": 0, "backfilled": False, "confidence_min": 0.95, "unverified_n": 0, "unverified": False}
    assert h["candles"] == [
        # 12:00-12:05: 100, 105, 95, 102, 110 (intervals [p - 1, p + 2])
        {"time": "2026-11-27T12:00:00Z", "open": 100.0, "high": 110.0, "low": 95.0, "close": 110.0,
         "volume": 1100.0, "n": 5, **live, "open_at": "2026-11-27T12:00:00Z", "close_at": "2026-11-27T12:04:00Z",
         "price_low": 94.0, "price_high": 112.0},
        # 12:05-12:10: 90, 108
        {"time": "2026-11-27T12:05:00Z", "open": 90.0, "high": 108.0, "low": 90.0, "close": 108.0,
         "volume": 1080.0, "n": 2, **live, "open_at": "2026-11-27T12:05:00Z", "close_at": "2026-11-27T12:06:00Z",
         "price_low": 89.0, "price_high": 110.0},
    ]
    assert get(api, "/api/coins/bitcoin/history", interval="300", **WINDOW)["candles"] == h["candles"]
    hourly = get(api, "/api/coins/bitcoin/history", interval="1h", **WINDOW)["candles"]
    assert hourly == [{"time": "2026-11-27T12:00:00Z", "open": 100.0, "high": 110.0, "low": 90.0, "close": 108.0,
                       "volume": 1080.0, "n": 7, **live, "open_at": "2026-11-27T12:00:00Z",
                       "close_at": "2026-11-27T12:06:00Z", "price_low": 89.0, "price_high": 112.0}]
    two = get(api, "/api/coins/bitcoin/history", interval="2m", **WINDOW)["candles"]  # from the raw rows
    assert [(c["open"], c["high"], c["low"], c["close"], c["n"], c["price_low"], c["price_high"]) for c in two] == [
        (100.0, 105.0, 100.0, 105.0, 2, 99.0, 107.0), (95.0, 102.0, 95.0, 102.0, 2, 94.0, 104.0),
        (110.0, 110.0, 90.0, 90.0, 2, 89.0, 112.0), (108.0, 108.0, 108.0, 108.0, 1, 107.0, 110.0)]
    # zcash's values were all unverified: every candle says how many, from every tier and from the raw rows
    for step in ("5m", "1h", "2m", "10m"):
        zcash = get(api, "/api/coins/zcash/history", interval=step, **WINDOW)["candles"]
        assert sum(c["unverified_n"] for c in zcash) == CYCLES and all(c["unverified"] for c in zcash), step
        assert all(c["price_low"] is None and c["price_high"] is None for c in zcash), step


def test_history_with_source_lines(api: httpx.Client) -> None:
    h = get(api, "/api/coins/bitcoin/history", sources="true", **WINDOW)
    assert set(h["sources"]) == {"coingecko", "coinmarketcap"}
    assert [p[1] for p in h["sources"]["coingecko"]] == BTC
    assert [p[1] for p in h["sources"]["coinmarketcap"]] == pytest.approx([p * 1.001 for p in BTC])
    assert h["sources"]["coingecko"][0] == ["2026-11-27T12:00:00Z", 100.0, True]
    zcash = get(api, "/api/coins/zcash/history", sources="true", interval="1h", **WINDOW)
    assert zcash["candles"][0]["n"] == CYCLES
    assert {p[2] for p in zcash["sources"]["coinmarketcap"]} == {False}


def test_history_defaults_to_the_last_24_hours(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recent.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC).replace(microsecond=0)
    open_sink(engine).write([snap(COINS[0], 0, at=now - timedelta(hours=30), price=1.0),
                                  snap(COINS[0], 0, at=now - timedelta(hours=1), price=2.0)])
    try:
        for served in serve(engine):
            h = get(served.http, "/api/coins/bitcoin/history")
            assert [p[1] for p in h["points"]] == [2.0]
            since = (now - timedelta(hours=40)).isoformat()
            assert [p[1] for p in get(served.http, "/api/coins/bitcoin/history", start=since)["points"]] == [1.0, 2.0]
    finally:
        engine.dispose()


# --- tiers ---------------------------------------------------------------------------------------------------

NOW = datetime(2026, 10, 1, tzinfo=UTC)
HOLE = (NOW - timedelta(days=12, hours=18), NOW - timedelta(days=12, hours=12))  # 6 hours without data
RAW_KEPT, FIVE_KEPT = timedelta(days=10), timedelta(days=20)
BACKFILLED = (NOW - timedelta(days=100), NOW - timedelta(days=97))


def tiered_database(url: str) -> None:
    """Bitcoin every 30 minutes for 40 days (but a 6-hour hole), raw rows kept 10 days and 5-minute candles
    20 days (as retention leaves them), and 3 backfilled days 100 days ago (hourly and daily candles)."""
    migrate.upgrade(url)
    engine = make_engine(url)
    times = [NOW - timedelta(minutes=30 * k) for k in range(40 * 48, 0, -1)]
    times = [t for t in times if not HOLE[0] <= t < HOLE[1]]
    open_sink(engine).write([snap(COINS[0], 0, at=t, price=100.0 + i / 100) for i, t in enumerate(times)])
    with engine.begin() as conn:
        for table in (currency_data_history, source_quotes):
            conn.execute(sa.delete(table).where(table.c.observed_at < NOW - RAW_KEPT))
        conn.execute(sa.delete(candles_5m).where(candles_5m.c.bucket < NOW - FIVE_KEPT))
        hours = int((BACKFILLED[1] - BACKFILLED[0]).total_seconds() // 3600)
        points = [Point("bitcoin", BACKFILLED[0] + timedelta(hours=h), 50.0 + h) for h in range(hours)]
        for tier in (TIER_BY_NAME["1h"], TIER_BY_NAME["1d"]):
            write_backfill(conn, tier, aggregate(points, tier.seconds, backfill=True).values())
    engine.dispose()


@pytest.fixture(scope="module")
def tiered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    url = f"sqlite:///{tmp_path_factory.mktemp('tiers') / 'tiers.db'}"
    tiered_database(url)
    engine = make_engine(url)
    # a row at least every 30 minutes (the heartbeat): more than 45 minutes between two is a gap
    settings = Settings(_env_file=None, api_token=None, history_heartbeat=1800)  # type: ignore[call-arg]
    for served in serve(engine, settings):
        yield served.http
    engine.dispose()


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def span(days_ago: float, days: float) -> dict[str, str]:
    end = NOW - timedelta(days=days_ago)
    return {"start": iso(end - timedelta(days=days)), "end": iso(end)}


def test_a_short_range_the_raw_rows_cover_is_raw_points(tiered: httpx.Client) -> None:
    h = get(tiered, "/api/coins/bitcoin/history", sources="true", **span(0, 1))
    assert (h["tier"], h["interval"], h["candles"], h["note"]) == ("raw", None, None, None)
    assert len(h["points"]) == 48 and h["gaps"] == []
    assert len(h["sources"]["coingecko"]) == 48  # raw source quotes


def test_where_retention_removed_the_raw_rows_the_candles_answer(tiered: httpx.Client) -> None:
    h = get(tiered, "/api/coins/bitcoin/history", sources="true", **span(15, 1))
    assert (h["tier"], h["interval"], h["points"]) == ("5m", 300, None) and "raw rows do not cover" in h["note"]
    assert len(h["candles"]) == 49 and all(c["n"] == 1 and not c["backfilled"] for c in h["candles"])  # ends included
    first = h["candles"][0]
    assert first["open_at"] == first["close_at"] and first["confidence_min"] == 0.95
    # each source's line from the candles' per-source closes, at the time of their last observation
    assert set(h["sources"]) == {"coingecko", "coinmarketcap"}
    assert h["sources"]["coingecko"][0] == [first["close_at"], first["close"], True]
    assert h["sources"]["coinmarketcap"][0][1] == pytest.approx(first["close"] * 1.001)
    # a step finer than the candles where the raw rows are gone: 5-minute candles, said so
    fine = get(tiered, "/api/coins/bitcoin/history", interval="1m", **span(15, 1))
    assert (fine["tier"], fine["interval"], fine["requested_interval"]) == ("5m", 300, 60)
    assert "raw rows do not cover" in fine["note"]
    # beyond the 5-minute candles' retention: hourly candles
    old = get(tiered, "/api/coins/bitcoin/history", **span(30, 1))
    assert (old["tier"], old["interval"]) == ("1h", 3600) and "5m tier" in old["note"]
    assert [c["n"] for c in old["candles"]] == [2] * 25  # the bucket starting at the (included) end too


def test_a_step_no_tier_has_is_merged_from_a_finer_tier(tiered: httpx.Client) -> None:
    hourly = get(tiered, "/api/coins/bitcoin/history", interval="1h", **span(15, 1))["candles"]
    merged = get(tiered, "/api/coins/bitcoin/history", interval="6h", **span(15, 1))
    assert (merged["tier"], merged["interval"], merged["note"]) == ("1h", 21_600, None)
    for candle in merged["candles"]:
        inside = [c for c in hourly if candle["time"] <= c["time"] < iso(datetime.fromisoformat(candle["time"])
                                                                          + timedelta(hours=6))]
        assert (candle["open"], candle["close"]) == (inside[0]["open"], inside[-1]["close"])
        assert (candle["high"], candle["low"]) == (max(c["high"] for c in inside), min(c["low"] for c in inside))
        assert candle["n"] == sum(c["n"] for c in inside)
        assert candle["price_low"] == min(c["price_low"] for c in inside) == candle["low"] - 1
        assert candle["price_high"] == max(c["price_high"] for c in inside) == candle["high"] + 2
        assert (candle["open_at"], candle["close_at"]) == (inside[0]["open_at"], inside[-1]["close_at"])


def test_a_long_range_never_fails_and_shows_backfill_and_gaps(tiered: httpx.Client) -> None:
    year = get(tiered, "/api/coins/bitcoin/history", sources="true", **span(0, 365))
    # measured from the first observation (100 days ago): at most 1000 candles of 3 hours
    assert (year["tier"], year["interval"], year["requested_interval"]) == ("1h", 10_800, None)
    backfilled = [c for c in year["candles"] if c["backfilled"]]
    assert len(backfilled) == 24 and all(c["n"] == 0 and c["n_backfill"] == 3 for c in backfilled)
    assert not any(c["backfilled"] for c in year["candles"] if c["time"] >= iso(BACKFILLED[1]))
    assert year["gap_after"] == 2.5 * 10_800
    gaps = [(g["start"], g["end"]) for g in year["gaps"]]
    # the time between the backfill and the live data, and the 6-hour hole
    assert len(gaps) == 2
    assert gaps[0][0] < iso(BACKFILLED[1]) and gaps[0][1] > iso(NOW - timedelta(days=41))
    assert gaps[1] == (iso(HOLE[0] - timedelta(minutes=30)), iso(HOLE[1]))
    assert set(year["sources"]) == {"coingecko", "coinmarketcap"}
    daily = get(tiered, "/api/coins/bitcoin/history", interval="1d", start="1970-01-01T00:00:00Z", end=iso(NOW))
    assert (daily["tier"], daily["interval"]) == ("1d", 86_400)
    assert [c["backfilled"] for c in daily["candles"][:4]] == [True, True, True, False]
    assert len(daily["candles"]) == 3 + 40
    # hourly candles over a year would read 8760 rows: daily ones instead
    hourly = get(tiered, "/api/coins/bitcoin/history", interval="1h", start=iso(NOW - timedelta(days=400)),
                 end=iso(NOW), max_candles=50)
    assert hourly["interval"] == 3600  # 100 days of data: 2400 hourly rows are fine
    capped = get(tiered, "/api/coins/bitcoin/history", max_candles=50, **span(0, 365))
    assert capped["interval"] == 172_800 and len(capped["candles"]) <= 51


def test_the_raw_rows_answer_small_steps_while_they_cover_the_range(tiered: httpx.Client) -> None:
    h = get(tiered, "/api/coins/bitcoin/history", interval="90s", **span(2, 3))
    assert (h["tier"], h["interval"], h["note"]) == ("raw", 90, None)
    assert len(h["candles"]) == 3 * 48 + 1
    assert h["gap_after"] == 2 * 1800 and h["gaps"] == []  # a quiet coin writes a row every heartbeat


def test_gaps_of_a_coin_and_of_the_market(tiered: httpx.Client) -> None:
    hole = {"coin": "bitcoin", "start": iso(HOLE[0] - timedelta(minutes=30)), "end": iso(HOLE[1]),
            "seconds": 6.5 * 3600}
    coin = get(tiered, "/api/coins/bitcoin/gaps", **span(0, 40))
    assert coin["gaps"] == [hole] and coin["min_length"] == 2 * 1800
    assert get(tiered, "/api/gaps", **span(0, 40))["gaps"] == [hole]
    assert get(tiered, "/api/gaps", min_length="7h", **span(0, 40))["gaps"] == []
    assert get(tiered, "/api/coins/bitcoin/gaps", **span(0, 7))["gaps"] == []  # it ended before
    for path, params, parameter in (("/api/gaps", {"min_length": "soon"}, "min_length"),
                                    ("/api/gaps", {"limit": 0}, "limit"),
                                    ("/api/coins/bitcoin/gaps", {"start": iso(NOW), "end": iso(NOW)}, "start")):
        response = tiered.get(path, params=params)
        assert response.status_code == 422 and response.json()["parameter"] == parameter
    assert tiered.get("/api/coins/no-such-coin/gaps").status_code == 404


def test_parse_interval() -> None:
    assert [parse_interval(v) for v in ("30s", "1m", "5m", "1h", "1d", "1w", "90", " 2H ")] == [
        30, 60, 300, 3600, 86400, 604800, 90, 7200]
    for bad in ("", "m", "1.5m", "-1m", "0s", "400d", "1y"):
        with pytest.raises(ValueError):
            parse_interval(bad)


# --- sources, health, metrics ------------------------------------------------------------------------------


def test_sources_health_from_the_recorded_runs(api: httpx.Client) -> None:
    body = get(api, "/api/sources")
    assert body["runs"] == 3
    assert body["last_run"]["status"] == "partial" and body["last_run"]["fetched"] == 150
    health = {s["source"]: s for s in body["sources"]}
    cg, cmc = health["coingecko"], health["coinmarketcap"]
    assert cg["up"] is False and cg["failures_in_a_row"] == 1 and cg["errors_in_window"] == 1
    assert cg["last_ok"] == "2026-11-27T12:01:03Z"  # the second cycle's end
    assert cg["last_error"] == "coingecko: timeout after 15s" and cg["last_error_at"] == "2026-11-27T12:02:03Z"
    assert cmc["up"] is True and cmc["failures_in_a_row"] == 0 and cmc["errors_in_window"] == 2
    assert cmc["last_ok"] == "2026-11-27T12:02:03Z" and cmc["breaker"] == "closed"
    assert (cmc["fetched"], cmc["rejected"], cmc["used"]) == (150, 0, 5)
    assert cmc["runs_in_window"] == 3
    only_two = {s["source"]: s for s in get(api, "/api/sources", runs=2)["sources"]}
    assert only_two["coinmarketcap"]["errors_in_window"] == 1
    assert only_two["coingecko"]["reasons"] == {}
    first_two = get(api, "/api/sources", runs=3)
    assert first_two["runs"] == 3


def test_healthz(api: httpx.Client) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_database_down_is_503(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "x.db"
    engine = sa.create_engine(f"sqlite:///{missing}")  # not make_engine: it would create the directory
    try:
        for served in serve(engine):
            response = served.http.get("/healthz")
            assert response.status_code == 503
            assert response.json()["database"] == "unavailable"
            response = served.http.get("/api/coins")
            assert response.status_code == 503
            assert response.json()["error"] == "database unavailable"
            response = served.http.get("/metrics")
            assert response.status_code == 200
            assert "cryptoviz_database_up 0.0" in response.text
    finally:
        engine.dispose()


@pytest.mark.parametrize("path", ["/api/coins", "/api/coins/bitcoin", "/api/coins/bitcoin/history", "/api/sources"])
def test_a_failing_database_is_503_on_every_read(tmp_path: Path, shared_engine: sa.Engine, path: str) -> None:
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    try:
        # Two applications in one process: each route reads its own application's engine.
        for down in serve(broken):
            for up in serve(shared_engine):
                response = down.http.get(path)
                assert response.status_code == 503
                assert response.json() == {"error": "database unavailable",
                                           "detail": "the database query failed (OperationalError)"}
                assert up.http.get(path).status_code == 200
    finally:
        broken.dispose()


def test_a_failing_database_is_an_error_event_on_the_stream(tmp_path: Path) -> None:
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    try:
        for served in serve(broken, poll_interval=0.2):
            with served.http.stream("GET", "/api/stream") as response:
                assert response.status_code == 200
                assert next(events(response)) == ("error", '{"error": "database unavailable"}')
    finally:
        broken.dispose()


def test_status_command_shows_the_same_health_as_the_api(api: httpx.Client, shared_engine: sa.Engine,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console
    from typer.testing import CliRunner

    from cryptoviz import cli

    console = Console(record=True, width=200)
    monkeypatch.setattr(cli, "console", console)
    url = shared_engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli.app, ["status", "--database-url", url])
    assert result.exit_code == 0, result.output
    text = console.export_text()
    assert "last cycle: 2026-11-27 12:02:00 UTC, partial, 0 coins published, 150 fetched, 0 rejected, 3.0s" in text
    assert "sources (last 10 cycles)" in text
    rows = {line.split()[1]: line for line in text.splitlines() if line.split()[1:2] in (["coingecko"],
                                                                                         ["coinmarketcap"])}
    api_health = {s["source"]: s for s in get(api, "/api/sources", runs=10)["sources"]}
    for name, h in api_health.items():
        cells = [c.strip() for c in rows[name].strip("│ ").split("│")]
        last_ok = h["last_ok"].replace("T", " ").removesuffix("Z") if h["last_ok"] else "never"
        strategy = (h["strategy"] or "-") + (" (fell back)" if h["fell_back"] else "")
        assert cells == [name, str(h["fetched"]), str(h["rejected"]), h["breaker"], str(h["failures_in_a_row"]),
                         last_ok, h["last_error"] or "", strategy]

def test_metrics_show_observed_runs_and_database_counts(api: httpx.Client) -> None:
    run = RunReport(started_at=T0, finished_at=T0 + timedelta(seconds=1))
    run.sources["api-test-source"] = SourceReport("api-test-source", fetched=7, rejected=2, reasons={"stale": 2})
    metrics.observe_run(run)
    metrics.observe_stored(5)
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'cryptoviz_quotes_fetched_total{source="api-test-source"} 7.0' in text
    assert 'cryptoviz_quotes_rejected_total{reason="stale",source="api-test-source"} 2.0' in text
    assert "cryptoviz_snapshots_stored_total" in text
    assert "cryptoviz_cycle_duration_seconds_bucket" in text
    assert "cryptoviz_database_up 1.0" in text
    assert f'cryptoviz_database_rows{{table="currency_data_history"}} {float(CYCLES * len(COINS))}' in text
    assert f'cryptoviz_database_rows{{table="currencies"}} {float(len(COINS))}' in text
    assert 'cryptoviz_database_rows{table="pipeline_runs"} 3.0' in text
    # from the last recorded run: CoinGecko failed, CoinMarketCap answered
    assert 'cryptoviz_source_up{source="coingecko"} 0.0' in text
    assert 'cryptoviz_source_up{source="coinmarketcap"} 1.0' in text
    values = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
              if not s.labels}
    assert values["cryptoviz_last_observation_timestamp_seconds"] == (T0 + timedelta(minutes=CYCLES - 1)).timestamp()
    assert values["cryptoviz_last_run_timestamp_seconds"] == (T0 + timedelta(minutes=2, seconds=3)).timestamp()


# --- dashboard and OpenAPI -------------------------------------------------------------------------------


def test_dashboard_and_local_plotly(api: httpx.Client) -> None:
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in ('data-testid="market-table"', 'data-testid="chart"', 'data-testid="last-update"',
                   "static/plotly.min.js", "static/app.js"):
        assert needle in page.text
    assert "cdn" not in page.text.lower()
    js = api.get("/static/app.js")
    assert js.status_code == 200 and "EventSource" in js.text
    assert api.get("/static/app.css").status_code == 200
    plotly = api.get("/static/plotly.min.js")
    assert plotly.status_code == 200
    assert "javascript" in plotly.headers["content-type"]
    assert len(plotly.content) > 1_000_000 and b"plotly" in plotly.content[:2000].lower()


def test_openapi_documents_the_endpoints(api: httpx.Client) -> None:
    spec = get(api, "/openapi.json")
    assert spec["info"]["title"] == "CryptoViz API"
    for path in ("/api/coins", "/api/coins/{coin_id}", "/api/coins/{coin_id}/history", "/api/coins/{coin_id}/gaps",
                 "/api/gaps", "/api/sources", "/api/stream", "/healthz", "/metrics"):
        assert path in spec["paths"], path
        assert spec["paths"][path]["get"]["summary"]
    schemas = spec["components"]["schemas"]
    assert {"CoinRow", "CoinPage", "CoinDetail", "HistoryOut", "CandleOut", "SourcesOut", "ParameterErrorOut",
            "GapsOut"} <= set(schemas)
    assert schemas["HistoryOut"]["properties"]["tier"]["enum"] == ["raw", "5m", "1h", "1d"]
    coins = spec["paths"]["/api/coins"]["get"]
    assert coins["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ParameterErrorOut")
    assert "text/event-stream" in spec["paths"]["/api/stream"]["get"]["responses"]["200"]["content"]
    # what a value is worth: each field says what it means
    for schema, fields in (("CoinRow", ("price_low", "price_high", "unverified", "price_at", "age_s", "stale")),
                           ("CandleOut", ("price_low", "price_high", "unverified_n", "unverified")),
                           ("HistoryOut", ("points", "age_s", "stale"))):
        for name in fields:
            assert len(schemas[schema]["properties"][name].get("description", "")) > 20, (schema, name)
    assert "staleness" in schemas["CoinRow"]["properties"]["stale"]["description"]
    assert "95 %" in schemas["CoinRow"]["properties"]["price_low"]["description"]


# --- bearer token ------------------------------------------------------------------------------------------


@pytest.fixture
def secured(shared_engine: sa.Engine) -> Iterator[Served]:
    settings = Settings(_env_file=None, api_token=SecretStr(TOKEN))  # type: ignore[call-arg]
    yield from serve(shared_engine, settings, poll_interval=0.2)


def test_token_is_required_on_api_and_metrics(secured: Served) -> None:
    http = secured.http
    good = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/api/coins", "/api/coins/bitcoin", "/api/coins/bitcoin/history", "/api/sources", "/metrics",
                 "/api/stream"):
        response = http.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text
        assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    for path in ("/api/coins", "/api/coins/bitcoin", "/api/sources", "/metrics"):
        assert http.get(path, headers=good).status_code == 200, path
    # Open: the health check and the page (the page passes the token to its own calls).
    assert http.get("/healthz").status_code == 200
    assert http.get("/").status_code == 200
    assert http.get("/static/app.js").status_code == 200
    # ?token= only on the stream (EventSource cannot send headers), never on the other endpoints.
    assert http.get("/api/coins", params={"token": TOKEN}).status_code == 401
    with http.stream("GET", "/api/stream", params={"token": TOKEN}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert next(iter(events(response)))[0] == "snapshot"
    with http.stream("GET", "/api/stream", headers=good) as response:
        assert response.status_code == 200


def test_unauthorized_body_and_where_the_token_may_be(secured: Served) -> None:
    http = secured.http
    response = http.get("/api/coins")
    assert response.json() == {"error": "unauthorized",
                               "detail": "missing or wrong bearer token: send 'Authorization: Bearer <token>'"}
    assert http.get("/api/stream", params={"token": "wrong"}).status_code == 401
    # A bearer header is checked on its own: a right ?token= does not make up for a wrong header.
    assert http.get("/api/stream", params={"token": TOKEN}, headers={"Authorization": "Bearer wrong"}
                    ).status_code == 401
    assert http.get("/metrics", params={"token": TOKEN}).status_code == 401
    spec = get(http, "/openapi.json")
    assert spec["components"]["securitySchemes"] == {"HTTPBearer": {
        "type": "http", "scheme": "bearer", "description": "The value of CRYPTOVIZ_API_TOKEN."}}
    assert spec["paths"]["/api/coins"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


@pytest.mark.parametrize("token", [None, ""])
def test_without_a_token_everything_is_open_and_documented_so(shared_engine: sa.Engine, token: str | None) -> None:
    settings = Settings(_env_file=None, api_token=None if token is None else SecretStr(token))  # type: ignore[call-arg]
    for served in serve(shared_engine, settings):
        for path in ("/api/coins", "/api/coins/bitcoin", "/api/sources", "/metrics"):
            assert served.http.get(path).status_code == 200, path
        spec = get(served.http, "/openapi.json")
        assert "securitySchemes" not in spec.get("components", {})
        assert all("security" not in op for item in spec["paths"].values() for op in item.values())

# --- the live stream -----------------------------------------------------------------------------------------


def events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event name, data) per SSE event; comments come out as ('comment', text)."""
    name, data = "message", list[str]()
    for line in response.iter_lines():
        if line == "":
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def test_stream_sends_a_snapshot_then_keepalives_then_the_changed_rows(engine: sa.Engine) -> None:
    for served in serve(engine, poll_interval=0.2):
        with served.http.stream("GET", "/api/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            stream = events(response)
            name, data = next(stream)
            assert name == "snapshot"
            first = json.loads(data)
            assert first["observed_at"] == "2026-11-27T12:06:00Z" and first["total"] == 5
            assert [c["id"] for c in first["coins"]] == ["bitcoin", "ethereum", "zcash", "tether", "dogecoin"]
            assert first["coins"][0]["price"] == 108.0 and isinstance(first["seq"], int)
            assert next(stream) == ("comment", "keepalive")  # nothing new yet
            # A new observation, written the way the pipeline writes it (another process would do the same).
            new_at = T0 + timedelta(minutes=CYCLES)
            open_sink(engine).write([snap(COINS[0], 0, at=new_at, price=111.5)])
            name, data = next(e for e in stream if e[0] != "comment")
            assert name == "delta"
            delta = json.loads(data)
            assert delta["seq"] == first["seq"] + 1 and delta["removed"] == []
            assert delta["observed_at"] == new_at.isoformat().replace("+00:00", "Z")
            [btc] = delta["coins"]  # only the changed row, whole, in the snapshot's shape
            assert btc["id"] == "bitcoin" and btc["price"] == 111.5 and btc["observed_at"] == delta["observed_at"]
            assert btc.keys() == first["coins"][0].keys()
        # The client went away: the server is still fine and stops promptly.
        assert served.http.get("/healthz").status_code == 200


def read_until(url: str, stop_when: Callable[[str, dict[str, Any]], bool], *, opened: threading.Barrier,
               timeout: float = 20) -> tuple[float, str, list[tuple[str, dict[str, Any]]]]:
    """One SSE client on its own connection: its events until ``stop_when``, the time it came and its data."""
    seen: list[tuple[str, dict[str, Any]]] = []
    with httpx.Client(timeout=timeout) as http, http.stream("GET", f"{url}/api/stream") as response:
        for name, data in events(response):
            if name == "comment":
                continue
            body = json.loads(data)
            seen.append((name, body))
            if name == "snapshot" and len(seen) == 1:
                opened.wait(timeout)
            if stop_when(name, body):
                return time.monotonic(), data, seen
    raise AssertionError(f"the stream ended early: {seen}")


def test_many_clients_share_one_reader_and_get_the_same_delta(engine: sa.Engine) -> None:
    clients = 25
    app = create_app(engine, no_token(), poll_interval=0.2)
    hub = app.state.live
    for served in serve_app(app):
        opened = threading.Barrier(clients + 1)
        wanted = lambda name, body: name == "delta" and any(c["price"] == 222.0 for c in body["coins"])  # noqa: E731
        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(read_until, served.handle.url, wanted, opened=opened) for _ in range(clients)]
            opened.wait(20)  # every client has its first snapshot
            assert hub.stats.snapshots_read == 1 and hub.stats.subscribers == clients
            encoded, polls, started = hub.stats.encoded, hub.stats.polls, time.monotonic()
            open_sink(engine).write([snap(COINS[1], 0, at=T0 + timedelta(minutes=CYCLES), price=222.0)])
            results = [f.result(timeout=30) for f in futures]
        elapsed = time.monotonic() - started
        assert len({data for _, data, _ in results}) == 1  # the same bytes to all
        assert hub.stats.encoded == encoded + 1  # one encoding of that delta
        assert hub.stats.polls - polls <= elapsed / 0.2 + 3  # one query per poll, not one per client
        for _, _, seen in results:
            assert [name for name, _ in seen] == ["snapshot", "delta"]
            assert seen[1][1]["seq"] == seen[0][1]["seq"] + 1


def test_a_write_in_this_process_wakes_the_stream_at_once(engine: sa.Engine) -> None:
    app = create_app(engine, no_token(), poll_interval=30.0)  # a poll every 30 s: only the notification is fast
    for served in serve_app(app):
        with served.http.stream("GET", "/api/stream") as response:
            stream = events(response)
            assert next(stream)[0] == "snapshot"
            open_sink(engine).write([snap(COINS[2], 0, at=T0 + timedelta(minutes=CYCLES), price=1.5)])
            started = time.monotonic()
            app.state.live.notify(1)  # what the writer's on_write does after each committed batch
            name, data = next(stream)
            assert name == "delta" and json.loads(data)["coins"][0]["id"] == "tether"
            assert time.monotonic() - started < 1


def test_a_client_that_does_not_read_is_resynced_and_delays_nobody(engine: sa.Engine) -> None:
    app = create_app(engine, no_token(), poll_interval=0.05)
    app.state.live = hub = LiveHub.over(engine, poll_interval=0.05, stop=app.state.shutdown, queue_frames=4)
    others = [numbered(i, 0, t0=T0, base_price=1.0) for i in range(95)]  # 100 coins: deltas of about 40 kB
    for served in serve_app(app):
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, never read
        stalled.connect((served.handle.host, served.handle.port))
        stalled.sendall(b"GET /api/stream HTTP/1.1\r\nHost: test\r\n\r\n")
        try:
            with served.http.stream("GET", "/api/stream") as response:
                stream = events(response)
                assert next(stream)[0] == "snapshot"
                deadline = time.monotonic() + 60
                k = 0
                while hub.stats.resyncs == 0:  # until the stalled socket's buffers (megabytes) are full
                    assert time.monotonic() < deadline, hub.stats
                    k += 1
                    at = T0 + timedelta(minutes=CYCLES, seconds=k)
                    open_sink(engine).write([snap(c, 0, at=at, price=c.price(0) + k) for c in COINS]
                                            + [replace(o, observed_at=at, price=o.price + k) for o in others])
                    started = time.monotonic()
                    for _, data in stream:  # the change arrives at once (a delta, or in a periodic snapshot)
                        if '"id":"bitcoin"' in data and f'"price":{BTC[0] + k}' in data:
                            break
                    assert time.monotonic() - started < 2  # the stalled client blocks nobody
                assert hub.stats.subscribers == 2  # and it is still connected
        finally:
            stalled.close()


def test_an_old_value_stays_listed_as_stale_with_its_age_everywhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ages.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC).replace(microsecond=0)
    btc, eth, tether = COINS[0], COINS[1], COINS[2]
    open_sink(engine).write([
        snap(btc, 0, at=now - timedelta(seconds=5)),  # quoted 50 s ago: fresh
        snap(eth, 0, at=now - timedelta(hours=2)),  # nothing since: stale, from its observation
        replace(snap(tether, 0, at=now - timedelta(seconds=1)), price_at=now - timedelta(seconds=700)),
    ])
    settings = Settings(_env_file=None, api_token=None, max_staleness=600)  # type: ignore[call-arg]
    try:
        app = create_app(engine, settings, poll_interval=0.2)
        for served in serve_app(app):
            rows = {c["id"]: c for c in get(served.http, "/api/coins")["coins"]}
            assert set(rows) == {"bitcoin", "ethereum", "tether"}  # the stale ones do not vanish
            assert 50 <= rows["bitcoin"]["age_s"] < 60 and rows["bitcoin"]["stale"] is False
            assert 7200 <= rows["ethereum"]["age_s"] < 7210 and rows["ethereum"]["stale"] is True
            assert 700 <= rows["tether"]["age_s"] < 710 and rows["tether"]["stale"] is True  # a new cycle, an old quote
            detail = get(served.http, "/api/coins/ethereum")
            assert detail["stale"] is True and detail["age_s"] >= 7200
            history = get(served.http, "/api/coins/bitcoin/history")
            assert history["stale"] is False and 50 <= history["age_s"] < 60
            with served.http.stream("GET", "/api/stream") as response:
                stream = events(response)
                name, data = next(stream)
                streamed = {c["id"]: c for c in json.loads(data)["coins"]}
                assert name == "snapshot" and set(streamed) == set(rows)
                assert {k: (c["stale"], c["unverified"], c["price_low"]) for k, c in streamed.items()} == {
                    "bitcoin": (False, False, 99.0), "ethereum": (True, False, None), "tether": (True, False, None)}
                assert streamed["ethereum"]["age_s"] >= 7200
                # rows read again (they are younger than the stream's 2 s overlap) are no change: only their
                # age grew, so no delta comes
                assert next(stream) == ("comment", "keepalive")
                assert next(stream) == ("comment", "keepalive")
    finally:
        engine.dispose()


def test_the_per_client_stream_is_still_there_for_comparisons(engine: sa.Engine) -> None:
    app = create_app(engine, no_token(), poll_interval=0.2)
    app.state.stream_mode = "per-client"
    for served in serve_app(app):
        with served.http.stream("GET", "/api/stream") as response:
            stream = events(response)
            name, data = next(stream)
            assert name == "snapshot" and "seq" not in json.loads(data)
            open_sink(engine).write([snap(COINS[0], 0, at=T0 + timedelta(minutes=CYCLES), price=111.5)])
            name, data = next(e for e in stream if e[0] != "comment")
            assert name == "snapshot" and json.loads(data)["coins"][0]["price"] == 111.5
        assert app.state.live.stats.started == 0  # the shared reader never ran


def test_the_stream_documents_its_events(api: httpx.Client) -> None:
    text = get(api, "/openapi.json")["paths"]["/api/stream"]["get"]["description"]
    for word in ("`event: snapshot`", "`event: delta`", "`event: error`", "`seq`", "`removed`", "`total`",
                 "keepalive", "`?token=`"):
        assert word in text, word


def test_stopping_the_server_ends_open_streams(shared_engine: sa.Engine) -> None:
    app = create_app(shared_engine, no_token(), poll_interval=0.2)
    handle = serve_in_thread(app, port=0)
    with httpx.Client(base_url=handle.url, timeout=10) as http, http.stream("GET", "/api/stream") as response:
        stream = events(response)
        assert next(stream)[0] == "snapshot"
        started = time.monotonic()
        handle.stop()
        assert time.monotonic() - started < 5
        assert not handle.running
        rest = list(stream)  # the stream ends instead of hanging
        assert all(name == "comment" for name, _ in rest)


# --- the server ------------------------------------------------------------------------------------------------


def test_a_response_does_not_wait_for_the_clients_delayed_ack(shared_engine: sa.Engine) -> None:
    # uvicorn writes the headers, then the body: with Nagle on, the body waits for the ACK of the headers,
    # which the client delays 40 ms. The fastest of a few requests on one connection shows whether it waited.
    app = create_app(shared_engine, no_token())
    with serve_in_thread(app, port=0) as handle, httpx.Client(base_url=handle.url, timeout=10) as http:
        took = []
        for _ in range(8):
            started = time.perf_counter()
            assert http.get("/api/coins", params={"limit": 100}).status_code == 200
            took.append(time.perf_counter() - started)
    assert min(took) < 0.030, took


def test_port_zero_gives_a_real_port_and_a_taken_port_is_a_clear_error(shared_engine: sa.Engine) -> None:
    app = create_app(shared_engine, no_token())
    with serve_in_thread(app, port=0) as handle:
        assert handle.port > 0 and handle.url == f"http://127.0.0.1:{handle.port}"
        assert httpx.get(f"{handle.url}/healthz", timeout=5).status_code == 200
        with pytest.raises(CryptoVizError, match=rf"port {handle.port} on 127.0.0.1 is in use: pass --port"):
            serve_in_thread(app, port=handle.port)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        with pytest.raises(CryptoVizError, match="is in use"):
            serve_in_thread(app, port=port)
