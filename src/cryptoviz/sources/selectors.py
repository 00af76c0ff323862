"""Where the data sits on coingecko.com and coinmarketcap.com pages: every selector and marker in one
place, plus the small helpers both page parsers use to read cells.

When a site changes its layout, this is the file to edit. Nothing here names a hashed or utility
class (``tw-...``, ``sc-1a2b3c-0``): those change with every build of the sites. Columns are found by
their header text (English and French), with the usual column order as the fallback.

Column roles: ``rank``, ``coin``, ``symbol``, ``price``, ``change_1h``, ``change_24h``, ``change_7d``,
``volume_24h``, ``market_cap``, ``circulating_supply``.

Layouts read, oldest first (the real pages under ``tests/fixtures/html/real`` show each):

- coinmarketcap.com before 2020: ``table#currencies`` (``#currencies-all`` on /all/views/all/), server
  rendered. The coin cell holds two links to the coin: the symbol (``span.currency-symbol > a``) first,
  then the name (``a.currency-name-container``). Cells carry the exact values in attributes
  (``data-usd``, ``data-supply``, ``data-percentusd``, ``data-sort``) beside the rounded printed text.
- coinmarketcap.com 2019-2021: a Next.js page; the list is in ``__NEXT_DATA__`` under
  ``props.initialState.cryptocurrency.listingLatest.data`` (items in the API's shape, snake_case or
  camelCase, ``quote`` keyed by currency), or as rows keyed by a leading ``{"keysArr": [...]}`` item; the
  server-rendered React table comes with header-only copies (the sticky header) before the real one.
- coinmarketcap.com 2021 onwards: ``__NEXT_DATA__`` with ``cryptoCurrencyList`` (see
  :mod:`cryptoviz.sources.coinmarketcap_html`), ``table.cmc-table``.
- coingecko.com: a server-rendered table; ``table[data-coin-table-target="table"]`` today (2024-2025),
  ``table.table-scrollable`` in 2020-2021, where the coin cell links the symbol before the name and the
  market cap column is headed "Mkt Cap".
"""

from __future__ import annotations

import re
import warnings

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, Tag, XMLParsedAsHTMLWarning

from cryptoviz.errors import ParseError
from cryptoviz.sources.numbers import ParsedNumber, parse_detailed, to_subscript

# --- coingecko.com ---------------------------------------------------------------------------------

COINGECKO_TABLE = 'table[data-coin-table-target="table"]'
COINGECKO_ROWS = 'table[data-coin-table-target="table"] > tbody > tr'

# The coin cell holds <a href="/en/coins/<slug>"> (or /fr/coins/<slug>, or an absolute URL).
COINGECKO_COIN_HREF = re.compile(
    r"^(?:https?://[^/]+)?/(?:(?P<lang>[a-z]{2}(?:-[a-zA-Z]{2,4})?)/)?coins/(?P<slug>[^/?#]+)/?(?:[?#].*)?$"
)

# Positions on the page as served in 2024-2025, used when the header cannot be read:
# star, rank, coin, buy, price, 1h, 24h, 7d, 30d (hidden), 24h volume, market cap, FDV (hidden), sparkline.
COINGECKO_POSITIONS: dict[str, int] = {
    "rank": 1, "coin": 2, "price": 4, "change_1h": 5, "change_24h": 6, "change_7d": 7,
    "volume_24h": 9, "market_cap": 10,
}

# --- coinmarketcap.com -----------------------------------------------------------------------------

COINMARKETCAP_NEXT_DATA = 'script#__NEXT_DATA__'
COINMARKETCAP_LIST_KEY = "cryptoCurrencyList"
# props.initialState.cryptocurrency.listingLatest.data: API-shaped items, or a {"keysArr": [...]} item then rows
COINMARKETCAP_LISTING_KEY = "listingLatest"
COINMARKETCAP_KEYS_KEY = "keysArr"
COINMARKETCAP_TABLE = "table.cmc-table"
COINMARKETCAP_ROWS = "table.cmc-table tbody tr"

# The name cell holds <a href="/currencies/<slug>/"> (or /fr/currencies/<slug>/).
COINMARKETCAP_COIN_HREF = re.compile(
    r"^(?:https?://[^/]+)?/(?:(?P<lang>[a-z]{2}(?:-[a-zA-Z]{2,4})?)/)?currencies/(?P<slug>[^/?#]+)/?(?:[?#].*)?$"
)
# The logo URL carries the numeric CoinMarketCap id: .../static/img/coins/64x64/1.png
COINMARKETCAP_LOGO_ID = re.compile(r"/coins/\d+x\d+/(?P<id>\d+)\.(?:png|svg|webp)")
# A page saved by a browser points its logos at local copies named by the id: <img class="coin-logo"
# src="./Cryptocurrency Prices..._files/1.png">
COINMARKETCAP_LOGO_CLASS = "coin-logo"
COINMARKETCAP_SAVED_LOGO_ID = re.compile(r"(?:^|/)(?P<id>\d+)\.(?:png|svg|webp)$")
# Before 2020 the row's menu cell carries the numeric id: <td data-cc-id="1" data-cc-slug="bitcoin">
COINMARKETCAP_ID_ATTR = "data-cc-id"

# star, rank, name, price, 1h %, 24h %, 7d %, market cap, volume (24h), circulating supply, last 7 days.
COINMARKETCAP_POSITIONS: dict[str, int] = {
    "rank": 1, "coin": 2, "price": 3, "change_1h": 4, "change_24h": 5, "change_7d": 6,
    "market_cap": 7, "volume_24h": 8, "circulating_supply": 9,
}

# --- column headers (both sites, English and French) -------------------------------------------------

# Header texts are compared after normalize_header(): case-folded, spaces and ().%:- removed.
HEADER_ROLES: dict[str, str] = {
    # rank
    "#": "rank", "rank": "rank", "rang": "rank", "n°": "rank",
    # coin
    "coin": "coin", "name": "coin", "monnaie": "coin", "nom": "coin", "cryptomonnaie": "coin",
    "crypto": "coin", "actif": "coin",
    # symbol (a column of its own on coinmarketcap.com's /all/views/all/ before 2020)
    "symbol": "symbol", "symbole": "symbol",
    # price
    "price": "price", "cours": "price", "prix": "price",
    # changes
    "1h": "change_1h", "24h": "change_24h", "7d": "change_7d", "7j": "change_7d",
    "change1h": "change_1h", "change24h": "change_24h", "change7d": "change_7d",
    # 24h volume
    "24hvolume": "volume_24h", "volume24h": "volume_24h", "volumesur24h": "volume_24h",
    "volume": "volume_24h", "volumesur24heures": "volume_24h", "volume24heures": "volume_24h",
    # market cap
    "marketcap": "market_cap", "mktcap": "market_cap", "capitalisationboursière": "market_cap",
    "capitalisation": "market_cap",
    "capboursière": "market_cap", "capitalisationdemarché": "market_cap", "capdemarché": "market_cap",
    # circulating supply
    "circulatingsupply": "circulating_supply", "offreencirculation": "circulating_supply",
    "quantitéencirculation": "circulating_supply", "encirculation": "circulating_supply",
}

_HEADER_NOISE = re.compile(r"[\s().%:\-\u00a0\u202f]+")


def normalize_header(text: str) -> str:
    """``"Volume sur 24 h"`` -> ``"volumesur24h"``; ``"1h %"`` -> ``"1h"``."""
    return _HEADER_NOISE.sub("", text).casefold()


def header_role(text: str) -> str | None:
    """The column role a header text names, or ``None``."""
    return HEADER_ROLES.get(normalize_header(text))


# --- pages that are not the coin list ----------------------------------------------------------------

# Cloudflare challenge and block pages. Ordinary pages behind Cloudflare also load
# /cdn-cgi/challenge-platform/ scripts, so these are only consulted once the coin list is missing.
CLOUDFLARE_MARKERS = (
    "just a moment...",
    "attention required! | cloudflare",
    "access denied",
    "cf-error-details",
    "cf-browser-verification",
    "cf_chl_opt",
    "challenges.cloudflare.com",
    "error 1020",
    "error code: 1020",
    "checking your browser",
    "enable javascript and cookies to continue",
    "used cloudflare to restrict access",
)
RATE_LIMIT_MARKERS = ("429 too many requests", "rate limit exceeded", "you are being rate limited")


# --- reading helpers shared by both page parsers -------------------------------------------------------

_NEGATIVE_CLASS_PARTS = frozenset({"down", "negative", "danger", "decrease"})
_MAX_COLSPAN = 64


def html_soup(body: bytes) -> BeautifulSoup | None:
    """Parse a page; ``None`` when the body is not HTML at all (empty, JSON, plain text)."""
    if b"<" not in body:
        return None
    # Arbitrary bodies (an XML error page, a stray <?xml ...?>) must not turn into warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        # lxml refuses NUL bytes outright; a browser ignores them, so do we.
        try:
            return BeautifulSoup(body.replace(b"\x00", b""), "lxml")
        except ValueError:
            return None


def body_text(body: bytes) -> str:
    """The body as lower-case text, for marker searches."""
    return body[:200_000].decode("utf-8", errors="replace").casefold()


def blocked_reason(body: bytes) -> str | None:
    """Why the page is a block/challenge page instead of the coin list, or ``None``."""
    text = body_text(body)
    if any(marker in text for marker in CLOUDFLARE_MARKERS):
        if "just a moment" in text or "checking your browser" in text or "cf_chl_opt" in text:
            return 'blocked by Cloudflare ("Just a moment..." challenge page) - retry later, at a lower rate'
        return 'blocked by Cloudflare ("Access denied" page) - retry later, at a lower rate'
    if any(marker in text for marker in RATE_LIMIT_MARKERS):
        return "rate limited by the site (429 page) - retry later, at a lower rate"
    return None


def page_lang(soup: BeautifulSoup) -> str | None:
    """Primary language subtag of ``<html lang="...">`` (``"fr-FR"`` -> ``"fr"``), or ``None``."""
    html = soup.find("html")
    lang = html.get("lang") if isinstance(html, Tag) else None
    if not isinstance(lang, str) or not lang.strip():
        return None
    return lang.strip().split("-")[0].split("_")[0].casefold()


def mark_subscripts(root: Tag) -> None:
    """``0.0<sub>5</sub>123`` -> ``0.0₅123``, the form :mod:`cryptoviz.sources.numbers` reads."""
    for sub in root.find_all("sub"):
        text = sub.get_text("", strip=True)
        if text.isdigit() and text.isascii():
            sub.string = to_subscript(text)


def _span(cell: Tag) -> int:
    raw = cell.get("colspan")
    try:
        return max(1, min(_MAX_COLSPAN, int(str(raw).strip()))) if raw is not None else 1
    except ValueError:
        return 1


def expand_cells(row: Tag) -> list[Tag]:
    """The row's cells, each repeated ``colspan`` times, so that index i is column i."""
    cells: list[Tag] = []
    for cell in row.find_all(["td", "th"], recursive=False):
        cells.extend([cell] * _span(cell))
    return cells


def header_columns(table: Tag) -> tuple[dict[str, int], int]:
    """(role -> column index, number of columns) from the table's header row; ({}, 0) without one."""
    header_row: Tag | None = None
    thead = table.find("thead")
    scope = thead if isinstance(thead, Tag) else table
    for tr in scope.find_all("tr"):
        if tr.find("th", recursive=False) is not None:
            header_row = tr
            break
    if header_row is None:
        return {}, 0
    roles: dict[str, int] = {}
    index = 0
    for th in header_row.find_all(["th", "td"], recursive=False):
        role = header_role(th.get_text(" ", strip=True))
        if role is not None and role not in roles:
            roles[role] = index
        index += _span(th)
    return roles, index


def body_rows(table: Tag) -> list[Tag]:
    """``table > tbody > tr`` (every tbody), or ``table > tr`` when the page has no tbody."""
    rows: list[Tag] = []
    for tbody in table.find_all("tbody", recursive=False):
        rows.extend(tbody.find_all("tr", recursive=False))
    if not rows:
        rows = [tr for tr in table.find_all("tr", recursive=False) if tr.find("td", recursive=False)]
    return rows


def is_blank(cell: Tag | None) -> bool:
    return cell is None or not cell.get_text("", strip=True)


def shows_negative(cell: Tag) -> bool:
    """Whether a change cell is drawn as a fall (``fa-caret-down``, ``gecko-down``, ``icon-Caret-down``).

    The sites print the magnitude only ("1.2%") and show the direction with a caret icon and a colour
    class; these semantic class names have outlived several redesigns, unlike the hashed ones.
    """
    for tag in [cell, *cell.find_all(True)]:
        classes = tag.get("class")
        tokens = [str(c) for c in classes] if isinstance(classes, list) else str(classes or "").split()
        for token in tokens:
            if _NEGATIVE_CLASS_PARTS.intersection(re.split(r"[-_:]", token.casefold())):
                return True
    return False


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def cell_number(cell: Tag, *, locale: str, kind: str, decimal: str | None = None) -> ParsedNumber:
    """The number a cell shows. ``kind``: ``"money"`` (an amount in a currency), ``"percent"``, ``"plain"``.

    Cells sometimes print one value twice (coinmarketcap.com: "$1.32T" and "$1,323,456,789,012" in two
    spans, or "$29,317,843,051" beside "436,344 BTC"): when the whole text does not read as one number,
    the most precise single string of the right kind wins. ``decimal``: the page's decimal mark, when its
    numbers tell it (see :func:`cryptoviz.sources.numbers.settle_decimal_mark`). Raises :class:`ParseError`.
    """
    joined = cell.get_text("", strip=True)
    try:
        parsed = _of_kind(parse_detailed(joined, locale=locale, decimal=decimal), kind, joined)
    except ParseError as first_error:
        best: tuple[int, ParsedNumber] | None = None
        for text in cell.stripped_strings:
            try:
                candidate = _of_kind(parse_detailed(text, locale=locale, decimal=decimal), kind, text)
            except ParseError:
                continue
            if candidate.value is None:
                continue
            if kind == "money" and candidate.currency is None:
                continue
            score = _digits(text)
            if best is None or score > best[0]:
                best = (score, candidate)
        if best is None:
            raise first_error from None
        parsed = best[1]
    if kind == "percent" and parsed.value and not parsed.signed and shows_negative(cell):
        parsed = ParsedNumber(-parsed.value, parsed.currency, parsed.percent, parsed.suffix, True,
                              parsed.approximate, parsed.unit)
    return parsed


def _of_kind(parsed: ParsedNumber, kind: str, text: str) -> ParsedNumber:
    if parsed.value is None:
        return parsed
    if kind == "money" and parsed.percent:
        raise ParseError(f"cannot read amount {text!r}: it is a percentage")
    if kind == "percent" and (parsed.currency or parsed.suffix):
        raise ParseError(f"cannot read percentage {text!r}: it carries a currency sign or a suffix")
    if kind == "plain" and (parsed.percent or parsed.currency):
        raise ParseError(f"cannot read count {text!r}: it carries a currency sign or a percent sign")
    return parsed


def link_name_symbol(link: Tag) -> tuple[str | None, str | None]:
    """(name, symbol) from a coin link: its texts ("Bitcoin", "BTC"), else the logo's alt text.

    coingecko.com: ``<img alt="BTC">Bitcoin <div>BTC</div>``; coinmarketcap.com:
    ``<img alt="Bitcoin logo"><p>Bitcoin</p><p class="coin-item-symbol">BTC</p>``.
    """
    texts = [t for t in link.stripped_strings if t]
    symbol_el = link.find(class_=re.compile("symbol", re.IGNORECASE))
    symbol: str | None = symbol_el.get_text("", strip=True) if isinstance(symbol_el, Tag) else None
    names = [t for t in texts if t != symbol and not t.isdigit()]
    name = names[0] if names else None
    if symbol is None and len(names) >= 2:
        symbol = names[1]
    img = link.find("img")
    alt = img.get("alt") if isinstance(img, Tag) else None
    if isinstance(alt, str):
        alt = re.sub(r"\s+logo$", "", alt.strip(), flags=re.IGNORECASE)
        if alt:
            if name is None:
                name = alt
            elif symbol is None and alt.casefold() != name.casefold():
                symbol = alt
    return (name or None), (symbol or None)


def _classes(tag: Tag) -> str:
    classes = tag.get("class")
    return " ".join(str(c) for c in classes) if isinstance(classes, list) else str(classes or "")


def is_symbol_link(link: Tag, cell: Tag | None = None) -> bool:
    """Whether a coin link shows the symbol rather than the name: its own class says so
    (``a.coin-symbol``), or a wrapper's inside the cell does (``span.currency-symbol > a``)."""
    node: Tag | None = link
    while isinstance(node, Tag) and node is not cell:
        if re.search("symbol", _classes(node), re.IGNORECASE):
            return True
        parent = node.parent
        node = parent if isinstance(parent, Tag) and parent.name not in ("tr", "table", "[document]") else None
    return False


# Attributes naming a row's coin symbol: <td data-symbol="BTC"> (coinmarketcap.com before 2020),
# <span data-coin-symbol="btc"> (coingecko.com before 2023).
SYMBOL_ATTRIBUTES = ("data-symbol", "data-coin-symbol")

# The attributes in which coinmarketcap.com's pages before 2020 kept each cell's exact value (a table whose
# rows carry one of them is read by the "table:attributes" strategy).
EXACT_VALUE_MARKERS = ("data-usd", "data-percentusd", "data-supply")
# Where each kind of value may be found exactly, most precise first ({currency}: the asked currency).
EXACT_VALUE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "money": ("data-{currency}", "data-sort"),
    "percent": ("data-sort", "data-percent{currency}"),
    "plain": ("data-supply", "data-sort"),
}


def attribute_value(cell: Tag, names: tuple[str, ...]) -> tuple[str, str] | None:
    """(name, value) of the first of ``names`` set on the cell or inside it, in that order of names."""
    scope = [cell, *cell.find_all(True)]
    for name in names:
        for tag in scope:
            value = tag.get(name)
            if isinstance(value, str):
                return name, value
    return None


def with_attribute(root: Tag, name: str) -> Tag | None:
    """``root`` itself or the first tag inside it that has the attribute ``name``."""
    if root.has_attr(name):
        return root
    return root.find(lambda tag: tag.has_attr(name))


def attribute_text(root: Tag, name: str) -> str | None:
    """The stripped value of the first attribute ``name`` on or inside ``root``; None when absent or blank."""
    tag = with_attribute(root, name)
    value = tag.get(name) if tag is not None else None
    return value.strip() or None if isinstance(value, str) else None


def carries_exact_values(rows: list[Tag]) -> bool:
    """Whether the rows keep exact values in attributes (``data-usd`` and the like)."""
    markers = set(EXACT_VALUE_MARKERS)
    return any(not markers.isdisjoint(tag.attrs) for row in rows for tag in row.find_all(True))
