"""CoinPaprika API ``GET /v1/tickers``: fetch the tickers (I/O) and parse them (pure).

One request answers with every ranked coin (the free plan: the first 2,000) as a JSON list, e.g. (the
documentation's example, trimmed to the ``USD`` quote)::

    [{"id": "btc-bitcoin", "name": "Bitcoin", "symbol": "BTC", "rank": 1,
      "circulating_supply": 17007062, "total_supply": 17007062, "max_supply": 21000000,
      "beta_value": 0.735327, "first_data_at": "2010-11-14T07:20:41Z", "last_updated": "2018-11-14T07:20:41Z",
      "quotes": {"USD": {"price": 5162.15941296, "volume_24h": 7304207651.1585, "volume_24h_change_24h": -2.5,
                         "market_cap": 91094433242, "market_cap_change_24h": 1.6,
                         "percent_change_15m": 0, "percent_change_30m": 0, "percent_change_1h": 0,
                         "percent_change_6h": 0, "percent_change_12h": -0.09, "percent_change_24h": 1.59,
                         "percent_change_7d": 0.28, "percent_change_30d": 27.39, "percent_change_1y": -37.99,
                         "ath_price": 20089, "ath_date": "2017-12-17T12:19:00Z",
                         "percent_from_price_ath": -74.3}}}]

``quotes=USD,BTC,EUR`` asks for up to three currencies, each a key of ``quotes``; nothing asks for fewer
tickers, so the answer holds them all and the pipeline keeps the ``top_n`` best-ranked (as it does for any
source that answers with more coins than asked). The free plan leaves
``circulating_supply`` out; a coin without a maximum supply has ``max_supply`` 0 (read as unknown); the
documentation says a missing value may come as an empty string (read as unknown too); older answers lack
some of the ``percent_change_*`` fields. Ids are CoinPaprika's own (``btc-bitcoin``) and there is no slug:
the reconciler joins these coins to other sources' by name and symbol.

Errors are ``{"error": "..."}`` with HTTP 400 (a bad parameter, e.g. an unknown quote currency), 402
(the free plan's monthly calls are used up, or the endpoint needs a paid plan), 403 (invalid key), 404, 429
(rate limit; may carry ``Retry-After``) or 5xx. Keyless requests go to ``api.coinpaprika.com``; a key (in
the ``Authorization`` header) is for the paid plans at ``api-pro.coinpaprika.com``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import httpx

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, SourceError, TerminalSourceError, TransientSourceError
from cryptoviz.models import ParseResult, SourceQuote
from cryptoviz.sources.api import ApiSource
from cryptoviz.sources.base import RawPage, brief_text, printable
from cryptoviz.sources.fields import (
    ItemRejected,
    collect,
    load_json,
    read_container,
    read_integer,
    read_number,
    read_symbol,
    read_text,
    read_timestamp,
)
from cryptoviz.sources.http import HttpClient, fetch_pages
from cryptoviz.sources.spec import SECONDS_PER_MONTH, IdNamespace, RequestBudget, SourceSpec
from cryptoviz.timeutil import utc_now

SOURCE = "coinpaprika"
FREE_BASE_URL = "https://api.coinpaprika.com/v1"
PRO_BASE_URL = "https://api-pro.coinpaprika.com/v1"
KEY_VAR = "CRYPTOVIZ_COINPAPRIKA_API_KEY"
BASE_URL_VAR = "CRYPTOVIZ_COINPAPRIKA_BASE_URL"
FREE_CALLS_PER_MONTH = 20_000
# The free plan's monthly calls spread evenly over a month (0.46 a minute), with a few saved up for the
# retries of one fetch: the rate limit alone keeps a month within the plan, whatever the interval.
BUDGET = RequestBudget(per_minute=FREE_CALLS_PER_MONTH * 60 / SECONDS_PER_MONTH, burst=3,
                       per_month=FREE_CALLS_PER_MONTH)
# The free plan's tickers change about every 5 minutes: fetching more often reads the same numbers again.
DEFAULT_INTERVAL = 300.0
# CoinPaprika's own ids ("btc-bitcoin"): no other source reports them, and they are not slugs.
COINPAPRIKA_IDS = IdNamespace(SOURCE)
# What ``quotes=`` accepts (the API documentation's list).
QUOTE_CURRENCIES = (
    "BTC", "ETH", "USD", "EUR", "PLN", "KRW", "GBP", "CAD", "JPY", "RUB", "TRY", "NZD", "AUD", "CHF", "UAH",
    "HKD", "SGD", "NGN", "PHP", "MXN", "BRL", "THB", "CLP", "CNY", "CZK", "DKK", "HUF", "IDR", "ILS", "INR",
    "MYR", "NOK", "PKR", "SEK", "TWD", "ZAR", "VND", "BOB", "COP", "PEN", "ARS", "ISK",
)

_SLOW_DOWN = (f"collect less often (CRYPTOVIZ_SOURCE_INTERVALS, e.g. coinpaprika=600), or set {KEY_VAR} to a "
              "paid plan's key")
# HTTP status -> (what happened, what the user can do); 429 and 5xx are transient, the rest terminal.
_STATUSES: dict[int, tuple[str, str]] = {
    400: ("bad request", "check CRYPTOVIZ_VS_CURRENCY: CoinPaprika quotes " + ", ".join(QUOTE_CURRENCIES)),
    401: ("request refused", f"the API key is invalid: check {KEY_VAR}, or unset it to use the free plan"),
    402: ("payment required", "the free plan's 20,000 calls this month are used up (or the plan does not "
                              f"include this endpoint): wait for next month and {_SLOW_DOWN}"),
    403: ("request refused", f"the API key is invalid: check {KEY_VAR}, or unset it to use the free plan"),
    404: ("not found", f"check {BASE_URL_VAR} (the free API is {FREE_BASE_URL})"),
    429: ("rate limit reached", f"wait a minute; {_SLOW_DOWN}"),
}
_SERVER_ERROR = ("server error", "the service is having trouble: retry later")
# A body replayed without its HTTP status: the documented messages say which one it was.
_MESSAGE_STATUSES = (("payment", 402), ("plan", 402), ("monthly", 402), ("request limit", 429), ("rate limit", 429),
                     ("too many", 429), ("key", 403), ("not found", 404), ("quote", 400))
RATE_LIMIT_WAIT = 60.0


# --- pure parsing --------------------------------------------------------------------------------


def envelope_error(message: str, status: int | None = None) -> SourceError:
    """The error for an ``{"error": message}`` body answered with HTTP ``status`` (``None``: unknown, as for a
    replayed body). Without an error status, the message says what it was."""
    said = f"HTTP {status}: {message}" if status else message
    if status is None or status < 400:
        lowered = message.lower()
        status = next((code for words, code in _MESSAGE_STATUSES if words in lowered), None)
    what, advice = _SERVER_ERROR if status is not None and status >= 500 else _STATUSES.get(
        status or 0, ("request refused", "the API refused the request; has it changed? check " + BASE_URL_VAR))
    said = f"{what} ({said}); {advice}"
    if status == 429 or (status is not None and status >= 500):
        return TransientSourceError(SOURCE, said, status=status,
                                    retry_after=RATE_LIMIT_WAIT if status == 429 else None)
    return TerminalSourceError(SOURCE, said, status=status)


def _tickers(doc: Any, status: int | None = None) -> list[Any]:
    """The ticker list of a decoded body; raises the error an ``{"error": ...}`` body stands for."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and doc.get("error"):
        raise envelope_error(brief_text(doc["error"]), status)
    raise ParseError(f"{SOURCE}: expected a JSON list of tickers, got {type(doc).__name__}")


def _currency_quote(item: dict[str, Any], key: str) -> dict[str, Any]:
    """``quotes[key]``, the ticker's figures in the vs currency."""
    found = read_container(item, "quotes", dict).get(key)
    if isinstance(found, dict):
        return found
    missing = found is None
    raise ItemRejected(f"quotes.{key}", "missing_field" if missing else "not_an_object",
                       f"no {key} quote (quotes={key} not asked for?)" if missing else f"got {type(found).__name__}")


def _ticker(item: Any, key: str, collected_at: datetime) -> SourceQuote:
    """One ticker as a quote in currency ``key``; raises ``ItemRejected`` for the first unreadable field."""
    if not isinstance(item, dict):
        raise ItemRejected("item", "not_an_object", f"got {type(item).__name__}")
    coin_id = read_text(item, "id")
    figure = partial(read_number, _currency_quote(item, key), prefix=f"quotes.{key}.", blank=True)
    supply = partial(read_number, item, blank=True)
    return SourceQuote(
        source=SOURCE, source_id=coin_id, symbol=read_symbol(item), name=read_text(item, "name"), slug=None,
        rank=read_integer(item, "rank"), price=figure("price"), market_cap=figure("market_cap"),
        volume_24h=figure("volume_24h"), change_1h=figure("percent_change_1h"),
        change_24h=figure("percent_change_24h"), change_7d=figure("percent_change_7d"),
        circulating_supply=supply("circulating_supply"), total_supply=supply("total_supply"),
        max_supply=supply("max_supply") or None,  # 0: no maximum
        last_updated=read_timestamp(item, "last_updated"), collected_at=collected_at, currency=key.lower(),
    )


def _label(item: Any, index: int) -> str:
    coin_id = item.get("id") if isinstance(item, dict) else None
    return printable(coin_id.strip()) if isinstance(coin_id, str) and coin_id.strip() else f"item {index}"


def parse_tickers(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    """Parse a ``/tickers`` body; a malformed ticker becomes a ``Rejection``, the rest is kept.

    Raises ``SourceError`` for an ``{"error": ...}`` body and ``ParseError`` for any other body that is not
    a list.
    """
    key = currency.upper()
    return collect(_tickers(load_json(body, SOURCE)), SOURCE, lambda item: _ticker(item, key, collected_at), _label)


# --- fetching ------------------------------------------------------------------------------------


def check_response(response: httpx.Response) -> int:
    """Raise the source error a response stands for; else return how many tickers it holds."""
    status = response.status_code
    try:
        tickers = _tickers(load_json(response.content, SOURCE), status)
    except ParseError as exc:
        what = str(exc).removeprefix(f"{SOURCE}: ")
        if status >= 400:
            raise envelope_error(response.reason_phrase or what, status) from None
        if "list of tickers" in what or "HTML" in what:  # an answer, but not the API's
            raise TerminalSourceError(SOURCE, f"{what} (HTTP {status}); is {BASE_URL_VAR} the API's address "
                                              f"(the free API is {FREE_BASE_URL})?", status=status) from None
        raise TransientSourceError(SOURCE, f"{what} (HTTP {status}); the body was cut short? retry later",
                                   status=status) from None
    if status >= 400:
        raise envelope_error(response.reason_phrase or "no message", status)
    return len(tickers)


class CoinPaprikaSource(ApiSource):
    """CoinPaprika's API: keyless (the free plan), or a paid plan's key sent as ``Authorization``.

    A key with the default (free) base URL goes to the paid plans' host instead: the free host does not
    serve paid plans. One request a fetch; its rate limit keeps within the free plan's calls a month.
    """

    name = SOURCE
    key_header = "Authorization"
    budget = BUDGET  # the base class sets the rate limit

    def __init__(self, settings: Settings, http: HttpClient, *, now: Callable[[], datetime] = utc_now) -> None:
        super().__init__(settings, http, settings.coinpaprika_api_key, now=now)

    def parse(self, page: RawPage) -> ParseResult:
        return parse_tickers(page.body, page.fetched_at, self._settings.vs_currency)

    def fetch(self) -> list[RawPage]:
        """Every ticker in one request, quoted in the vs currency (the API has no parameter to ask for fewer)."""
        params = {"quotes": self._settings.vs_currency.upper()}
        return fetch_pages(self.name, [1], lambda _number, _limit: self._get_page(self.url, params, check_response))

    @property
    def url(self) -> str:
        base = self._settings.coinpaprika_base_url.rstrip("/")
        return f"{PRO_BASE_URL if self._key and base == FREE_BASE_URL else base}/tickers"


SPEC = SourceSpec(
    name=SOURCE, title="CoinPaprika API (GET /v1/tickers)", kind="pull", namespace=COINPAPRIKA_IDS, trust=0.75,
    parse=parse_tickers, build=CoinPaprikaSource, budget=BUDGET, interval=DEFAULT_INTERVAL,
    settings=("coinpaprika_base_url", "coinpaprika_api_key"), default=lambda settings: True,
)
