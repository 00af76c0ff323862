"""The simulator's HTTP server: CoinGecko-, CoinMarketCap- and CoinPaprika-shaped endpoints on 127.0.0.1.

Routes:

* ``GET /api/v3/ping`` and ``GET /api/v3/coins/markets`` (CoinGecko API v3);
* ``GET /api/v3/coins/{id}/market_chart?vs_currency=usd&days=N`` (CoinGecko: a coin's past, with the
  automatic granularity: 5-minutely up to 1 day, hourly up to 90, daily beyond; at most 365 days, as the
  keyless and demo API; see ``cryptoviz.simulator.history``);
* ``GET /v1/cryptocurrency/listings/latest`` (CoinMarketCap Pro API; needs ``X-CMC_PRO_API_KEY``);
* ``GET /v2/cryptocurrency/quotes/historical?id=N&time_start=&time_end=&interval=`` (CoinMarketCap: refused
  with error 1006 as on the free Basic plan, unless the simulator is started with ``cmc_historical=True``);
* ``GET /coinpaprika/v1/tickers?quotes=USD,BTC`` (CoinPaprika API; keyless like the free plan, which
  leaves ``circulating_supply`` out; with an ``Authorization`` key, as a paid plan, it is in);
* ``GET /coingecko-www/en?page=N``, ``/coingecko-www/fr?page=N``, ``GET /cmc-www/?page=N``,
  ``/cmc-www/fr/?page=N``: HTML pages, 100 coins each, rendered by ``cryptoviz.simulator.pages`` when that
  module exists (404 otherwise);
* ``GET /_sim/stats``: requests per route and faults injected per source, for tests.

On a second port, the exchanges' websocket feeds (``ws://127.0.0.1:<feed_port>/binance``, ``/coinbase``,
``/kraken/v2``; see :mod:`cryptoviz.simulator.feeds`), a tick every ``feed_tick`` seconds.

Each request (and each feed tick) first moves the market to "now", so consecutive cycles see different
prices.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType, TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from cryptoviz.simulator import faults as _faults
from cryptoviz.simulator.coins import CoinSpec, coins
from cryptoviz.simulator.faults import Decision, FaultInjector, Faults, ItemStyle
from cryptoviz.simulator.feeds import FeedServer
from cryptoviz.simulator.market import COINGECKO_PERIODS, SUPPORTED_CURRENCIES, Market

logger = logging.getLogger(__name__)

PAGES_MODULE = "cryptoviz.simulator.pages"
HTML_PAGE_SIZE = 100
API_KEY_PLACEHOLDER = "simulator-placeholder-key"

COINGECKO_RATE_LIMIT_MESSAGE = (
    "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing to subscribe to "
    "our API plans for higher rate limits."
)
COINMARKETCAP_RATE_LIMIT_MESSAGE = (
    "You've exceeded your API Key's HTTP request rate limit. Rate limits reset every minute."
)
# The keyless and demo API's answer to a market_chart reaching more than a year back (HTTP 401).
COINGECKO_RANGE_MESSAGE = (
    "Your request exceeds the allowed time range. Public API users are limited to querying historical data "
    "within the past 365 days. Upgrade to a paid plan to enjoy full historical data access: "
    "https://www.coingecko.com/en/api/pricing. "
)
COINGECKO_MAX_DAYS = 365
MARKET_CHART_ROUTE = "/api/v3/coins/{id}/market_chart"
_MARKET_CHART = re.compile(r"^/api/v3/coins/([^/]+)/market_chart$")
CMC_HISTORICAL = "/v2/cryptocurrency/quotes/historical"
CMC_PLAN_MESSAGE = "Your API Key subscription plan doesn't support this endpoint."
_CMC_INTERVALS = {"5m": 300, "1h": 3600, "hourly": 3600, "1d": 86_400, "24h": 86_400, "daily": 86_400}
COINPAPRIKA_PREFIX = "/coinpaprika/v1"
COINPAPRIKA_MAX_QUOTES = 3
# The error faults as CoinPaprika answers them: (HTTP status, the "error" message; {key}: the key sent).
COINPAPRIKA_ERRORS: dict[str, tuple[int, str]] = {
    "rate-limit": (429, "you have reached maximum request limit"),
    "server-error": (500, "internal server error"),
    "bad-key": (403, "invalid API key: {key}"),
}
_COINGECKO_ORDERS = ("market_cap_desc", "market_cap_asc", "volume_desc", "volume_asc", "id_asc", "id_desc")
_HTML_LANGS = {"en": ("usd", "USD"), "fr": ("eur", "EUR")}

Query = dict[str, list[str]]


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(payload).encode(), headers=headers or {})


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, text.encode(), "text/plain; charset=utf-8", headers or {})


def _html(status: int, text: str, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, text.encode(), "text/html; charset=utf-8", headers or {})


def _param(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _int_param(query: Query, name: str, default: int) -> int | None:
    """The integer value of ``name``, ``default`` when absent, None when not an integer."""
    raw = _param(query, name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return None


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _cmc_status(now: datetime, error_code: int = 0, error_message: str | None = None, *,
                elapsed: int = 0, credit_count: int = 0, total_count: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "timestamp": _timestamp(now),
        "error_code": error_code,
        "error_message": error_message,
        "elapsed": elapsed,
        "credit_count": credit_count,
        "notice": None,
    }
    if total_count is not None:
        status["total_count"] = total_count
    return status


def _cmc_error(http_status: int, now: datetime, error_code: int, message: str,
               headers: dict[str, str] | None = None) -> _Response:
    return _json(http_status, {"status": _cmc_status(now, error_code, message)}, headers)


# What a broken proxy may pass on with a 200: the start of a gzip stream, served without Content-Encoding.
GARBAGE_BYTES = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xed\xbd\x07`\x1cI\x96%&/m\xca{\x7fJ\xf5J\xd7\xe0t\xa1\x08"


def _garbage(response: _Response, decision: Decision) -> _Response:
    """The ``garbage`` fault: a 200 whose body is not the page, alternately the real body cut in half (a
    dropped connection) and binary junk."""
    if decision.request % 2:
        return _Response(200, response.body[:max(1, len(response.body) // 2)], response.content_type)
    return _Response(200, GARBAGE_BYTES, "application/octet-stream")


def _html_error(status: int, title: str, headers: dict[str, str] | None = None) -> _Response:
    page = (f"<!DOCTYPE html><html><head><title>{status} {title}</title></head>"
            f"<body><h1>{title}</h1></body></html>")
    return _html(status, page, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator: Simulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cryptoviz-simulator"

    def do_GET(self) -> None:
        simulator = cast(_Server, self.server).simulator
        try:
            response = simulator._handle(self.path, self.headers.get("X-CMC_PRO_API_KEY"),
                                         self.headers.get("x-cg-demo-api-key"), self.headers.get("Authorization"))
        except Exception:  # the simulator must answer, whatever went wrong
            logger.exception("simulator failed on %s", self.path)
            response = _text(500, "simulator error\n")
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("client went away before the answer to %s", self.path)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)


class Simulator:
    """A market simulator on ``host`` (running after :meth:`start`); also a context manager.

    ``faults=None`` is :meth:`Faults.demo_default`; pass ``"none"`` for a fault-free market. ``feed_tick``:
    seconds between two updates of the websocket feeds (on ``feed_port``; 0: any free port).
    """

    def __init__(self, port: int = 0, faults: Faults | str | None = None, seed: int = 0,
                 n_coins: int = 200, step_seconds: float = 1.0, host: str = "127.0.0.1",
                 extra_coins: Sequence[CoinSpec] = (), cmc_historical: bool = False, *,
                 feed_tick: float = 1.0, feed_port: int = 0) -> None:
        self.host = host
        # whether the simulated CoinMarketCap key's plan includes historical quotes (the free plan does not)
        self.cmc_historical = cmc_historical
        self.port = port
        self.seed = seed
        # None means the demo set (what ``cryptoviz simulate``/``demo`` run); "none" means no fault at all
        self.faults = Faults.demo_default() if faults is None else Faults.coerce(faults)
        self.step_seconds = step_seconds
        # extra_coins: served after the first n_coins, e.g. names that must survive every layer verbatim
        self.coins = coins(n_coins) + tuple(extra_coins)
        self.market = Market(seed, self.coins, step_seconds=step_seconds)
        self.injector = FaultInjector(self.faults, seed)
        self._market_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._routes: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.feeds = FeedServer(lambda: self.market, self._market_lock, self.faults, seed, host=host, port=feed_port,
                                tick_seconds=feed_tick)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Simulator:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.simulator = self
        self.port = int(server.server_address[1])
        with self._market_lock:
            self.market = Market(self.seed, self.coins, step_seconds=self.step_seconds)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"cryptoviz-simulator-{self.port}", daemon=True)
        self._thread.start()
        self.feeds.start()
        logger.debug("simulator listening on %s, feeds on %s (faults: %s)", self.url, self.feeds.url,
                     self.faults.describe())
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        self.feeds.stop()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.host}:{self.port}"

    def settings_overrides(self) -> dict[str, str]:
        """Settings field name -> value that point CryptoViz at this simulator."""
        return {
            "coingecko_base_url": f"{self.url}/api/v3",
            "coinmarketcap_base_url": self.url,
            "coinmarketcap_api_key": API_KEY_PLACEHOLDER,
            "coingecko_html_base_url": f"{self.url}/coingecko-www",
            "coinmarketcap_html_base_url": f"{self.url}/cmc-www",
            "coinpaprika_base_url": f"{self.url}{COINPAPRIKA_PREFIX}",
            **{f"{exchange}_ws_url": url for exchange, url in self.feeds.urls().items()},
        }

    def env_lines(self) -> list[str]:
        """``export CRYPTOVIZ_...=...`` lines for a shell."""
        overrides = self.settings_overrides()
        return [f"export CRYPTOVIZ_{name.upper()}={value}" for name, value in overrides.items()]

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            routes = dict(sorted(self._routes.items()))
        with self._market_lock:
            tick = self.market.tick
        return {
            "seed": self.seed,
            "faults": str(self.faults),
            "tick": tick,
            "requests": routes,
            "sources": self.injector.stats(),
            "feeds": self.feeds.stats(),
        }

    def __repr__(self) -> str:
        where = self.url if self.running else "not started"
        return f"Simulator({where}, seed={self.seed}, coins={len(self.coins)}, faults={self.faults})"

    # --- routing -------------------------------------------------------------------------------

    def _count(self, route: str) -> None:
        with self._stats_lock:
            self._routes[route] += 1

    def _handle(self, target: str, api_key: str | None, coingecko_key: str | None = None,
                paprika_key: str | None = None) -> _Response:
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        now = datetime.now(UTC)
        with self._market_lock:
            self.market.step(now)
        if path == "/api/v3/ping":
            self._count(path)
            return _json(200, {"gecko_says": "(V3) To the Moon!"})
        if path == "/api/v3/coins/markets":
            self._count(path)
            return self._coingecko_markets(query, coingecko_key)
        chart = _MARKET_CHART.match(path)
        if chart is not None:
            self._count(MARKET_CHART_ROUTE)
            return self._coingecko_market_chart(unquote(chart.group(1)), query, coingecko_key)
        if path == "/v1/cryptocurrency/listings/latest":
            self._count(path)
            return self._coinmarketcap_listings(query, api_key)
        if path == CMC_HISTORICAL:
            self._count(path)
            return self._coinmarketcap_historical(query, api_key)
        if path == f"{COINPAPRIKA_PREFIX}/tickers":
            self._count(path)
            return self._coinpaprika_tickers(query, paprika_key)
        if path == "/_sim/stats":
            return _json(200, self.stats())
        if path == "/coingecko-www" or path.startswith("/coingecko-www/"):
            return self._coingecko_html(path.removeprefix("/coingecko-www").strip("/"), query)
        if path == "/cmc-www" or path.startswith("/cmc-www/"):
            return self._coinmarketcap_html(path.removeprefix("/cmc-www").strip("/"), query)
        self._count("not-found")
        if path.startswith(f"{COINPAPRIKA_PREFIX}/"):
            return _json(404, {"error": "not found"})
        if path.startswith("/api/"):
            return _json(404, {"error": "Incorrect path. Please check https://docs.coingecko.com/"})
        if path.startswith(("/v1/", "/v2/")):
            return _cmc_error(404, now, 404, "Not found")
        return _text(404, f"no such simulator route: {path}\n")

    def _decide(self, source: str, first_page: bool, stream: str | None = None) -> Decision:
        decision = self.injector.decide(source, first_page, stream=stream)
        if decision.delay:
            time.sleep(decision.delay)
        return decision

    def _factors(self, decision: Decision) -> dict[str, float]:
        return _faults.price_factors(self.faults, decision)

    def _maybe_corrupt(self, items: list[Any], decision: Decision, style: ItemStyle) -> list[Any]:
        if decision.malformed_seed is None:
            return items
        return _faults.corrupt_items(items, style, self.faults.malformed_items, decision.malformed_seed)

    # --- CoinGecko API ---------------------------------------------------------------------------

    def _coingecko_markets(self, query: Query, api_key: str | None = None) -> _Response:
        vs_currency = (_param(query, "vs_currency") or "").strip().lower()
        if not vs_currency:
            return _json(400, {"error": "Missing parameter vs_currency"})
        if vs_currency not in SUPPORTED_CURRENCIES:
            return _json(400, {"error": "invalid vs_currency"})
        order = _param(query, "order") or "market_cap_desc"
        if order not in _COINGECKO_ORDERS:
            return _json(400, {"error": "invalid order"})
        per_page = _int_param(query, "per_page", 100)
        page = _int_param(query, "page", 1)
        if per_page is None:
            return _json(400, {"error": "invalid per_page"})
        if page is None:
            return _json(400, {"error": "invalid page"})
        per_page, page = min(max(per_page, 1), 250), max(page, 1)
        periods = [p.strip() for p in (_param(query, "price_change_percentage") or "").split(",")]
        periods = [p for p in periods if p in COINGECKO_PERIODS]
        ids = {i.strip() for i in (_param(query, "ids") or "").split(",") if i.strip()}

        decision = self._decide("coingecko", first_page=page == 1)
        error = self._coingecko_error(decision, api_key)
        if error is not None:
            return error
        with self._market_lock:
            items = self.market.coingecko_markets(
                vs_currency, order=order, price_change_percentage=periods,
                price_factors=self._factors(decision))
        if ids:
            items = [item for item in items if item["id"] in ids]
        start = (page - 1) * per_page
        response = _json(200, self._maybe_corrupt(items[start:start + per_page], decision, "coingecko"))
        return _garbage(response, decision) if decision.error == "garbage" else response

    def _coingecko_error(self, decision: Decision, api_key: str | None) -> _Response | None:
        """The answer to an error fault of a CoinGecko API route (``None``: no error this time)."""
        if decision.error == "rate-limit":
            return _json(429, {"status": {"error_code": 429, "error_message": COINGECKO_RATE_LIMIT_MESSAGE}},
                         {"Retry-After": "1"})
        if decision.error == "server-error":
            return _json(500, {"status": {"error_code": 500, "error_message": "Internal Server Error"}})
        if decision.error == "bad-key":
            return _json(401, {"error": {"status": {
                "error_code": 10002, "error_message": f"Invalid API Key: {api_key or ''}. Please check your key"}}})
        return None

    def _coingecko_market_chart(self, coin_id: str, query: Query, api_key: str | None = None) -> _Response:
        vs_currency = (_param(query, "vs_currency") or "").strip().lower()
        if not vs_currency:
            return _json(400, {"error": "Missing parameter vs_currency"})
        if vs_currency not in SUPPORTED_CURRENCIES:
            return _json(400, {"error": "invalid vs_currency"})
        raw_days = (_param(query, "days") or "").strip().lower()
        if not raw_days:
            return _json(400, {"error": "Missing parameter days"})
        try:
            days = math.inf if raw_days == "max" else float(raw_days)
        except ValueError:
            return _json(400, {"error": "invalid days"})
        if not days > 0:
            return _json(400, {"error": "invalid days"})
        interval = (_param(query, "interval") or "").strip().lower() or None
        if interval not in (None, "daily", "hourly"):
            return _json(400, {"error": "invalid interval"})
        if days > COINGECKO_MAX_DAYS:
            return _json(401, {"error": {"status": {"timestamp": _timestamp(datetime.now(UTC)),
                                                    "error_code": 10012, "error_message": COINGECKO_RANGE_MESSAGE}}})
        if self.market.coin(coin_id) is None:
            return _json(404, {"error": "coin not found"})
        decision = self._decide("coingecko", first_page=False, stream="coingecko/market_chart")
        error = self._coingecko_error(decision, api_key)
        if error is not None:
            return error
        with self._market_lock:
            chart = self.market.coingecko_market_chart(coin_id, vs_currency, days, interval=interval)
        if decision.malformed_seed is not None:
            chart = _faults.corrupt_chart(chart, self.faults.malformed_items, decision.malformed_seed)
        response = _json(200, chart)
        return _garbage(response, decision) if decision.error == "garbage" else response

    # --- CoinMarketCap API -----------------------------------------------------------------------

    def _coinmarketcap_listings(self, query: Query, api_key: str | None) -> _Response:
        now = datetime.now(UTC)
        if not (api_key or "").strip():
            return _cmc_error(401, now, 1002, "API key missing.")
        start = _int_param(query, "start", 1)
        limit = _int_param(query, "limit", 100)
        if start is None or start < 1:
            return _cmc_error(400, now, 400, '"start" must be a number larger than or equal to 1')
        if limit is None or not 1 <= limit <= 5000:
            return _cmc_error(400, now, 400, '"limit" must be a number from 1 to 5000')
        convert = [c.strip().upper() for c in (_param(query, "convert") or "USD").split(",") if c.strip()]
        for code in convert or ["(empty)"]:
            if code.lower() not in SUPPORTED_CURRENCIES:
                return _cmc_error(400, now, 400, f'Invalid value for "convert": "{code}"')

        decision = self._decide("coinmarketcap", first_page=start == 1)
        if decision.error == "rate-limit":
            return _cmc_error(429, datetime.now(UTC), 1008, COINMARKETCAP_RATE_LIMIT_MESSAGE,
                              {"Retry-After": "1"})
        if decision.error == "server-error":
            return _cmc_error(500, datetime.now(UTC), 500, "An internal server error occurred.")
        if decision.error == "bad-key":
            return _cmc_error(401, datetime.now(UTC), 1001, f"This API Key is invalid: {api_key}")
        began = time.perf_counter()
        with self._market_lock:
            items = self.market.coinmarketcap_listings(convert, price_factors=self._factors(decision))
        data = self._maybe_corrupt(items[start - 1:start - 1 + limit], decision, "coinmarketcap")
        credits = max(1, math.ceil(len(data) / 200)) + max(0, len(convert) - 1)
        status = _cmc_status(datetime.now(UTC), elapsed=round((time.perf_counter() - began) * 1000),
                             credit_count=credits, total_count=len(items))
        response = _json(200, {"status": status, "data": data})
        return _garbage(response, decision) if decision.error == "garbage" else response

    def _coinmarketcap_historical(self, query: Query, api_key: str | None) -> _Response:
        now = datetime.now(UTC)
        if not (api_key or "").strip():
            return _cmc_error(401, now, 1002, "API key missing.")
        if not self.cmc_historical:
            return _cmc_error(403, now, 1006, CMC_PLAN_MESSAGE)
        raw_id = (_param(query, "id") or "").strip()
        if not raw_id.isdigit():
            return _cmc_error(400, now, 400, f'Invalid value for "id": "{raw_id}"')
        interval = _CMC_INTERVALS.get((_param(query, "interval") or "5m").strip().lower())
        count = _int_param(query, "count", 10)
        convert = (_param(query, "convert") or "USD").strip().upper()
        try:
            end = _moment(_param(query, "time_end")) or now
            start = _moment(_param(query, "time_start")) or end - timedelta(seconds=(interval or 300) * (count or 10))
        except (ValueError, OverflowError, OSError):
            return _cmc_error(400, now, 400, '"time_start" and "time_end" must be ISO 8601 or unix times')
        if interval is None or count is None or not 1 <= count <= 10_000:
            return _cmc_error(400, now, 400, '"interval" or "count" is invalid')
        if convert.lower() not in SUPPORTED_CURRENCIES:
            return _cmc_error(400, now, 400, f'Invalid value for "convert": "{convert}"')
        decision = self._decide("coinmarketcap", first_page=False, stream="coinmarketcap/quotes_historical")
        if decision.error == "rate-limit":
            return _cmc_error(429, now, 1008, COINMARKETCAP_RATE_LIMIT_MESSAGE, {"Retry-After": "1"})
        if decision.error == "server-error":
            return _cmc_error(500, now, 500, "An internal server error occurred.")
        if decision.error == "bad-key":
            return _cmc_error(401, now, 1001, f"This API Key is invalid: {api_key}")
        with self._market_lock:
            item = self.market.coinmarketcap_quotes_historical(int(raw_id), start, end, interval, convert=convert,
                                                               count=count)
        if item is None:
            return _cmc_error(400, now, 400, f'Invalid value for "id": "{raw_id}"')
        status = _cmc_status(datetime.now(UTC), credit_count=max(1, math.ceil(len(item["quotes"]) / 100)))
        response = _json(200, {"status": status, "data": {raw_id: item}})
        return _garbage(response, decision) if decision.error == "garbage" else response

    # --- CoinPaprika API -------------------------------------------------------------------------

    def _coinpaprika_tickers(self, query: Query, api_key: str | None) -> _Response:
        codes = [c.strip().upper() for c in (_param(query, "quotes") or "USD").split(",") if c.strip()]
        if not codes or len(codes) > COINPAPRIKA_MAX_QUOTES or any(
                c.lower() not in SUPPORTED_CURRENCIES for c in codes):
            return _json(400, {"error": "invalid quotes"})
        decision = self._decide("coinpaprika", first_page=True)  # one request is the whole cycle
        fault = COINPAPRIKA_ERRORS.get(decision.error or "")
        if fault is not None:
            status, message = fault
            return _json(status, {"error": message.format(key=api_key or "")},
                         {"Retry-After": "1"} if status == 429 else None)
        with self._market_lock:
            items = self.market.coinpaprika_tickers(codes, circulating=bool((api_key or "").strip()),
                                                    price_factors=self._factors(decision))
        response = _json(200, self._maybe_corrupt(items, decision, "coinpaprika"))
        return _garbage(response, decision) if decision.error == "garbage" else response

    # --- HTML pages ------------------------------------------------------------------------------

    def _pages(self) -> ModuleType | None:
        try:
            return importlib.import_module(PAGES_MODULE)
        except ModuleNotFoundError as exc:
            if exc.name != PAGES_MODULE:
                raise
            return None

    def _renderer(self, name: str) -> Callable[..., Any] | None:
        module = self._pages()
        render = getattr(module, name, None) if module is not None else None
        return render if callable(render) else None

    def _coingecko_html(self, rest: str, query: Query) -> _Response:
        lang = rest or "en"
        route = f"/coingecko-www/{lang}"
        if lang not in _HTML_LANGS:
            self._count("not-found")
            return _text(404, f"no such simulated coingecko.com page: /{rest}\n")
        self._count(route)
        render = self._renderer("render_coingecko_html")
        if render is None:
            return _text(404, f"HTML pages are not available: {PAGES_MODULE}.render_coingecko_html is "
                              "missing\n")
        page = _int_param(query, "page", 1)
        if page is None or page < 1:
            return _text(400, "page must be a positive integer\n")
        vs_currency = _HTML_LANGS[lang][0]

        decision = self._decide("coingecko-html", first_page=page == 1)
        if decision.error is not None and decision.error != "garbage":
            return self._html_fault(decision)
        with self._market_lock:
            items = self.market.coingecko_markets(
                vs_currency, price_change_percentage=("1h", "24h", "7d"),
                price_factors=self._factors(decision), source="coingecko-html")
        start = (page - 1) * HTML_PAGE_SIZE
        items = items[start:start + HTML_PAGE_SIZE]
        if not items:
            return _text(404, f"no page {page}: the simulated market lists {len(self.coins)} coins\n")
        return self._render(items, decision, lambda rows: str(render(rows, page, lang)))

    def _coinmarketcap_html(self, rest: str, query: Query) -> _Response:
        lang = rest or "en"
        if lang not in _HTML_LANGS:
            self._count("not-found")
            return _text(404, f"no such simulated coinmarketcap.com page: /{rest}\n")
        self._count("/cmc-www/" if lang == "en" else f"/cmc-www/{lang}/")
        render = self._renderer("render_coinmarketcap_html")
        if render is None:
            return _text(404, f"HTML pages are not available: {PAGES_MODULE}.render_coinmarketcap_html is "
                              "missing\n")
        page = _int_param(query, "page", 1)
        if page is None or page < 1:
            return _text(400, "page must be a positive integer\n")
        convert = _HTML_LANGS[lang][1]

        decision = self._decide("coinmarketcap-html", first_page=page == 1)
        if decision.error is not None and decision.error != "garbage":
            return self._html_fault(decision)
        with self._market_lock:
            items = self.market.coinmarketcap_listings(
                (convert,), price_factors=self._factors(decision), source="coinmarketcap-html")
        start = (page - 1) * HTML_PAGE_SIZE
        items = items[start:start + HTML_PAGE_SIZE]
        if not items:
            return _text(404, f"no page {page}: the simulated market lists {len(self.coins)} coins\n")
        return self._render(items, decision, lambda rows: str(render(rows, lang)))

    def _html_fault(self, decision: Decision) -> _Response:
        if decision.error == "rate-limit":
            return _html_error(429, "Too Many Requests", {"Retry-After": "1"})
        if decision.error == "bad-key":
            return _html_error(403, "Forbidden")
        return _html_error(500, "Internal Server Error")

    def _render(self, items: Sequence[dict[str, Any]], decision: Decision,
                render: Callable[[list[Any]], str]) -> _Response:
        broken = self._maybe_corrupt(list(items), decision, "html")
        try:
            response = _html(200, render(broken))
        except Exception:
            if broken == list(items):
                raise
            # the renderer cannot show a broken value: serve the page intact rather than fail
            logger.debug("renderer rejected malformed items; serving the page intact", exc_info=True)
            response = _html(200, render(list(items)))
        return _garbage(response, decision) if decision.error == "garbage" else response


def _moment(value: str | None) -> datetime | None:
    """An ISO 8601 or unix time parameter; ``None`` when absent. Raises ``ValueError`` when unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(text), UTC)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def start_simulator(port: int = 0, faults: Faults | str | None = None, seed: int = 0, n_coins: int = 200,
                    step_seconds: float = 1.0, host: str = "127.0.0.1",
                    extra_coins: Sequence[CoinSpec] = (), cmc_historical: bool = False, *,
                    feed_tick: float = 1.0, feed_port: int = 0) -> Simulator:
    """Start a simulator in a background thread and return it (call ``stop()`` when done).

    ``faults``: a :class:`Faults`, a spec such as ``"rate-limit,outlier"`` or ``"none"``; ``None`` is
    :meth:`Faults.demo_default`. ``extra_coins``: more coins (see :func:`make_coin`) served after the
    first ``n_coins``. ``cmc_historical``: the simulated CoinMarketCap key's plan has historical quotes.
    ``feed_tick``: seconds between two updates of the websocket feeds (on ``feed_port``).
    """
    return Simulator(port=port, faults=faults, seed=seed, n_coins=n_coins, step_seconds=step_seconds,
                     host=host, extra_coins=extra_coins, cmc_historical=cmc_historical, feed_tick=feed_tick,
                     feed_port=feed_port).start()
