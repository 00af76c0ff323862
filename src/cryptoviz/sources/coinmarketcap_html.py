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

Older pages keep the list in other shapes, tried in this order (:data:`STRATEGIES`; the result names the
one that read the page):

``next-data:cryptoCurrencyList``
    the list above (2021 onwards).
``next-data:listingLatest``
    ``props.initialState.cryptocurrency.listingLatest.data`` as a list of items shaped like the API's
    listings (2019-2020): snake_case (``cmc_rank``, ``circulating_supply``) or camelCase (``cmcRank``,
    ``circulatingSupply``), the quotes keyed by currency (``"quote": {"USD": {"price": ...}}``).
``next-data:keysArr``
    the same list as rows of values under a leading ``{"keysArr": ["id", "name", ..., "quote.USD.price",
    ...]}`` item (the all-coins pages, 2021-2023); a dotted key is a path into the item.
``table``
    the coin table with the most coin rows (see below).
``table:attributes``
    the table of the pages before 2020 (``table#currencies``), whose cells keep their exact values in
    ``data-usd``, ``data-supply``, ``data-percentusd`` and ``data-sort`` attributes beside the rounded
    printed text; the coin cell links the symbol before the name.

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
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bs4 import Tag

from cryptoviz.models import ParseResult
from cryptoviz.sources import selectors as sel
from cryptoviz.sources.base import brief_text
from cryptoviz.sources.coinmarketcap import API_ITEM, COINMARKETCAP_IDS, ItemLayout, has_key
from cryptoviz.sources.coinmarketcap import parse_items as parse_layout_items
from cryptoviz.sources.fields import ItemRejected, read_container
from cryptoviz.sources.html import (
    NUMERIC_ROLES,
    PAGE_BUDGET,
    Attempt,
    HtmlPageSource,
    Page,
    Site,
    Strategy,
    TableLayout,
    read_page,
    table_strategies,
    with_coins,
)
from cryptoviz.sources.spec import SourceSpec

logger = logging.getLogger(__name__)

SOURCE = "coinmarketcap-html"
API_HINT = "coinmarketcap, with a free API key from coinmarketcap.com/api"
_MAX_DEPTH = 64


def page_url(base_url: str, page: int, lang: str = "en") -> str:
    """``https://coinmarketcap.com/?page=2``; French: ``https://coinmarketcap.com/fr/?page=2``."""
    prefix = "" if lang == "en" else f"/{lang}"
    return f"{base_url.rstrip('/')}{prefix}/?page={page}"


# --- the __NEXT_DATA__ document -------------------------------------------------------------------------


def find_keyed(doc: Any, keys: tuple[str, ...]) -> dict[str, list[Any]]:
    """Every value under each of ``keys``, anywhere in ``doc``, also inside values that are JSON strings
    (``initialState`` is one). Values found are searched too (a list can hold another)."""
    found: dict[str, list[Any]] = {key: [] for key in keys}
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            continue
        if isinstance(node, dict):
            for k, v in node.items():
                if k in found:
                    found[k].append(v)
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str) and node.lstrip()[:1] in ("{", "[") and any(key in node for key in keys):
            try:
                stack.append((json.loads(node), depth + 1))
            except (ValueError, RecursionError):
                continue
    return found


def find_coin_lists(doc: Any) -> list[list[Any]]:
    """Every list under the key ``cryptoCurrencyList``, also inside values that are JSON strings."""
    return [v for v in find_keyed(doc, (sel.COINMARKETCAP_LIST_KEY,))[sel.COINMARKETCAP_LIST_KEY]
            if isinstance(v, list)]


_KEYS = (sel.COINMARKETCAP_LIST_KEY, sel.COINMARKETCAP_LISTING_KEY)


def _next_data(page: Page) -> dict[str, list[Any]]:
    """The values under the keys the strategies look for, from the page's ``__NEXT_DATA__`` (decoded once)."""
    memo = page.memo.get("next-data")
    if isinstance(memo, dict):
        return memo
    found: dict[str, list[Any]] = {key: [] for key in _KEYS}
    script = page.soup.select_one(sel.COINMARKETCAP_NEXT_DATA)
    if isinstance(script, Tag):
        try:
            found = find_keyed(json.loads(script.get_text()), _KEYS)
        except (ValueError, RecursionError) as exc:
            logger.warning("%s: __NEXT_DATA__ is not valid JSON (%s); reading the table", SOURCE, exc)
    page.memo["next-data"] = found
    return found


def _listing_data(page: Page, *, keyed: bool) -> list[list[Any]]:
    """``listingLatest.data`` lists: as ``{"keysArr": ...}`` then rows (``keyed``), or as items."""
    lists = [v.get("data") for v in _next_data(page)[sel.COINMARKETCAP_LISTING_KEY] if isinstance(v, dict)]
    return [data for data in lists if isinstance(data, list) and _is_keys_arr(data) == keyed]


def _is_keys_arr(data: list[Any]) -> bool:
    return bool(data) and isinstance(data[0], dict) and sel.COINMARKETCAP_KEYS_KEY in data[0]


# --- the items -------------------------------------------------------------------------------------------


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
_SNAKE_KEYS = ("cmc_rank", "circulating_supply", "total_supply", "max_supply", "last_updated", "num_market_pairs")


def item_layout(items: list[Any]) -> ItemLayout:
    """How a list's items name their fields: snake_case like the API's (``cmc_rank``) or camelCase like the
    pages' (``cmcRank``), the quotes keyed by currency (``quote``) or listed (``quotes``)."""
    first: dict[str, Any] = next((i for i in items if isinstance(i, dict)), {})
    base = replace(API_ITEM, source=SOURCE) if any(k in first for k in _SNAKE_KEYS) else PAGE_ITEM
    if base.rank not in first and "rank" in first:  # the 2020 pages: "rank", not "cmc_rank"
        base = replace(base, rank="rank")
    if isinstance(first.get("quote"), dict) or "quotes" not in first:
        return replace(base, quotes="quote", quote=API_ITEM.quote)
    return replace(base, quotes="quotes", quote=_listed_quote)


def parse_items(items: list[Any], collected_at: datetime, currency: str) -> ParseResult:
    """Coin items of the page's JSON -> quotes; an unreadable item -> a :class:`Rejection`.

    Read like the API's items (same reasons: ``missing_field``, ``not_a_number``, ``not_an_integer``,
    ``not_a_string``, ``not_an_object``, ``bad_timestamp``), in whichever naming the items use.
    """
    return parse_layout_items(items, collected_at, currency, item_layout(items))


def _nest(keys: list[Any], values: list[Any]) -> dict[str, Any]:
    """A ``keysArr`` row as an item: ``"quote.USD.price"`` -> ``{"quote": {"USD": {"price": ...}}}``."""
    item: dict[str, Any] = {}
    for key, value in zip(keys, values, strict=False):
        if not isinstance(key, str) or not key:
            continue
        *path, last = key.split(".")
        node: Any = item
        for part in path:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict) and not isinstance(node.get(last), dict):
            node[last] = value
    return item


def keyed_rows(data: list[Any]) -> list[Any]:
    """The items of a ``[{"keysArr": [...]}, [values], ...]`` list; a row that is not a list stays as it is
    (and is rejected as an item)."""
    keys = data[0].get(sel.COINMARKETCAP_KEYS_KEY)
    if not isinstance(keys, list):
        return list(data[1:])
    return [_nest(keys, row) if isinstance(row, list) else row for row in data[1:]]


def _items_attempt(lists: list[list[Any]], page: Page) -> Attempt | None:
    if not lists:
        return None
    items = max(lists, key=len)
    return Attempt(parse_items(items, page.collected_at, page.currency), len(items))


def _crypto_currency_list(page: Page) -> Attempt | None:
    lists = [v for v in _next_data(page)[sel.COINMARKETCAP_LIST_KEY] if isinstance(v, list)]
    return _items_attempt(lists, page)


def _listing_latest(page: Page) -> Attempt | None:
    return _items_attempt(_listing_data(page, keyed=False), page)


def _keys_arr(page: Page) -> Attempt | None:
    return _items_attempt([keyed_rows(data) for data in _listing_data(page, keyed=True)], page)


# --- the server-rendered table -------------------------------------------------------------------------


def _row_id(row: Tag, cells: list[Tag], roles: dict[str, int]) -> str | None:
    """The numeric CoinMarketCap id: from the logo (``.../coins/64x64/1.png``; a page saved by a browser
    keeps the file name only, ``..._files/1.png``), else the menu cell's ``data-cc-id`` (before 2020)."""
    coin_cell = cells[roles["coin"]] if roles.get("coin", 10**6) < len(cells) else None
    if coin_cell is not None:
        for img in coin_cell.find_all("img", src=True):
            m = sel.COINMARKETCAP_LOGO_ID.search(str(img["src"]))
            if m is None and sel.COINMARKETCAP_LOGO_CLASS in (img.get("class") or []):
                m = sel.COINMARKETCAP_SAVED_LOGO_ID.search(str(img["src"]))
            if m:
                return m["id"]
    value = sel.attribute_text(row, sel.COINMARKETCAP_ID_ATTR)
    return value if value is not None and value.isdigit() else None


TABLE = TableLayout(source=SOURCE, selector=sel.COINMARKETCAP_TABLE, coin_href=sel.COINMARKETCAP_COIN_HREF,
                    positions=sel.COINMARKETCAP_POSITIONS, placeholder_roles=NUMERIC_ROLES, row_id=_row_id)

STRATEGIES: tuple[Strategy, ...] = (
    Strategy("next-data:cryptoCurrencyList", _crypto_currency_list),
    Strategy("next-data:listingLatest", _listing_latest),
    Strategy("next-data:keysArr", _keys_arr),
    *table_strategies(TABLE),
)


def _parse(body: bytes, collected_at: datetime, currency: str) -> tuple[ParseResult, int]:
    return read_page(body, collected_at, currency, source=SOURCE, strategies=STRATEGIES, what="coin list",
                     api_hint=API_HINT)


def parse_page(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    """Parse one coinmarketcap.com coin list page (pure), trying :data:`STRATEGIES` in order.

    Raises ``TransientSourceError`` for a Cloudflare challenge/block page, ``LayoutChangedError`` (naming
    the strategies tried) when none finds the list, and ``TerminalSourceError`` when the list or table
    found holds no coins (past the last page).
    """
    return with_coins(SOURCE, _parse(body, collected_at, currency),
                      "coin list has no coins - the page is past the last one, or its layout changed")


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
