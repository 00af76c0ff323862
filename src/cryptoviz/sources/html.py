"""What both page scrapers (coingecko.com and coinmarketcap.com coin lists) share: finding the coin table
and its columns, reading its rows, trying a site's extraction strategies in order, fetching pages like a
browser, and the source class itself.

A site describes its table with a :class:`TableLayout` (selectors live in
:mod:`cryptoviz.sources.selectors`), the ways its pages can be read with :class:`Strategy` objects tried in
a fixed order by :func:`read_page` (embedded JSON first, then the coin table, then the exact values its
cells keep in attributes), and its source with a :class:`Site`. The result names the strategy that read
the page (``ParseResult.strategy``) and the ones tried before it; a page none of them reads raises
:class:`~cryptoviz.errors.LayoutChangedError`.

Numbers are read in the page's decimal mark as its own numbers show it (a page saved by a browser prints
the browser's way: ``$7.299.982.172``, ``0,05%`` on an English page), else in the page language's; a cell
whose mark neither settles (``1.234`` alone) is rejected with the reason ``ambiguous``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol
from urllib.parse import unquote

import httpx
from bs4 import BeautifulSoup, Tag

from cryptoviz import progress
from cryptoviz.config import Settings
from cryptoviz.errors import (
    LayoutChangedError,
    ParseError,
    SourceError,
    TerminalSourceError,
    TransientSourceError,
)
from cryptoviz.models import ParseResult, Rejection, SourceQuote
from cryptoviz.sources import selectors as sel
from cryptoviz.sources.base import MAX_SYMBOL, MAX_TEXT, ParseFn, RawPage, checked_text, printable
from cryptoviz.sources.numbers import (
    AMBIGUOUS,
    ParsedNumber,
    currency_code,
    decimal_mark,
    parse_detailed,
    settle_decimal_mark,
)
from cryptoviz.sources.spec import RequestBudget
from cryptoviz.timeutil import utc_now

logger = logging.getLogger(__name__)

ROWS_PER_PAGE = 100
# An upper bound for top_n="all" (coingecko.com lists about 17,000 coins, 170 pages).
MAX_PAGES = 400
# Pages per minute, burst: gentler than the APIs (a public site, no agreed budget), while a default
# cycle (top_n=250: 3 pages) still goes out at once and the bucket refills well before the next one.
PAGE_RATE = (6, 3)
PAGE_BUDGET = RequestBudget(per_minute=PAGE_RATE[0], burst=PAGE_RATE[1])

# A current desktop Chrome; the sites serve the full server-rendered page to it.
BROWSER_HEADERS: dict[str, str] = {
    "User-Agent": ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/131.0.0.0 Safari/537.36"),
    "Accept": ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
               "image/apng,*/*;q=0.8"),
    "Accept-Language": "en-US,en;q=0.9",
    "Cache-Control": "no-cache",
    "Upgrade-Insecure-Requests": "1",
}


class HttpGetter(Protocol):
    """What the page sources need from ``cryptoviz.sources.http.HttpClient``."""

    def get(self, source: str, url: str, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> httpx.Response: ...

    def set_rate_limit(self, source: str, rate_per_minute: float, burst: int = 1) -> object: ...


class RowError(Exception):
    """One cell of a table row cannot be read; the row becomes a Rejection."""

    def __init__(self, field: str, reason: str, detail: str = "") -> None:
        super().__init__(detail)
        self.field = field
        self.reason = reason
        self.detail = detail


# --- the coin table ------------------------------------------------------------------------------------

NUMERIC_ROLES = ("change_1h", "change_24h", "change_7d", "volume_24h", "market_cap")
_VALUE_KINDS = (("price", "money"), ("change_1h", "percent"), ("change_24h", "percent"),
                ("change_7d", "percent"), ("volume_24h", "money"), ("market_cap", "money"))
# The cells whose printed numbers tell the page's decimal mark (the rank is read with it, not for it).
_EVIDENCE_ROLES = ("price", *NUMERIC_ROLES, "circulating_supply")


@dataclass(frozen=True, slots=True)
class TableLayout:
    """How one site's coin table is found and read."""

    source: str
    selector: str  # the table's stable marker
    coin_href: re.Pattern[str]  # a coin link, with the groups ``lang`` and ``slug``
    positions: dict[str, int]  # column roles by position, when the header cannot be read
    warn_missing: bool = False  # log the position roles a recognised header lacks
    # A placeholder row (filled later by script) has all of these cells empty.
    placeholder_roles: tuple[str, ...] = ("price", *NUMERIC_ROLES)
    # (row, cells, roles) -> the site's own id of the row's coin, when the row shows it (default: the slug)
    row_id: Callable[[Tag, list[Tag], dict[str, int]], str | None] | None = None


def candidate_tables(soup: BeautifulSoup, layout: TableLayout) -> list[Tag]:
    """The tables with the layout's marker, then every other table headed Coin/Price/Market Cap (or Volume):
    the marker is the stable way in, but a table headed so is the same table."""
    marked: list[Tag] = []
    headed: list[Tag] = []
    for candidate in soup.find_all("table"):
        if not isinstance(candidate, Tag):
            continue
        if candidate.css.match(layout.selector):
            marked.append(candidate)
            continue
        roles, _ = sel.header_columns(candidate)
        if {"coin", "price"} <= roles.keys() and ("market_cap" in roles or "volume_24h" in roles):
            headed.append(candidate)
    return marked + headed


def coin_rows(table: Tag, layout: TableLayout) -> list[Tag]:
    """The table's body rows that link to a coin."""
    return [row for row in sel.body_rows(table)
            if any(layout.coin_href.match(str(a["href"]).strip()) for a in row.find_all("a", href=True))]


@dataclass(frozen=True, slots=True)
class TableChoice:
    table: Tag | None  # the candidate with the most coin rows (None: no candidate at all)
    rows: list[Tag]  # its coin rows
    any_rows: bool  # whether any candidate has body rows at all


def best_table(soup: BeautifulSoup, layout: TableLayout) -> TableChoice:
    """The candidate table with the most coin rows, the first of equals. Server-rendered React pages put
    header-only copies of the coin table (its sticky header) before the real one."""
    best: tuple[Tag, list[Tag]] | None = None
    any_rows = False
    for table in candidate_tables(soup, layout):
        rows = coin_rows(table, layout)
        any_rows = any_rows or bool(sel.body_rows(table))
        if best is None or len(rows) > len(best[1]):
            best = (table, rows)
    return TableChoice(best[0], best[1], any_rows) if best else TableChoice(None, [], False)


def page_locale(soup: BeautifulSoup, table: Tag, layout: TableLayout) -> str:
    """The page's language (``en`` or ``fr``): the document's, else the one in its coin links."""
    lang = sel.page_lang(soup)
    if lang is None:
        for a in table.find_all("a", href=True):
            m = layout.coin_href.match(str(a["href"]))
            if m and m["lang"]:
                lang = m["lang"].split("-")[0].casefold()
                break
    lang = lang or "en"
    if lang not in ("en", "fr"):
        raise TerminalSourceError(layout.source, f"page language {lang!r} is not read (en and fr are)")
    return lang


def columns(table: Tag, layout: TableLayout) -> tuple[dict[str, int], int | None]:
    """Column roles by header text, with the header's cell count; by position (and no count) without one."""
    roles, count = sel.header_columns(table)
    if {"coin", "price"} <= roles.keys():
        missing = [r for r in layout.positions if r not in roles] if layout.warn_missing else []
        if missing:
            logger.warning("%s: no column headed %s; those values will be empty", layout.source,
                           ", ".join(missing))
        return roles, count
    logger.warning("%s: coin table header not recognised; reading columns by position", layout.source)
    return dict(layout.positions), None


def table_decimal_mark(rows: list[Tag], roles: dict[str, int]) -> str | None:
    """The decimal mark the table's numbers agree on (a page saved by a browser prints the browser's)."""
    indexes = [roles[r] for r in _EVIDENCE_ROLES if r in roles]
    texts: list[str] = []
    for row in rows:
        cells = sel.expand_cells(row)
        texts.extend(cells[i].get_text("", strip=True) for i in indexes if i < len(cells))
    return settle_decimal_mark(texts)


@dataclass(frozen=True, slots=True)
class _Reading:
    """How this table's cells are read."""

    source: str
    currency: str
    locale: str
    decimal: str | None  # the page's decimal mark; None: its numbers do not tell
    exact: bool  # take exact values from attributes where a cell has them


def _coin_links(row: Tag, cells: list[Tag], coin_col: int, href: re.Pattern[str]) -> tuple[list[Tag], str] | None:
    """The coin cell's links to its coin (the first coin linked), else the row's first coin link."""
    if coin_col < len(cells):
        links: list[Tag] = []
        slug: str | None = None
        for a in cells[coin_col].find_all("a", href=True):
            m = href.match(str(a["href"]).strip())
            if m and (slug is None or unquote(m["slug"]) == slug):
                slug = unquote(m["slug"])
                links.append(a)
        if slug is not None:
            return links, slug
    for a in row.find_all("a", href=True):
        m = href.match(str(a["href"]).strip())
        if m:
            return [a], unquote(m["slug"])
    return None


def _looks_like_symbol(text: str) -> bool:
    return text == text.upper() and any(ch.isalpha() for ch in text) and len(text) <= MAX_SYMBOL


def _name_symbol(links: list[Tag], cells: list[Tag], roles: dict[str, int], coin_col: int) -> tuple[str | None,
                                                                                                    str | None]:
    """(name, symbol) of the row's coin. A link that is itself the symbol (``span.currency-symbol > a``,
    ``a.coin-symbol``) gives the symbol, never the name; of two links showing different texts, an upper-case
    one beside one with lower-case letters is the symbol (``<a>BTC</a> <a>Bitcoin</a>``); the other links
    give the name (and the symbol when they show it); then an upper-case logo ``alt`` beside the link, a
    Symbol column, a symbol attribute."""
    cell = cells[coin_col] if coin_col < len(cells) else None
    explicit: str | None = None  # a link that is the symbol
    named: list[tuple[str | None, str | None]] = []
    for link in links:
        if sel.is_symbol_link(link, cell):
            explicit = explicit or link.get_text("", strip=True) or None
        else:
            named.append(sel.link_name_symbol(link))
    texts = [name for name, _ in named if name]
    if explicit is None and len(set(texts)) > 1:
        upper = [t for t in texts if _looks_like_symbol(t)]
        lower = [t for t in texts if t != t.upper()]
        if upper and lower:
            explicit, texts = upper[0], lower
    name = texts[0] if texts else None
    symbol = explicit or next((s for _, s in named if s), None)
    if symbol is None and cell is not None:  # <img alt="BTC"> beside the name link (coinmarketcap.com 2019-2020)
        alts = [str(img.get("alt") or "").strip() for img in cell.find_all("img") if img.find_parent("a") is None]
        symbol = next((alt for alt in alts if _looks_like_symbol(alt)), None)
    index = roles.get("symbol")
    if symbol is None and index is not None and index < len(cells):
        symbol = cells[index].get_text("", strip=True) or None
    if symbol is None:
        symbol = next((text for c in cells for attr in sel.SYMBOL_ATTRIBUTES
                       if (text := sel.attribute_text(c, attr))), None)
    return name, symbol


def _is_placeholder(cells: list[Tag], roles: dict[str, int], placeholder_roles: tuple[str, ...]) -> bool:
    return all(sel.is_blank(cells[roles[r]] if roles.get(r, 10**6) < len(cells) else None)
               for r in placeholder_roles)


def _mark_for(text: str, role: str, rd: _Reading) -> str | None:
    """The decimal mark to read one cell with; a cell whose mark the page does not settle and whose own
    shape cannot tell (``1.234``) is refused rather than guessed."""
    if rd.decimal is not None:
        return rd.decimal
    mark = decimal_mark(text)
    if mark == AMBIGUOUS:
        raise RowError(role, "ambiguous",
                       f"{text!r}: a lone separator before three digits may be a decimal mark or a thousands "
                       "separator, and the page's other numbers do not tell which")
    return mark


def _printed(cell: Tag, role: str, kind: str, rd: _Reading) -> ParsedNumber:
    """The value the cell prints, in the asked currency."""
    try:
        parsed = sel.cell_number(cell, locale=rd.locale, kind=kind,
                                 decimal=_mark_for(cell.get_text("", strip=True), role, rd))
    except ParseError as exc:
        raise RowError(role, "unparseable", str(exc)) from None
    if kind == "money":
        code = currency_code(parsed.currency)
        if code is not None and code != rd.currency:
            raise TerminalSourceError(
                rd.source, f"the page shows {role} in {code.upper()} but {rd.currency.upper()} was asked for "
                           f"(set CRYPTOVIZ_VS_CURRENCY={code} or use an API source)")
    return parsed


def _exact(cell: Tag, role: str, kind: str, rd: _Reading) -> float | None:
    """The exact value a cell keeps in an attribute (``data-usd="6459.40012853"``), or None."""
    if not rd.exact:
        return None
    found = sel.attribute_value(cell, tuple(n.format(currency=rd.currency) for n in sel.EXACT_VALUE_ATTRIBUTES[kind]))
    if found is None:
        return None
    name, raw = found
    text = raw.strip()
    if text.casefold() in ("", "?", "-", "none", "null", "nan", "n/a"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise RowError(role, "unparseable", f"attribute {name}={raw[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise RowError(role, "unparseable", f"attribute {name}={raw[:40]!r} is not a finite number")
    return value


def _agrees(exact: float, printed: ParsedNumber) -> bool:
    """Whether an exact value is what the cell prints, rounded (or cut) to the digits printed."""
    assert printed.value is not None
    return abs(exact - printed.value) <= printed.unit * 1.000001 + abs(printed.value) * 1e-9


def _cell_value(cell: Tag, role: str, kind: str, rd: _Reading,
                printed: Callable[[], ParsedNumber]) -> float | None:
    """A cell's value: the exact one kept in an attribute when it agrees with the printed one (or when the
    printed text cannot be read), else the printed one. A cell that prints no value has none."""
    exact = _exact(cell, role, kind, rd)
    try:
        shown = printed()
    except RowError:
        if exact is None:
            raise
        return exact
    if shown.value is None:
        return None
    if exact is not None and _agrees(exact, shown):
        return exact
    return shown.value


def _number(cells: list[Tag], roles: dict[str, int], role: str, kind: str, rd: _Reading) -> float | None:
    index = roles.get(role)
    if index is None:
        return None
    cell = cells[index]
    return _cell_value(cell, role, kind, rd, lambda: _printed(cell, role, kind, rd))


def _supply(cells: list[Tag], roles: dict[str, int], symbol: str, rd: _Reading) -> float | None:
    """ "19,696,875 BTC" -> 19696875.0; the cell also holds a progress bar and sometimes a percentage."""
    index = roles.get("circulating_supply")
    if index is None or index >= len(cells) or sel.is_blank(cells[index]):
        return None
    cell = cells[index]

    def printed() -> ParsedNumber:
        first_error: ParseError | None = None
        for text in cell.stripped_strings:
            trimmed = text.strip()
            if trimmed.upper().endswith(" " + symbol.upper()):
                trimmed = trimmed[: -len(symbol)].strip()
            try:
                parsed = parse_detailed(trimmed, locale=rd.locale,
                                        decimal=_mark_for(trimmed, "circulating_supply", rd))
            except ParseError as exc:
                first_error = first_error or exc
                continue
            if parsed.percent or parsed.currency or parsed.value is None:
                continue
            return parsed
        if first_error is not None:
            raise RowError("circulating_supply", "unparseable", str(first_error))
        return ParsedNumber(None)

    return _cell_value(cell, "circulating_supply", "plain", rd, printed)


def _rank(cells: list[Tag], roles: dict[str, int], rd: _Reading) -> int | None:
    index = roles.get("rank")
    if index is None:
        return None
    text = cells[index].get_text("", strip=True).lstrip("#")
    decimal = rd.decimal
    mark = decimal_mark(text) if decimal is None else None
    if mark == AMBIGUOUS:  # a rank is whole: "1,234" groups thousands
        decimal = "," if "." in text else "."
    try:
        value = parse_detailed(text, locale=rd.locale, decimal=decimal or mark).value
    except ParseError as exc:
        raise RowError("rank", "unparseable", str(exc)) from None
    if value is None:
        return None
    if value < 1 or not value.is_integer():
        raise RowError("rank", "unparseable", f"rank {text!r} is not a positive whole number")
    return int(value)


def _row_quote(row: Tag, cells: list[Tag], roles: dict[str, int], links: list[Tag], slug: str,
               layout: TableLayout, rd: _Reading, collected_at: datetime) -> SourceQuote:
    """One coin row as a quote; raises :class:`RowError` for the first cell that cannot be read."""
    coin_col = roles.get("coin", 0)
    name, symbol = _name_symbol(links, cells, roles, coin_col)
    if not name:
        raise RowError("name", "missing", "the coin link has no name")
    if not symbol:
        raise RowError("symbol", "missing", "the coin link shows no symbol")
    for field_name, text, longest in (("slug", slug, MAX_TEXT), ("name", name, MAX_TEXT),
                                      ("symbol", symbol.upper(), MAX_SYMBOL)):
        checked_text(text, field_name, longest, RowError)
    rank = _rank(cells, roles, rd)
    values = {role: _number(cells, roles, role, kind, rd) for role, kind in _VALUE_KINDS}
    supply = _supply(cells, roles, symbol, rd)
    source_id = layout.row_id(row, cells, roles) if layout.row_id else None
    return SourceQuote(
        source=layout.source, source_id=source_id or slug, symbol=symbol.upper(), name=name,
        slug=slug, rank=rank, price=values["price"], market_cap=values["market_cap"],
        volume_24h=values["volume_24h"], change_1h=values["change_1h"],
        change_24h=values["change_24h"], change_7d=values["change_7d"],
        circulating_supply=supply, total_supply=None, max_supply=None,
        last_updated=None, collected_at=collected_at, currency=rd.currency,
    )


def parse_table_rows(
    *, table: Tag, layout: TableLayout, collected_at: datetime, currency: str,
    locale: str, roles: dict[str, int], column_count: int | None, exact: bool = False,
) -> tuple[ParseResult, int]:
    """Read the coin rows of a table; returns the result and how many rows carried coin data.

    Rows without a coin link (advertisements) and placeholder rows without numbers are skipped; a row
    whose cells cannot be read becomes a :class:`Rejection`. ``exact``: prefer the exact values the cells
    keep in attributes to the rounded ones they print.
    """
    source = layout.source
    result = ParseResult()
    data_rows = 0
    sel.mark_subscripts(table)
    needed = max(roles.values()) + 1
    rows = sel.body_rows(table)
    rd = _Reading(source=source, currency=currency, locale=locale, exact=exact,
                  decimal=table_decimal_mark(rows, roles))
    for row in rows:
        cells = sel.expand_cells(row)
        if not cells:
            continue
        found = _coin_links(row, cells, roles.get("coin", 0), layout.coin_href)
        if found is None:
            continue  # an advertisement or a separator row
        links, slug = found
        if _is_placeholder(cells, roles, layout.placeholder_roles):
            continue
        data_rows += 1
        # With a header, every row has its column count; a cell less shifts every value after it.
        if column_count is not None and len(cells) != column_count:
            result.rejected.append(Rejection(
                source, printable(slug), "row", "missing_cell", f"expected {column_count} cells, found {len(cells)}"))
            continue
        if column_count is None and len(cells) < needed:
            result.rejected.append(Rejection(
                source, printable(slug), "row", "missing_cell",
                f"expected at least {needed} cells, found {len(cells)}"))
            continue
        try:
            result.quotes.append(_row_quote(row, cells, roles, links, slug, layout, rd, collected_at))
        except RowError as exc:
            result.rejected.append(Rejection(source, printable(slug), exc.field, exc.reason, exc.detail))
    return result, data_rows


def read_table(soup: BeautifulSoup, table: Tag, layout: TableLayout, collected_at: datetime,
               currency: str, *, exact: bool = False) -> tuple[ParseResult, int]:
    """The coin rows of ``table``, in the page's language, columns by header (else by position)."""
    locale = page_locale(soup, table, layout)
    roles, count = columns(table, layout)
    return parse_table_rows(table=table, layout=layout, collected_at=collected_at, currency=currency,
                            locale=locale, roles=roles, column_count=count, exact=exact)


# --- extraction strategies -----------------------------------------------------------------------------

TABLE = "table"
TABLE_ATTRIBUTES = "table:attributes"


@dataclass(slots=True)
class Page:
    """One page being read, shared by the strategies tried on it (``memo``: what one strategy worked out
    for the next, such as the decoded ``__NEXT_DATA__``)."""

    body: bytes
    soup: BeautifulSoup
    collected_at: datetime
    currency: str
    memo: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Attempt:
    """What a strategy found: the result, and how many coins (rows or items) carried data; 0 is a coin
    list or table without coins (a page past the last one)."""

    result: ParseResult
    rows: int


@dataclass(frozen=True, slots=True)
class Strategy:
    """One way of reading a site's page. ``read`` returns ``None`` when the page holds nothing it knows."""

    name: str
    read: Callable[[Page], Attempt | None]


def _read_best_table(page: Page, layout: TableLayout, *, exact: bool) -> Attempt | None:
    choice = page.memo.get(TABLE)
    if not isinstance(choice, TableChoice):
        choice = page.memo[TABLE] = best_table(page.soup, layout)
    if choice.table is None:
        return None
    if not choice.rows:
        # A coin table without any row is a page past the last one; rows none of which links to a coin are
        # a layout this reader does not know.
        return None if choice.any_rows else Attempt(ParseResult(), 0)
    if sel.carries_exact_values(choice.rows) != exact:
        return None  # the other table strategy reads it
    return Attempt(*read_table(page.soup, choice.table, layout, page.collected_at, page.currency, exact=exact))


def table_strategies(layout: TableLayout) -> tuple[Strategy, Strategy]:
    """The coin table with the most coin rows: read from its printed text (``table``), or, when its cells
    keep exact values in attributes (coinmarketcap.com before 2020), from those (``table:attributes``)."""
    return (Strategy(TABLE, lambda page: _read_best_table(page, layout, exact=False)),
            Strategy(TABLE_ATTRIBUTES, lambda page: _read_best_table(page, layout, exact=True)))


def layout_changed(source: str, what: str, tried: tuple[str, ...], api_hint: str) -> LayoutChangedError:
    """The error for a page none of whose strategies found the coins: what was tried, and what to do."""
    tried_text = ", ".join(tried) if tried else "nothing: the body is not an HTML page"
    return LayoutChangedError(
        source,
        f"{what} not found - page layout changed? (tried: {tried_text}). Update CryptoViz, or use the API "
        f"source instead ({api_hint}); attach the page kept under data/failed-pages/ to a bug report",
        strategies_tried=tried)


def not_the_list(body: bytes, source: str, what: str, tried: tuple[str, ...], api_hint: str) -> SourceError:
    blocked = sel.blocked_reason(body)
    if blocked is not None:
        return TransientSourceError(source, blocked)
    return layout_changed(source, what, tried, api_hint)


def read_page(body: bytes, collected_at: datetime, currency: str, *, source: str,
              strategies: tuple[Strategy, ...], what: str, api_hint: str) -> tuple[ParseResult, int]:
    """Try ``strategies`` in order; the first that finds coins reads the page (the result names it, and the
    ones tried before it). Returns the result and how many coins the page holds: 0 for a coin list or table
    without coins (past the last page). Raises ``TransientSourceError`` for a block page and
    :class:`LayoutChangedError` when no strategy finds the list at all."""
    soup = sel.html_soup(body)
    if soup is None:
        raise not_the_list(body, source, what, (), api_hint)
    page = Page(body=body, soup=soup, collected_at=collected_at, currency=currency.lower())
    tried: list[str] = []
    empty = False
    for strategy in strategies:
        attempt = strategy.read(page)
        if attempt is not None and attempt.rows > 0:
            attempt.result.strategy = strategy.name
            attempt.result.strategies_tried = tuple(tried)
            if tried:
                logger.info("%s: page read by %s (found nothing: %s)", source, strategy.name, ", ".join(tried))
            return attempt.result, attempt.rows
        empty = empty or attempt is not None
        tried.append(strategy.name)
    if empty:
        return ParseResult(strategies_tried=tuple(tried)), 0
    raise not_the_list(body, source, what, tuple(tried), api_hint)


def with_coins(source: str, parsed: tuple[ParseResult, int], empty: str) -> ParseResult:
    """The result of a page that holds coins; a page without any raises ``TerminalSourceError(empty)``
    rather than passing as an empty success."""
    result, rows = parsed
    if rows == 0:
        raise TerminalSourceError(source, empty)
    logger.debug("%s: %d quotes, %d rejected (%s)", source, len(result.quotes), len(result.rejected),
                 result.strategy)
    return result


# --- fetching ------------------------------------------------------------------------------------------


class _PastTheEnd(Exception):
    """A page past the last one (HTTP 404 after page 1): the list is over."""


def _checked_body(source: str, url: str, page: int, response: httpx.Response) -> bytes:
    """The body of a usable answer; raises for block pages and error statuses."""
    status = response.status_code
    body = response.content
    if 200 <= status < 300:
        return body
    blocked = sel.blocked_reason(body)
    if blocked is not None:
        raise TransientSourceError(source, f"{blocked} (HTTP {status})", status=status)
    if status == 404 and page > 1:
        raise _PastTheEnd
    if status in (403, 429):
        raise TransientSourceError(source, f"{url} answered HTTP {status}: the site refuses the request "
                                           "(blocked as a bot?) - retry later, at a lower rate", status=status)
    raise TerminalSourceError(source, f"{url} answered HTTP {status} - check the base URL setting "
                                      f"of {source}", status=status)


def fetch_pages(
    http: HttpGetter, source: str, url_of: Callable[[int], str], pages: int | None,
    row_count: Callable[[bytes], int], clock: Callable[[], datetime],
) -> list[RawPage]:
    """GET pages 1..``pages`` (``None``: until a page has no coin rows or answers 404).

    The first page failing fails the source; a later page failing keeps the pages already had and logs it.
    A 404 after page 1 ends the list quietly (the site lists fewer coins than asked for).
    """
    out: list[RawPage] = []
    last = pages if pages is not None else MAX_PAGES
    try:
        for page in range(1, last + 1):
            url = url_of(page)
            try:
                body = _checked_body(source, url, page, http.get(source, url, headers=dict(BROWSER_HEADERS)))
                if pages is None and row_count(body) == 0:
                    break
            except _PastTheEnd:
                logger.info("%s: page %d answered 404: the list ends at page %d", source, page, page - 1)
                break
            except SourceError as exc:
                if not out:
                    raise
                logger.warning("%s: page %d failed (%s); keeping pages 1-%d", source, page, exc, page - 1)
                break
            out.append(RawPage(source=source, body=body, extension="html", fetched_at=clock(), url=url))
            progress.page_fetched(source, page, pages)
    finally:
        progress.walk_ended(source)
    return out


def pages_for(top_n: int | str) -> int | None:
    """Pages of 100 to fetch for ``top_n``; ``None`` for ``"all"``."""
    if isinstance(top_n, int):
        return max(1, math.ceil(top_n / ROWS_PER_PAGE))
    return None


def keep_top(result: ParseResult, top_n: int | str) -> ParseResult:
    """Drop quotes ranked beyond ``top_n`` (the last page fetched may go past it)."""
    if not isinstance(top_n, int):
        return result
    kept = [q for q in result.quotes if q.rank is None or q.rank <= top_n]
    return ParseResult(quotes=kept, rejected=list(result.rejected), strategy=result.strategy,
                       strategies_tried=result.strategies_tried)


# --- the source ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Site:
    """What a page source needs to know of its site."""

    base_url: Callable[[Settings], str]  # the setting that says where the site is
    page_url: Callable[[str, int, str], str]  # (base URL, page, lang) -> URL
    parse_page: ParseFn
    row_count: Callable[[bytes, str], int]  # (body, currency) -> coins on the page, 0 past the last one


class HtmlPageSource:
    """A site's public coin list pages, 100 coins a page, read like a browser would, at :data:`PAGE_RATE`."""

    name: str
    site: ClassVar[Site]

    def __init__(self, settings: Settings, http: HttpGetter, *, lang: str = "en",
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.http = http
        self.lang = lang
        self.clock = clock
        http.set_rate_limit(self.name, *PAGE_RATE)

    def page_url(self, page: int) -> str:
        return self.site.page_url(self.site.base_url(self.settings), page, self.lang)

    def record_usable(self, usable: bool) -> None:
        """Whether the pages held a usable row: a layout nothing here can read opens the breaker."""
        breaker = getattr(self.http, "breaker", None)
        if breaker is not None:
            breaker(self.name).record_usable(usable)

    def fetch(self) -> list[RawPage]:
        currency = self.settings.vs_currency
        return fetch_pages(self.http, self.name, self.page_url, pages_for(self.settings.top_n),
                           lambda body: self.site.row_count(body, currency), self.clock)

    def parse(self, page: RawPage) -> ParseResult:
        result = self.site.parse_page(page.body, page.fetched_at, self.settings.vs_currency)
        return keep_top(result, self.settings.top_n)
