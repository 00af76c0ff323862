"""CoinGecko API v3 ``GET /coins/markets``: fetch pages (I/O) and parse them (pure).

A body is a JSON list, one object per coin, e.g. (trimmed)::

    [{"id": "bitcoin", "symbol": "btc", "name": "Bitcoin", "current_price": 77671,
      "market_cap": 1555886872303, "market_cap_rank": 1, "total_volume": 33235034316,
      "circulating_supply": 20030493.0, "total_supply": 20030843.0, "max_supply": 21000000.0,
      "last_updated": "2026-05-18T12:49:21.599Z", "price_change_percentage_24h": -0.95302,
      "price_change_percentage_1h_in_currency": 0.58, "price_change_percentage_24h_in_currency": -0.95,
      "price_change_percentage_7d_in_currency": -4.04, ...}]

Numbers may be JSON integers, any of them may be null, older answers lack the ``*_in_currency`` fields and
newer ones add fields. Errors come as ``{"status": {"error_code": 429, "error_message": "..."}}``,
``{"error": {"status": {...}}}`` or ``{"error": "..."}``; Cloudflare may answer with an HTML page.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
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
    read_integer,
    read_number,
    read_symbol,
    read_text,
    read_timestamp,
)
from cryptoviz.sources.http import HttpClient, fetch_pages, http_status_error
from cryptoviz.sources.spec import IdNamespace, RequestBudget, SourceSpec
from cryptoviz.timeutil import utc_now

SOURCE = "coingecko"
MAX_PER_PAGE = 250  # the API's own limit
MAX_PAGES = 200  # top_n=all: ~17k coins is ~70 pages today; this only stops a runaway loop
# Keyless limits are low and per IP; a demo key raises them.
KEYLESS_BUDGET = RequestBudget(per_minute=10, burst=2)
DEMO_KEY_BUDGET = RequestBudget(per_minute=30, burst=5)
# CoinGecko ids, shared by the API and coingecko.com's pages; a coin CoinGecko knows is stored under its id.
COINGECKO_IDS = IdNamespace("coingecko", ids_are_slugs=True, canonical=True, column="coingecko_id")
_KEY_HINT = ("check CRYPTOVIZ_COINGECKO_API_KEY (a demo key works with https://api.coingecko.com/api/v3), "
             "or unset it to collect without a key")
_KEY_ERROR_CODES = frozenset({401, 10002, 10005, 10010, 10011})


# --- pure parsing --------------------------------------------------------------------------------


def _change_24h(item: dict[str, Any]) -> float | None:
    # Older answers (or a request without price_change_percentage=24h) only carry the plain field.
    if item.get("price_change_percentage_24h_in_currency") is not None:
        return read_number(item, "price_change_percentage_24h_in_currency")
    return read_number(item, "price_change_percentage_24h")


def _quote(item: Any, collected_at: datetime, currency: str) -> SourceQuote:
    if not isinstance(item, dict):
        raise ItemRejected("item", "not_an_object", f"got {type(item).__name__}")
    coin_id = read_text(item, "id")
    return SourceQuote(
        source=SOURCE, source_id=coin_id, symbol=read_symbol(item),
        name=read_text(item, "name"), slug=coin_id, rank=read_integer(item, "market_cap_rank"),
        price=read_number(item, "current_price"), market_cap=read_number(item, "market_cap"),
        volume_24h=read_number(item, "total_volume"),
        change_1h=read_number(item, "price_change_percentage_1h_in_currency"),
        change_24h=_change_24h(item),
        change_7d=read_number(item, "price_change_percentage_7d_in_currency"),
        circulating_supply=read_number(item, "circulating_supply"),
        total_supply=read_number(item, "total_supply"), max_supply=read_number(item, "max_supply"),
        last_updated=read_timestamp(item, "last_updated"), collected_at=collected_at,
        currency=currency.lower(),
    )


def _label(item: Any, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"].strip():
        return printable(str(item["id"]).strip())
    return f"item {index}"


def check_envelope(doc: Any, status: int | None = None) -> None:
    """Raise the source error a CoinGecko error body stands for; do nothing for any other body.

    ``status`` is the HTTP status when known (a fetch); replayed bodies have none.
    """
    if not isinstance(doc, dict):
        return
    if isinstance(doc.get("error"), dict):  # some 401s nest the envelope: {"error": {"status": {...}}}
        doc = doc["error"]
    code: Any = None
    message: Any = None
    if isinstance(doc.get("status"), dict):
        code = doc["status"].get("error_code")
        message = doc["status"].get("error_message")
    if not message and doc.get("error") is not None:
        message = doc["error"]
    if not code and not message:
        return
    code = code if isinstance(code, int) and not isinstance(code, bool) else status
    raise envelope_error(code, brief_text(message or "no message"), status)


def envelope_error(code: int | None, message: str, status: int | None = None) -> SourceError:
    """The error for CoinGecko error code ``code`` (CoinGecko's own code or the HTTP status)."""
    said = f"error {code}: {message}" if code is not None else message
    http = status or (code if code is not None and 400 <= code < 600 else None)
    if code == 429 or http == 429:
        return TransientSourceError(
            SOURCE, f"rate limit exceeded ({said}); wait a minute, collect less often (CRYPTOVIZ_INTERVAL) "
                    "or set CRYPTOVIZ_COINGECKO_API_KEY for a higher limit", status=429, retry_after=60.0)
    if http is not None and http >= 500:
        return TransientSourceError(SOURCE, f"server error ({said}); retry later", status=http)
    if code in _KEY_ERROR_CODES or http in (401, 403):
        return TerminalSourceError(SOURCE, f"request refused ({said}); {_KEY_HINT}", status=http)
    if http == 404:
        return TerminalSourceError(
            SOURCE, f"not found ({said}); check CRYPTOVIZ_COINGECKO_BASE_URL", status=http)
    if "vs_currency" in message:
        return TerminalSourceError(
            SOURCE, f"request refused ({said}); check CRYPTOVIZ_VS_CURRENCY", status=http)
    return TerminalSourceError(SOURCE, f"request refused ({said})", status=http)


def parse_markets(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    """Parse a ``/coins/markets`` body; a malformed item becomes a ``Rejection``, the rest is kept.

    Raises ``SourceError`` for an error envelope and ``ParseError`` for a body that is not a list.
    """
    doc = load_json(body, SOURCE)
    check_envelope(doc)
    if not isinstance(doc, list):
        raise ParseError(f"{SOURCE}: expected a JSON list of coins, got {type(doc).__name__}")
    return collect(doc, SOURCE, lambda item: _quote(item, collected_at, currency), _label)


# --- fetching ------------------------------------------------------------------------------------


def page_plan(top_n: int | str) -> tuple[int, int]:
    """(per_page, max pages). Pages are balanced so top_n=300 asks 2 x 150, not 2 x 250."""
    if top_n == "all" or not isinstance(top_n, int):
        return MAX_PER_PAGE, MAX_PAGES
    pages = math.ceil(top_n / MAX_PER_PAGE)
    return math.ceil(top_n / pages), pages


def _status_error(status: int) -> SourceError:
    return http_status_error(SOURCE, status, key_hint=_KEY_HINT, base_url_var="CRYPTOVIZ_COINGECKO_BASE_URL")


def _not_json_error(what: str, status: int) -> SourceError:
    if "HTML" in what:  # Cloudflare answers blocked networks with a page, usually 403/1020
        return TerminalSourceError(
            SOURCE, f"{what} (HTTP {status}); the API is refusing this network: retry later from another "
                    "network, or set CRYPTOVIZ_COINGECKO_API_KEY", status=status)
    if status >= 400:
        return _status_error(status)
    return TransientSourceError(SOURCE, f"{what} (HTTP {status}); the body was cut short? retry later",
                                status=status)


def check_response(response: httpx.Response) -> int:
    """Raise the source error a response stands for; else return how many coins it holds."""
    status = response.status_code
    try:
        doc = load_json(response.content, SOURCE)
    except ParseError as exc:
        raise _not_json_error(str(exc).removeprefix(f"{SOURCE}: "), status) from None
    check_envelope(doc, status)
    if status >= 400:
        raise _status_error(status)
    if not isinstance(doc, list):
        raise TerminalSourceError(
            SOURCE, f"expected a JSON list of coins, got {type(doc).__name__}; has the API changed? "
                    "check CRYPTOVIZ_COINGECKO_BASE_URL", status=status)
    return len(doc)


class CoinGeckoSource(ApiSource):
    """CoinGecko's public/demo API. A demo key (optional) raises the rate limit."""

    name = SOURCE
    key_header = "x-cg-demo-api-key"

    def __init__(self, settings: Settings, http: HttpClient, *, now: Callable[[], datetime] = utc_now) -> None:
        super().__init__(settings, http, settings.coingecko_api_key, now=now)
        budget = DEMO_KEY_BUDGET if self._key else KEYLESS_BUDGET
        http.set_rate_limit(self.name, budget.per_minute, budget.burst)

    @property
    def url(self) -> str:
        return f"{self._settings.coingecko_base_url.rstrip('/')}/coins/markets"

    def _fetch_page(self, page: int, per_page: int) -> tuple[RawPage, int]:
        params: dict[str, str | int] = {
            "vs_currency": self._settings.vs_currency, "order": "market_cap_desc",
            "per_page": per_page, "page": page, "price_change_percentage": "1h,24h,7d",
        }
        return self._get_page(self.url, params, check_response)

    def fetch(self) -> list[RawPage]:
        """Pages 1..n; a failed first page raises, a later failure keeps the pages already fetched."""
        per_page, pages = page_plan(self._settings.top_n)
        return fetch_pages(self.name, [per_page] * pages, self._fetch_page,
                           capped=self._settings.top_n == "all")

    def parse(self, page: RawPage) -> ParseResult:
        return parse_markets(page.body, page.fetched_at, self._settings.vs_currency)


SPEC = SourceSpec(
    name=SOURCE, title="CoinGecko API (GET /coins/markets)", kind="pull", namespace=COINGECKO_IDS, trust=0.8,
    parse=parse_markets, build=CoinGeckoSource, budget=KEYLESS_BUDGET,
    settings=("coingecko_base_url", "coingecko_api_key"), default=lambda settings: True,
)
