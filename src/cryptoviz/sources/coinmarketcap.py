"""CoinMarketCap API ``GET /v1/cryptocurrency/listings/latest``: fetch pages (I/O) and parse them (pure).

A body is a status envelope around a list of coins, e.g. (trimmed)::

    {"status": {"timestamp": "2021-04-20T23:30:09.268Z", "error_code": 0, "error_message": null, ...},
     "data": [{"id": 1, "name": "Bitcoin", "symbol": "BTC", "slug": "bitcoin", "cmc_rank": 1,
               "circulating_supply": 18687212, "total_supply": 18687212, "max_supply": 21000000,
               "last_updated": "2021-04-20T23:29:02.000Z",
               "quote": {"USD": {"price": 56507.38, "volume_24h": 68130148004.21,
                                 "percent_change_1h": -0.07, "percent_change_24h": 0.83,
                                 "percent_change_7d": -10.55, "market_cap": 1055965437224.79,
                                 "last_updated": "2021-04-20T23:29:02.000Z"}}}]}

``status.error_code`` is non-zero on errors, sometimes with HTTP 200, so it is checked on every body.
The quote key is the upper-cased ``convert`` currency. Newer answers add fields, older ones lack some.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, SourceError, TerminalSourceError, TransientSourceError
from cryptoviz.models import ParseResult, SourceQuote
from cryptoviz.sources.api import ApiSource
from cryptoviz.sources.base import MAX_SOURCE_ID, RawPage, brief_text, checked_text, printable
from cryptoviz.sources.fields import (
    ItemRejected,
    collect,
    got,
    load_json,
    read_container,
    read_integer,
    read_number,
    read_optional_text,
    read_symbol,
    read_text,
    read_timestamp,
)
from cryptoviz.sources.http import HttpClient, fetch_pages, http_status_error
from cryptoviz.sources.spec import IdNamespace, RequestBudget, SourceSpec
from cryptoviz.timeutil import utc_now

SOURCE = "coinmarketcap"
MAX_LIMIT = 5000  # the API's own limit per request
MAX_PAGES = 40  # top_n=all: stops a runaway loop (200k coins)
BUDGET = RequestBudget(per_minute=30, burst=5)  # the free plan's limit
KEY_VAR = "CRYPTOVIZ_COINMARKETCAP_API_KEY"
# CoinMarketCap's numeric ids, shared by the API and coinmarketcap.com's pages.
COINMARKETCAP_IDS = IdNamespace("coinmarketcap", column="coinmarketcap_id")
NO_KEY_WARNING = (
    f"coinmarketcap: no {KEY_VAR} set, source skipped (get a free key at coinmarketcap.com/api, "
    "or add coinmarketcap-html to CRYPTOVIZ_SOURCES)"
)

# Rate-limit codes -> (what was hit, seconds before trying again).
_RATE_LIMITS: dict[int, tuple[str, float]] = {
    429: ("rate limit", 60.0),
    1008: ("per-minute rate limit", 60.0),
    1009: ("daily credit limit", 3600.0),
    1010: ("monthly credit limit", 86400.0),
    1011: ("per-IP rate limit", 60.0),
}
_TERMINAL_HINTS: dict[int, str] = {
    1001: f"the API key is invalid: check {KEY_VAR}",
    1002: f"no API key was sent: set {KEY_VAR} (get a free key at coinmarketcap.com/api)",
    1003: "the plan needs payment: check the subscription at pro.coinmarketcap.com/account",
    1004: "the plan's payment has expired: check the subscription at pro.coinmarketcap.com/account",
    1005: f"this endpoint needs an API key: check {KEY_VAR}",
    1006: "the key's plan does not include this endpoint: check the plan at pro.coinmarketcap.com/account",
    1007: f"the API key has been disabled: check {KEY_VAR} and pro.coinmarketcap.com/account",
}


# --- pure parsing --------------------------------------------------------------------------------


def _seconds_to_next_utc_day(timestamp: Any) -> float | None:
    """Daily credits reset at midnight UTC; the envelope's own timestamp says how far that is."""
    if not isinstance(timestamp, str):
        return None
    try:
        now = datetime.fromisoformat(timestamp)
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
        midnight = (now.astimezone(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    except (ValueError, OverflowError):  # not a time, or at the edge of the calendar (year 1 or 9999)
        return None
    return (midnight - now).total_seconds()


def envelope_error(status: dict[str, Any], http_status: int | None = None) -> SourceError | None:
    """The error a ``status`` envelope stands for, or ``None`` when ``error_code`` is 0/absent."""
    code = status.get("error_code")
    if isinstance(code, str) and code.isascii() and code.isdigit() and len(code) <= 9:
        code = int(code)
    if not code or isinstance(code, bool) or not isinstance(code, int):
        return None
    message = brief_text(status.get("error_message") or "no message")
    said = f"error {code}: {message}"
    if code in _RATE_LIMITS:
        what, wait = _RATE_LIMITS[code]
        if code == 1009:
            wait = _seconds_to_next_utc_day(status.get("timestamp")) or wait
        return TransientSourceError(
            SOURCE, f"{what} reached ({said}); next try in about {wait:.0f}s: collect less often "
                    "(CRYPTOVIZ_INTERVAL) or upgrade the plan", status=http_status or 429, retry_after=wait)
    if 500 <= code < 600:  # an HTTP status used as the code (1xxx codes are CoinMarketCap's own)
        return TransientSourceError(SOURCE, f"server error ({said}); retry later", status=http_status or code)
    if code in _TERMINAL_HINTS:
        return TerminalSourceError(SOURCE, f"request refused ({said}); {_TERMINAL_HINTS[code]}",
                                   status=http_status)
    if code == 400:
        return TerminalSourceError(
            SOURCE, f"bad request ({said}); check CRYPTOVIZ_VS_CURRENCY and CRYPTOVIZ_TOP_N",
            status=http_status)
    return TerminalSourceError(SOURCE, f"request refused ({said})", status=http_status)


def check_envelope(doc: Any, http_status: int | None = None) -> list[Any]:
    """Raise the error the envelope stands for; else return its ``data`` list."""
    if not isinstance(doc, dict):
        raise ParseError(f"{SOURCE}: expected a JSON object with status and data, got {type(doc).__name__}")
    status = doc.get("status")
    if isinstance(status, dict) and (error := envelope_error(status, http_status)) is not None:
        raise error
    data = doc.get("data")
    if not isinstance(data, list):
        got = "nothing" if data is None else type(data).__name__
        raise ParseError(f"{SOURCE}: expected 'data' to be a list of coins, got {got}")
    return data


def _source_id(item: dict[str, Any]) -> str:
    value = item.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return checked_text(value.strip(), "id", MAX_SOURCE_ID, ItemRejected)
    if value is None:
        raise ItemRejected("id", "missing_field")
    raise ItemRejected("id", "not_an_integer", got(value))


def _keyed_quote(item: dict[str, Any], key: str) -> dict[str, Any]:
    """The API's ``"quote": {"USD": {...}}``."""
    quotes: dict[str, Any] = read_container(item, "quote", dict)
    quote = quotes.get(key)
    if quote is None:
        raise ItemRejected(f"quote.{key}", "missing_field", f"no {key} quote (convert={key} not served?)")
    if not isinstance(quote, dict):
        raise ItemRejected(f"quote.{key}", "not_an_object", f"got {type(quote).__name__}")
    return quote


@dataclass(frozen=True, slots=True)
class ItemLayout:
    """The names a CoinMarketCap coin item uses. The API's listings and the list inside coinmarketcap.com
    pages carry the same coins, in snake_case and camelCase, with the quotes keyed or listed."""

    source: str
    quotes: str  # the field holding the quotes, the start of a quote field's name in a rejection
    quote: Callable[[dict[str, Any], str], dict[str, Any]]  # (item, "USD") -> that currency's quote
    rank: str
    price: str
    market_cap: str
    volume_24h: str
    change_1h: str
    change_24h: str
    change_7d: str
    circulating_supply: str
    total_supply: str
    max_supply: str
    last_updated: str


API_ITEM = ItemLayout(
    source=SOURCE, quotes="quote", quote=_keyed_quote, rank="cmc_rank", price="price", market_cap="market_cap",
    volume_24h="volume_24h", change_1h="percent_change_1h", change_24h="percent_change_24h",
    change_7d="percent_change_7d", circulating_supply="circulating_supply", total_supply="total_supply",
    max_supply="max_supply", last_updated="last_updated",
)


def read_item(item: Any, collected_at: datetime, currency: str, layout: ItemLayout) -> SourceQuote:
    """One coin item as a quote; raises ``ItemRejected`` for the first field that cannot be read."""
    if not isinstance(item, dict):
        raise ItemRejected("item", "not_an_object", f"got {type(item).__name__}")
    key = currency.upper()
    source_id = _source_id(item)
    quote = layout.quote(item, key)
    prefix = f"{layout.quotes}.{key}."
    # The quote's own time is when its price was computed; the item's is a fallback.
    last_updated = (read_timestamp(quote, layout.last_updated, prefix)
                    or read_timestamp(item, layout.last_updated))
    return SourceQuote(
        source=layout.source, source_id=source_id, symbol=read_symbol(item),
        name=read_text(item, "name"), slug=read_optional_text(item, "slug"),
        rank=read_integer(item, layout.rank),
        price=read_number(quote, layout.price, prefix),
        market_cap=read_number(quote, layout.market_cap, prefix),
        volume_24h=read_number(quote, layout.volume_24h, prefix),
        change_1h=read_number(quote, layout.change_1h, prefix),
        change_24h=read_number(quote, layout.change_24h, prefix),
        change_7d=read_number(quote, layout.change_7d, prefix),
        circulating_supply=read_number(item, layout.circulating_supply),
        total_supply=read_number(item, layout.total_supply), max_supply=read_number(item, layout.max_supply),
        last_updated=last_updated, collected_at=collected_at, currency=currency.lower(),
    )


def _label(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for name in ("slug", "id"):
            value = item.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                return printable(str(value).strip())
    return f"item {index}"


def parse_items(items: list[Any], collected_at: datetime, currency: str, layout: ItemLayout) -> ParseResult:
    """Coin items -> quotes; an unreadable item -> a ``Rejection`` labelled by its slug or id."""
    return collect(items, layout.source, lambda item: read_item(item, collected_at, currency, layout), _label)


def parse_listings(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    """Parse a ``listings/latest`` body; a malformed item becomes a ``Rejection``, the rest is kept.

    Raises ``SourceError`` for a non-zero ``status.error_code`` and ``ParseError`` for any other shape.
    """
    return parse_items(check_envelope(load_json(body, SOURCE)), collected_at, currency, API_ITEM)


# --- fetching ------------------------------------------------------------------------------------


def _status_error(status: int) -> SourceError:
    return http_status_error(SOURCE, status, key_hint=f"check {KEY_VAR}",
                             base_url_var="CRYPTOVIZ_COINMARKETCAP_BASE_URL")


def check_response(response: httpx.Response) -> int:
    """Raise the source error a response stands for; else return how many coins it holds."""
    status = response.status_code
    try:
        doc = load_json(response.content, SOURCE)
        data = check_envelope(doc, status)
    except ParseError as exc:
        what = str(exc).removeprefix(SOURCE + ": ")
        if status < 400 and what.startswith(("expected JSON, got invalid JSON", "expected JSON, got an empty")):
            # No JSON with a success status: a body cut short or mangled on the way, not a new API.
            raise TransientSourceError(
                SOURCE, f"{what} (HTTP {status}); the body was cut short? retry later", status=status) from None
        if status >= 400:
            raise _status_error(status) from None
        raise TerminalSourceError(
            SOURCE, f"{what} (HTTP {status}); has the API changed? "
                    "check CRYPTOVIZ_COINMARKETCAP_BASE_URL", status=status) from None
    if status >= 400:
        raise _status_error(status)
    return len(data)


def page_plan(top_n: int | str) -> list[int] | None:
    """Request limits for top_n (one per page); ``None`` for "all" (page until a short page)."""
    if top_n == "all" or not isinstance(top_n, int):
        return None
    pages = math.ceil(top_n / MAX_LIMIT)
    return [min(MAX_LIMIT, top_n - MAX_LIMIT * i) for i in range(pages)]


class CoinMarketCapSource(ApiSource):
    """CoinMarketCap's Pro API; needs a key (the free Basic plan is enough)."""

    name = SOURCE
    key_header = "X-CMC_PRO_API_KEY"

    def __init__(self, settings: Settings, http: HttpClient, *, now: Callable[[], datetime] = utc_now) -> None:
        super().__init__(settings, http, settings.coinmarketcap_api_key, now=now)
        http.set_rate_limit(self.name, BUDGET.per_minute, BUDGET.burst)

    @property
    def url(self) -> str:
        return f"{self._settings.coinmarketcap_base_url.rstrip('/')}/v1/cryptocurrency/listings/latest"

    def _fetch_page(self, number: int, limit: int) -> tuple[RawPage, int]:
        # Only full pages are followed by another, so page n starts after n-1 full ones.
        params: dict[str, str | int] = {"start": 1 + (number - 1) * MAX_LIMIT, "limit": limit,
                                        "convert": self._settings.vs_currency.upper()}
        # 429 is passed through: its body says which limit was hit (per minute, day, month).
        return self._get_page(self.url, params, check_response, passthrough={429})

    def fetch(self) -> list[RawPage]:
        """Pages of up to 5000 coins; a failed first page raises, a later failure keeps earlier pages."""
        plan = page_plan(self._settings.top_n)
        return fetch_pages(self.name, plan if plan is not None else [MAX_LIMIT] * MAX_PAGES,
                           self._fetch_page, capped=plan is None)

    def parse(self, page: RawPage) -> ParseResult:
        return parse_listings(page.body, page.fetched_at, self._settings.vs_currency)


SPEC = SourceSpec(
    name=SOURCE, title="CoinMarketCap API (GET /v1/cryptocurrency/listings/latest)", kind="pull",
    namespace=COINMARKETCAP_IDS, trust=0.9, parse=parse_listings, build=CoinMarketCapSource, budget=BUDGET,
    settings=("coinmarketcap_base_url", "coinmarketcap_api_key"), key_setting="coinmarketcap_api_key",
    missing_key=NO_KEY_WARNING, default=lambda settings: has_key(settings),
)


def has_key(settings: Settings) -> bool:
    """Whether a CoinMarketCap key is set (then the API runs by default, else the site's pages)."""
    key = settings.coinmarketcap_api_key
    return key is not None and bool(key.get_secret_value().strip())
