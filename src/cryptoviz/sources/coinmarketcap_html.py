"""coinmarketcap.com coin list pages (``https://coinmarketcap.com/?page=N``), scraped without a key.

The page is a Next.js page. The whole page of 100 coins is in its data script; only about ten table rows
are rendered on the server, the others are placeholders filled in by the browser::

    <script id="__NEXT_DATA__" type="application/json">
      {"props": {"pageProps": {"initialState": "{\\"cryptocurrency\\": {\\"listingLatest\\": {\\"data\\":
        {\\"cryptoCurrencyList\\": [...]}}}}", ...}}, "page": "/", "buildId": "...", ...}
    </script>

``initialState`` is itself a JSON *string* on the real site; its path changes between builds, so the list
is found by searching the document (and JSON strings inside it) for the key ``cryptoCurrencyList``. When
several lists have that key, the longest is the page's list. An item::

    {"id": 1, "name": "Bitcoin", "symbol": "BTC", "slug": "bitcoin", "cmcRank": 1,
     "circulatingSupply": 19696875, "totalSupply": 19696875, "maxSupply": 21000000,
     "lastUpdated": "2024-06-01T12:00:00.000Z",
     "quotes": [{"name": "USD", "price": 67187.34, "marketCap": 1.32e12, "volume24h": 2.9e10,
                 "percentChange1h": 0.12, "percentChange24h": -1.57, "percentChange7d": 3.21,
                 "lastUpdated": "2024-06-01T12:00:00.000Z"}]}

Without the data script (or without the list in it), the server-rendered rows are read instead
(``table.cmc-table tbody tr``): star, rank, name (``<a href="/currencies/bitcoin/">``, name and
symbol texts, logo ``.../coins/64x64/1.png`` giving the id), price, 1h %, 24h %, 7d %, market cap
("$1.32T" and "$1,323,456,789,012" in two spans), volume ("$29,317,843,051" beside "436,344 BTC"),
circulating supply ("19,696,875 BTC"), sparkline. Columns are found by header text; classes are hashed
(``sc-1a2b3c-0``) and are never used. French pages (``/fr/``) print French numbers in the table.
Placeholder rows (no changes, market cap or volume) are skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from bs4 import BeautifulSoup, Tag

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, TerminalSourceError
from cryptoviz.models import ParseResult, Rejection, SourceQuote
from cryptoviz.sources import selectors as sel
from cryptoviz.sources.base import MAX_SOURCE_ID, RawPage, brief_text, checked_text, printable
from cryptoviz.sources.coingecko import (
    ItemRejected,
    got,
    read_integer,
    read_number,
    read_optional_text,
    read_symbol,
    read_text,
    read_timestamp,
)
from cryptoviz.sources.coingecko_html import (
    HttpGetter,
    RowError,
    RowExtras,
    fetch_pages,
    keep_top,
    not_the_list,
    pages_for,
    parse_table_rows,
    utc_now,
)
from cryptoviz.sources.numbers import parse_detailed

logger = logging.getLogger(__name__)

SOURCE = "coinmarketcap-html"
_MAX_DEPTH = 64


def page_url(base_url: str, page: int, lang: str = "en") -> str:
    """``https://coinmarketcap.com/?page=2``; French: ``https://coinmarketcap.com/fr/?page=2``."""
    prefix = "" if lang == "en" else f"/{lang}"
    return f"{base_url.rstrip('/')}{prefix}/?page={page}"


# --- the __NEXT_DATA__ list -------------------------------------------------------------------------


def find_coin_lists(doc: Any) -> list[list[Any]]:
    """Every list under the key ``cryptoCurrencyList``, also inside values that are JSON strings."""
    found: list[list[Any]] = []
    stack: list[tuple[Any, int]] = [(doc, 0)]
    key = sel.COINMARKETCAP_LIST_KEY
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            continue
        if isinstance(node, dict):
            for k, v in node.items():
                if k == key and isinstance(v, list):
                    found.append(v)
                else:
                    stack.append((v, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str) and key in node and node.lstrip()[:1] in ("{", "["):
            try:
                stack.append((json.loads(node), depth + 1))
            except (ValueError, RecursionError):
                continue
    return found


def _next_data(soup: BeautifulSoup) -> tuple[bool, list[Any] | None]:
    """(script present, the coin list or None)."""
    script = soup.select_one(sel.COINMARKETCAP_NEXT_DATA)
    if not isinstance(script, Tag):
        return False, None
    try:
        doc = json.loads(script.get_text())
    except (ValueError, RecursionError) as exc:
        logger.warning("%s: __NEXT_DATA__ is not valid JSON (%s); reading the table", SOURCE, exc)
        return True, None
    lists = find_coin_lists(doc)
    if not lists:
        logger.warning("%s: __NEXT_DATA__ has no %s; reading the table", SOURCE, sel.COINMARKETCAP_LIST_KEY)
        return True, None
    return True, max(lists, key=len)


def _source_id(item: dict[str, Any]) -> str:
    value = item.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return checked_text(value.strip(), "id", MAX_SOURCE_ID, ItemRejected)
    if value is None:
        raise ItemRejected("id", "missing_field")
    raise ItemRejected("id", "not_an_integer", got(value))


def _currency_quote(item: dict[str, Any], key: str) -> dict[str, Any]:
    quotes = item.get("quotes")
    if quotes is None:
        raise ItemRejected("quotes", "missing_field")
    if not isinstance(quotes, list):
        raise ItemRejected("quotes", "not_a_list", f"got {type(quotes).__name__}")
    names = [q.get("name") for q in quotes if isinstance(q, dict)]
    for quote in quotes:
        if isinstance(quote, dict) and isinstance(quote.get("name"), str) and quote["name"].upper() == key:
            return quote
    found = ", ".join(brief_text(n, 20) for n in names[:10]) or "none"
    raise ItemRejected(f"quotes.{key}", "missing_field", f"no {key} quote (found: {found})")


def _label(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for key in ("slug", "id"):
            value = item.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                return printable(str(value).strip())
    return f"item {index}"


def _json_quote(item: Any, collected_at: datetime, currency: str) -> SourceQuote:
    if not isinstance(item, dict):
        raise ItemRejected("item", "not_an_object", f"got {type(item).__name__}")
    key = currency.upper()
    source_id = _source_id(item)
    quote = _currency_quote(item, key)
    prefix = f"quotes.{key}."
    # The quote's own time is when its price was computed; the item's is a fallback.
    last_updated = read_timestamp(quote, "lastUpdated", prefix) or read_timestamp(item, "lastUpdated")
    return SourceQuote(
        source=SOURCE, source_id=source_id, symbol=read_symbol(item),
        name=read_text(item, "name"), slug=read_optional_text(item, "slug"),
        rank=read_integer(item, "cmcRank"),
        price=read_number(quote, "price", prefix), market_cap=read_number(quote, "marketCap", prefix),
        volume_24h=read_number(quote, "volume24h", prefix),
        change_1h=read_number(quote, "percentChange1h", prefix),
        change_24h=read_number(quote, "percentChange24h", prefix),
        change_7d=read_number(quote, "percentChange7d", prefix),
        circulating_supply=read_number(item, "circulatingSupply"),
        total_supply=read_number(item, "totalSupply"), max_supply=read_number(item, "maxSupply"),
        last_updated=last_updated, collected_at=collected_at, currency=currency,
    )


def parse_items(items: list[Any], collected_at: datetime, currency: str) -> ParseResult:
    """The ``cryptoCurrencyList`` items -> quotes; an unreadable item -> a :class:`Rejection`.

    Fields are read like the API parsers read theirs (same reasons: ``missing_field``, ``not_a_number``,
    ``not_an_integer``, ``not_a_string``, ``not_an_object``, ``bad_timestamp``).
    """
    result = ParseResult()
    for index, item in enumerate(items):
        try:
            result.quotes.append(_json_quote(item, collected_at, currency))
        except ItemRejected as exc:
            result.rejected.append(Rejection(SOURCE, _label(item, index), exc.field, exc.reason, exc.detail))
    return result


# --- the server-rendered table -------------------------------------------------------------------------


def _find_table(soup: BeautifulSoup) -> Tag | None:
    table = soup.select_one(sel.COINMARKETCAP_TABLE)
    if isinstance(table, Tag):
        return table
    for candidate in soup.find_all("table"):
        roles, _ = sel.header_columns(candidate)
        if {"coin", "price"} <= roles.keys() and ("market_cap" in roles or "volume_24h" in roles):
            return candidate
    return None


def _coin_link(row: Tag, cells: list[Tag], coin_col: int) -> tuple[Tag, str] | None:
    scopes: list[Tag] = [cells[coin_col]] if coin_col < len(cells) else []
    scopes.append(row)
    for scope in scopes:
        for a in scope.find_all("a", href=True):
            m = sel.COINMARKETCAP_COIN_HREF.match(str(a["href"]).strip())
            if m:
                return a, unquote(m["slug"])
    return None


def _is_lazy(cells: list[Tag], roles: dict[str, int]) -> bool:
    """A placeholder row past the first ten: name, symbol and maybe a price, no other numbers."""
    return all(sel.is_blank(cells[roles[r]] if roles.get(r, 10**6) < len(cells) else None)
               for r in ("change_1h", "change_24h", "change_7d", "market_cap", "volume_24h"))


def _supply(cell: Tag, symbol: str, locale: str) -> float | None:
    """ "19,696,875 BTC" -> 19696875.0; the cell also holds a progress bar and sometimes a percentage."""
    if sel.is_blank(cell):
        return None
    first_error: ParseError | None = None
    for text in cell.stripped_strings:
        trimmed = text.strip()
        if trimmed.upper().endswith(" " + symbol.upper()):
            trimmed = trimmed[: -len(symbol)].strip()
        try:
            parsed = parse_detailed(trimmed, locale=locale)
        except ParseError as exc:
            first_error = first_error or exc
            continue
        if parsed.percent or parsed.currency:
            continue
        return parsed.value
    if first_error is not None:
        raise RowError("circulating_supply", "unparseable", str(first_error))
    return None


def _extras(cells: list[Tag], roles: dict[str, int], locale: str, symbol: str) -> RowExtras:
    coin_cell = cells[roles["coin"]] if roles.get("coin", 10**6) < len(cells) else None
    source_id = None
    if coin_cell is not None:
        for img in coin_cell.find_all("img", src=True):
            m = sel.COINMARKETCAP_LOGO_ID.search(str(img["src"]))
            if m:
                source_id = m["id"]
                break
    index = roles.get("circulating_supply")
    supply = _supply(cells[index], symbol, locale) if index is not None and index < len(cells) else None
    return RowExtras(source_id=source_id, circulating_supply=supply)


def _locale(soup: BeautifulSoup, table: Tag | None) -> str:
    lang = sel.page_lang(soup)
    if lang is None and table is not None:
        for a in table.find_all("a", href=True):
            m = sel.COINMARKETCAP_COIN_HREF.match(str(a["href"]))
            if m and m["lang"]:
                lang = m["lang"].split("-")[0].casefold()
                break
    lang = lang or "en"
    if lang not in ("en", "fr"):
        raise TerminalSourceError(SOURCE, f"page language {lang!r} is not read (en and fr are)")
    return lang


def _parse_table(soup: BeautifulSoup, table: Tag, collected_at: datetime,
                 currency: str) -> tuple[ParseResult, int]:
    locale = _locale(soup, table)
    roles, header_count = sel.header_columns(table)
    count: int | None = header_count
    if not {"coin", "price"} <= roles.keys():
        logger.warning("%s: coin table header not recognised; reading columns by position", SOURCE)
        roles, count = dict(sel.COINMARKETCAP_POSITIONS), None
    return parse_table_rows(
        table=table, source=SOURCE, collected_at=collected_at, currency=currency, locale=locale,
        roles=roles, column_count=count, coin_link=_coin_link, extra=_extras, lazy=_is_lazy)


def _parse(body: bytes, collected_at: datetime, currency: str) -> tuple[ParseResult, int]:
    currency = currency.lower()
    soup = sel.html_soup(body)
    if soup is None:
        raise not_the_list(body, SOURCE, "coin list")
    has_script, items = _next_data(soup)
    if items:
        return parse_items(items, collected_at, currency), len(items)
    table = _find_table(soup)
    if table is None:
        if has_script and items is not None:
            return ParseResult(), 0  # an empty list: the page is past the last one
        raise not_the_list(body, SOURCE, "coin list")
    if not has_script:
        logger.warning("%s: no __NEXT_DATA__ script; reading the ~10 server-rendered rows", SOURCE)
    return _parse_table(soup, table, collected_at, currency)


def parse_page(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    """Parse one coinmarketcap.com coin list page (pure): the ``__NEXT_DATA__`` list, else the table rows.

    Raises ``TransientSourceError`` for a Cloudflare challenge/block page and ``TerminalSourceError``
    ("coin list not found - page layout changed?") when neither the list nor the table is there, or when
    they hold no coins.
    """
    result, rows = _parse(body, collected_at, currency)
    if rows == 0:
        raise TerminalSourceError(SOURCE, "coin list has no coins - page layout changed, "
                                          "or the page is past the last one?")
    logger.debug("%s: %d quotes, %d rejected", SOURCE, len(result.quotes), len(result.rejected))
    return result


def coin_row_count(body: bytes, currency: str = "usd") -> int:
    """How many coins a page holds: 0 past the last page. Raises like :func:`parse_page`."""
    return _parse(body, datetime.now(UTC), currency)[1]


class CoinMarketCapHtmlSource:
    """coinmarketcap.com's public coin list pages, 100 coins a page, read like a browser would."""

    name = SOURCE

    def __init__(self, settings: Settings, http: HttpGetter, *, lang: str = "en",
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.http = http
        self.lang = lang
        self.clock = clock

    def page_url(self, page: int) -> str:
        return page_url(self.settings.coinmarketcap_html_base_url, page, self.lang)

    def fetch(self) -> list[RawPage]:
        currency = self.settings.vs_currency
        return fetch_pages(self.http, self.name, self.page_url, pages_for(self.settings.top_n),
                           lambda body: coin_row_count(body, currency), self.clock)

    def parse(self, page: RawPage) -> ParseResult:
        result = parse_page(page.body, page.fetched_at, self.settings.vs_currency)
        return keep_top(result, self.settings.top_n)
