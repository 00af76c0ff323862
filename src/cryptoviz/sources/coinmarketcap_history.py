"""CoinMarketCap API ``GET /v2/cryptocurrency/quotes/historical``: a coin's past, fetched (I/O) and parsed (pure).

Asked by CoinMarketCap id (``id=1&time_start=...&time_end=...&interval=hourly&convert=USD``), a body is
the usual status envelope around the coin, keyed by its id (the documentation's example has the coin
itself as ``data``; a request by symbol gets a list per symbol: all three are read)::

    {"status": {"error_code": 0, ...},
     "data": {"1": {"id": 1, "name": "Bitcoin", "symbol": "BTC", "is_active": 1, "is_fiat": 0,
                    "quotes": [{"timestamp": "2018-06-22T19:29:37.000Z",
                                "quote": {"USD": {"price": 6242.29, "volume_24h": 4681670000,
                                                  "market_cap": 106800038746.48,
                                                  "timestamp": "2018-06-22T19:29:37.000Z"}}}]}}}

The endpoint is not in the free Basic plan: a free key gets HTTP 403 with error 1006, turned here into one
line naming the plan. Paid plans reach back a limited time (Hobbyist: a month); asking more is HTTP 400.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, SourceError, TerminalSourceError
from cryptoviz.models import Rejection
from cryptoviz.sources import coinmarketcap
from cryptoviz.sources.api import ApiSource
from cryptoviz.sources.base import RawPage, brief_text, printable
from cryptoviz.sources.coingecko_history import History, HistoryPoint, HistoryRangeError, UnknownCoinError
from cryptoviz.sources.fields import ItemRejected, load_json, read_container, read_number, read_timestamp
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.spec import RequestBudget

SOURCE = coinmarketcap.SOURCE
PATH = "/v2/cryptocurrency/quotes/historical"
MAX_COUNT = 10_000  # the API's own limit of points per request
PLAN_ERROR_CODE = 1006
PLAN_MESSAGE = (
    "historical quotes are not in this API key's plan (error {code}: {said}): CoinMarketCap's free Basic plan "
    f"has no {PATH}, the paid plans (Hobbyist and higher) have it; use --source coingecko (no key needed)"
)


def interval_for(days: float) -> tuple[str, int]:
    """The ``interval`` to ask for ``days`` of history, and its seconds (as CoinGecko's granularity)."""
    if days <= 1:
        return "5m", 300
    return ("hourly", 3600) if days <= 90 else ("daily", 86_400)


def budget(_settings: Settings) -> RequestBudget:
    return coinmarketcap.BUDGET


# --- pure parsing ----------------------------------------------------------------------------------


def history_error(doc: Any, http_status: int | None, coin: str) -> SourceError | None:
    """The error a ``quotes/historical`` envelope stands for (``None``: no error)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("status"), dict):
        return None
    status: dict[str, Any] = doc["status"]
    code, said = status.get("error_code"), brief_text(status.get("error_message") or "no message")
    if isinstance(code, str):  # "1006" counts; "₁₀" (digits, but not decimal ones) is no code at all
        code = int(code) if code.isdecimal() and len(code) < 10 else None
        status = {**status, "error_code": code}
    if code == PLAN_ERROR_CODE:
        return TerminalSourceError(SOURCE, PLAN_MESSAGE.format(code=code, said=said), status=http_status)
    if code == 400 and "historical" in said.lower():
        return HistoryRangeError(SOURCE, f"the API key's plan does not reach that far back (error 400: {said}); "
                                         "ask fewer --days", status=http_status)
    if code == 400 and '"id"' in said:
        return UnknownCoinError(SOURCE, f"coin {printable(coin)!r} not found (error 400: {said})",
                                status=http_status)
    return coinmarketcap.envelope_error(status, http_status)


def _coin_item(data: Any, coin: str) -> dict[str, Any]:
    """The coin's object in ``data``: itself, keyed by id, or the first of a list keyed by symbol."""
    if isinstance(data, dict) and "quotes" in data:
        return data
    item: Any = None
    if isinstance(data, dict):
        item = data.get(coin)
        if item is None and len(data) == 1:
            item = next(iter(data.values()))
    if isinstance(item, list):
        item = item[0] if item else None
    if not isinstance(item, dict):
        got = "nothing" if data is None else type(data).__name__
        raise ParseError(f"{SOURCE}: expected 'data' to hold coin {printable(coin)!r} with its quotes, got {got}")
    return item


def _point(entry: Any, currency: str) -> HistoryPoint:
    if not isinstance(entry, dict):
        raise ItemRejected("item", "not_an_object", f"got {type(entry).__name__}")
    key = currency.upper()
    quotes: dict[str, Any] = read_container(entry, "quote", dict)
    quote = quotes.get(key)
    if not isinstance(quote, dict):
        reason = "missing_field" if quote is None else "not_an_object"
        raise ItemRejected(f"quote.{key}", reason, f"no {key} quote" if quote is None else "")
    prefix = f"quote.{key}."
    at: datetime | None = read_timestamp(quote, "timestamp", prefix) or read_timestamp(entry, "timestamp")
    price = read_number(quote, "price", prefix)
    if at is None or price is None:
        raise ItemRejected("timestamp" if at is None else prefix + "price", "missing_field")
    if not math.isfinite(price) or price <= 0:
        raise ItemRejected(prefix + "price", "not_positive", f"{price!r}")
    cap, volume = read_number(quote, "market_cap", prefix), read_number(quote, "volume_24h", prefix)
    for name, value in (("market_cap", cap), ("volume_24h", volume)):
        if value is not None and not 0 <= value < math.inf:
            raise ItemRejected(prefix + name, "negative", f"{value!r}")
    return HistoryPoint(at, price, cap or None, volume)


def parse_quotes_historical(body: bytes, coin: str, currency: str) -> History:
    """Parse a ``quotes/historical`` body of CoinMarketCap id ``coin`` into its points, oldest first.

    An unreadable quote is a ``Rejection`` (field ``quotes[i].quote.USD.price``...), the others are kept.
    Raises ``SourceError`` for an error envelope and ``ParseError`` for a body of another shape.
    """
    doc = load_json(body, SOURCE)
    error = history_error(doc, None, coin)
    if error is not None:
        raise error
    if not isinstance(doc, dict):
        raise ParseError(f"{SOURCE}: expected a JSON object with status and data, got {type(doc).__name__}")
    entries = _coin_item(doc.get("data"), coin).get("quotes")
    if not isinstance(entries, list):
        raise ParseError(f"{SOURCE}: expected the coin's 'quotes' to be a list, got {type(entries).__name__}")
    history = History(coin)
    found: dict[datetime, HistoryPoint] = {}
    for index, entry in enumerate(entries):
        try:
            point = _point(entry, currency)
        except ItemRejected as bad:
            history.rejected.append(Rejection(SOURCE, coin, f"quotes[{index}].{bad.field}", bad.reason, bad.detail))
            continue
        found[point.at] = point
    history.points = [found[at] for at in sorted(found)]
    return history


# --- fetching --------------------------------------------------------------------------------------


def check_quotes(coin: str) -> Callable[[httpx.Response], int]:
    """The response check of one coin's quotes: raises the error it stands for, else returns 1."""

    def check(response: httpx.Response) -> int:
        try:
            doc = load_json(response.content, SOURCE)
        except ParseError:
            return coinmarketcap.check_response(response)  # not JSON: the listings check says what it is
        error = history_error(doc, response.status_code, coin)
        if error is not None:
            raise error
        if response.status_code >= 400:
            return coinmarketcap.check_response(response)
        return 1

    return check


class QuotesHistoricalClient(ApiSource):
    """Fetches ``quotes/historical`` bodies through the shared ``HttpClient`` (the ``coinmarketcap`` rate
    limit and breaker); it leaves the rate limit as it finds it."""

    name = SOURCE
    key_header = "X-CMC_PRO_API_KEY"

    def __init__(self, settings: Settings, http: HttpClient) -> None:
        super().__init__(settings, http, settings.coinmarketcap_api_key)

    @property
    def url(self) -> str:
        return f"{self._settings.coinmarketcap_base_url.rstrip('/')}{PATH}"

    def fetch(self, coin_id: str, start: datetime, end: datetime) -> RawPage:
        """The quotes of CoinMarketCap id ``coin_id`` from ``start`` to ``end``, at the granularity CoinGecko
        would serve for that many days."""
        if self._key is None:
            raise TerminalSourceError(SOURCE, f"no API key: set {coinmarketcap.KEY_VAR} (a paid plan: the free "
                                              "Basic plan has no historical quotes), or use --source coingecko")
        days = (end - start).total_seconds() / 86_400
        interval, seconds = interval_for(days)
        count = min(MAX_COUNT, int((end - start).total_seconds() // seconds) + 2)
        params: dict[str, str | int] = {
            "id": coin_id, "time_start": start.isoformat(), "time_end": end.isoformat(), "interval": interval,
            "count": count, "convert": self._settings.vs_currency.upper(),
        }
        page, _count = self._get_page(self.url, params, check_quotes(coin_id), passthrough={429})
        return page

    def get(self, url: str, params: dict[str, str | int], check: Callable[[httpx.Response], int]) -> RawPage:
        """Any other GET of this API with its key, limit and breaker (the coin list of an empty database)."""
        page, _count = self._get_page(url, params, check)
        return page
