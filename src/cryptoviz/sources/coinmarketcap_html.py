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
from datetime import UTC, datetime
from typing import Any

from bs4 import BeautifulSoup, Tag

from cryptoviz.errors import ParseError
from cryptoviz.models import ParseResult
from cryptoviz.sources import selectors as sel
from cryptoviz.sources.base import brief_text
from cryptoviz.sources.coinmarketcap import COINMARKETCAP_IDS, ItemLayout, has_key
from cryptoviz.sources.coinmarketcap import parse_items as parse_layout_items
from cryptoviz.sources.fields import ItemRejected, read_container
from cryptoviz.sources.html import (
    NUMERIC_ROLES,
    PAGE_BUDGET,
    HtmlPageSource,
    RowError,
    RowExtras,
    Site,
    TableLayout,
    find_table,
    not_the_list,
    read_table,
    with_coins,
)
from cryptoviz.sources.numbers import parse_detailed
from cryptoviz.sources.spec import SourceSpec

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


def _listed_quote(item: dict[str, Any], key: str) -> dict[str, Any]:
    """The page's ``"quotes": [{"name": "USD", ...}]``."""
    quotes: list[Any] = read_container(item, "quotes", list)
    names = [q.get("name") for q in quotes if isinstance(q, dict)]
    for quote in quotes:
        if isinstance(quote, dict) and isinstance(quote.get("name"), str) and quote["name"].upper() == key:
            return quote
    found = ", ".join(brief_text(n, 20) for n in names[:10]) or "none"
    raise ItemRejected(f"quotes.{key}", "missing_field", f"no {key} quote (found: {found})")


PAGE_ITEM = ItemLayout(
    source=SOURCE, quotes="quotes", quote=_listed_quote, rank="cmcRank", price="price", market_cap="marketCap",
    volume_24h="volume24h", change_1h="percentChange1h", change_24h="percentChange24h",
    change_7d="percentChange7d", circulating_supply="circulatingSupply", total_supply="totalSupply",
    max_supply="maxSupply", last_updated="lastUpdated",
)


def parse_items(items: list[Any], collected_at: datetime, currency: str) -> ParseResult:
    """The ``cryptoCurrencyList`` items -> quotes; an unreadable item -> a :class:`Rejection`.

    Read like the API's items (same reasons: ``missing_field``, ``not_a_number``, ``not_an_integer``,
    ``not_a_string``, ``not_an_object``, ``bad_timestamp``).
    """
    return parse_layout_items(items, collected_at, currency, PAGE_ITEM)


# --- the server-rendered table -------------------------------------------------------------------------


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


TABLE = TableLayout(source=SOURCE, selector=sel.COINMARKETCAP_TABLE, coin_href=sel.COINMARKETCAP_COIN_HREF,
                    positions=sel.COINMARKETCAP_POSITIONS, placeholder_roles=NUMERIC_ROLES, row_extras=_extras)


def _parse(body: bytes, collected_at: datetime, currency: str) -> tuple[ParseResult, int]:
    currency = currency.lower()
    soup = sel.html_soup(body)
    if soup is None:
        raise not_the_list(body, SOURCE, "coin list")
    has_script, items = _next_data(soup)
    if items:
        return parse_items(items, collected_at, currency), len(items)
    table = find_table(soup, TABLE)
    if table is None:
        if has_script and items is not None:
            return ParseResult(), 0  # an empty list: the page is past the last one
        raise not_the_list(body, SOURCE, "coin list")
    if not has_script:
        logger.warning("%s: no __NEXT_DATA__ script; reading the ~10 server-rendered rows", SOURCE)
    return read_table(soup, table, TABLE, collected_at, currency)


def parse_page(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    """Parse one coinmarketcap.com coin list page (pure): the ``__NEXT_DATA__`` list, else the table rows.

    Raises ``TransientSourceError`` for a Cloudflare challenge/block page and ``TerminalSourceError``
    ("coin list not found - page layout changed?") when neither the list nor the table is there, or when
    they hold no coins.
    """
    return with_coins(SOURCE, _parse(body, collected_at, currency),
                      "coin list has no coins - page layout changed, or the page is past the last one?")


def coin_row_count(body: bytes, currency: str = "usd") -> int:
    """How many coins a page holds: 0 past the last page. Raises like :func:`parse_page`."""
    return _parse(body, datetime.now(UTC), currency)[1]


class CoinMarketCapHtmlSource(HtmlPageSource):
    """coinmarketcap.com's public coin list pages, 100 coins a page, read like a browser would."""

    name = SOURCE
    site = Site(base_url=lambda settings: settings.coinmarketcap_html_base_url, page_url=page_url,
                parse_page=parse_page, row_count=coin_row_count)


SPEC = SourceSpec(
    name=SOURCE, title="coinmarketcap.com coin list pages (scraped)", kind="pull", namespace=COINMARKETCAP_IDS,
    trust=0.7, parse=parse_page, build=CoinMarketCapHtmlSource, budget=PAGE_BUDGET,
    settings=("coinmarketcap_html_base_url",), extension="html",
    # Without a CoinMarketCap key its pages stand in for the API.
    default=lambda settings: not has_key(settings),
)
