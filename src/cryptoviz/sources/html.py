"""What both page scrapers (coingecko.com and coinmarketcap.com coin lists) share: finding the coin table
and its columns, reading its rows, fetching pages like a browser, and the source class itself.

A site describes its table with a :class:`TableLayout` (selectors live in
:mod:`cryptoviz.sources.selectors`) and its source with a :class:`Site`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol
from urllib.parse import unquote

import httpx
from bs4 import BeautifulSoup, Tag

from cryptoviz import progress
from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, SourceError, TerminalSourceError, TransientSourceError
from cryptoviz.models import ParseResult, Rejection, SourceQuote
from cryptoviz.sources import selectors as sel
from cryptoviz.sources.base import MAX_SYMBOL, MAX_TEXT, ParseFn, RawPage, checked_text, printable
from cryptoviz.sources.numbers import currency_code, parse_number
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


@dataclass(frozen=True, slots=True)
class RowExtras:
    """Values one site's rows carry beyond the common columns."""

    source_id: str | None = None  # default: the slug
    circulating_supply: float | None = None


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
    # (cells, roles, locale, symbol) -> what the site's rows carry beyond the common columns
    row_extras: Callable[[list[Tag], dict[str, int], str, str], RowExtras] | None = None


def find_table(soup: BeautifulSoup, layout: TableLayout) -> Tag | None:
    table = soup.select_one(layout.selector)
    if isinstance(table, Tag):
        return table
    # The marker is the stable way in, but a table headed Coin/Price/Market Cap is the same table.
    for candidate in soup.find_all("table"):
        roles, _ = sel.header_columns(candidate)
        if {"coin", "price"} <= roles.keys() and ("market_cap" in roles or "volume_24h" in roles):
            return candidate
    return None


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


def _coin_link(row: Tag, cells: list[Tag], coin_col: int, href: re.Pattern[str]) -> tuple[Tag, str] | None:
    scopes: list[Tag] = [cells[coin_col]] if coin_col < len(cells) else []
    scopes.append(row)
    for scope in scopes:
        for a in scope.find_all("a", href=True):
            m = href.match(str(a["href"]).strip())
            if m:
                return a, unquote(m["slug"])
    return None


def _is_placeholder(cells: list[Tag], roles: dict[str, int], placeholder_roles: tuple[str, ...]) -> bool:
    return all(sel.is_blank(cells[roles[r]] if roles.get(r, 10**6) < len(cells) else None)
               for r in placeholder_roles)


def _number(cells: list[Tag], roles: dict[str, int], role: str, locale: str, kind: str,
            currency: str, source: str) -> float | None:
    index = roles.get(role)
    if index is None:
        return None
    cell = cells[index]
    try:
        parsed = sel.cell_number(cell, locale=locale, kind=kind)
    except ParseError as exc:
        raise RowError(role, "unparseable", str(exc)) from None
    if kind == "money":
        code = currency_code(parsed.currency)
        if code is not None and code != currency:
            raise TerminalSourceError(
                source, f"the page shows {role} in {code.upper()} but {currency.upper()} was asked for "
                        f"(set CRYPTOVIZ_VS_CURRENCY={code} or use an API source)")
    return parsed.value


def _rank(cells: list[Tag], roles: dict[str, int], locale: str) -> int | None:
    index = roles.get("rank")
    if index is None:
        return None
    text = cells[index].get_text("", strip=True).lstrip("#")
    try:
        value = parse_number(text, locale=locale)
    except ParseError as exc:
        raise RowError("rank", "unparseable", str(exc)) from None
    if value is None:
        return None
    if value < 1 or not value.is_integer():
        raise RowError("rank", "unparseable", f"rank {text!r} is not a positive whole number")
    return int(value)


def parse_table_rows(
    *, table: Tag, layout: TableLayout, collected_at: datetime, currency: str,
    locale: str, roles: dict[str, int], column_count: int | None,
) -> tuple[ParseResult, int]:
    """Read the coin rows of a table; returns the result and how many rows carried coin data.

    Rows without a coin link (advertisements) and placeholder rows without numbers are skipped; a row
    whose cells cannot be read becomes a :class:`Rejection`.
    """
    source = layout.source
    result = ParseResult()
    data_rows = 0
    sel.mark_subscripts(table)
    needed = max(roles.values()) + 1
    for row in sel.body_rows(table):
        cells = sel.expand_cells(row)
        if not cells:
            continue
        found = _coin_link(row, cells, roles.get("coin", 0), layout.coin_href)
        if found is None:
            continue  # an advertisement or a separator row
        link, slug = found
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
        name, symbol = sel.link_name_symbol(link)
        try:
            if not name:
                raise RowError("name", "missing", "the coin link has no name")
            if not symbol:
                raise RowError("symbol", "missing", "the coin link shows no symbol")
            for field_name, text, longest in (("slug", slug, MAX_TEXT), ("name", name, MAX_TEXT),
                                              ("symbol", symbol.upper(), MAX_SYMBOL)):
                checked_text(text, field_name, longest, RowError)
            rank = _rank(cells, roles, locale)
            values = {role: _number(cells, roles, role, locale, kind, currency, source)
                      for role, kind in _VALUE_KINDS}
            extras = layout.row_extras(cells, roles, locale, symbol) if layout.row_extras else RowExtras()
        except RowError as exc:
            result.rejected.append(Rejection(source, printable(slug), exc.field, exc.reason, exc.detail))
            continue
        result.quotes.append(SourceQuote(
            source=source, source_id=extras.source_id or slug, symbol=symbol.upper(), name=name,
            slug=slug, rank=rank, price=values["price"], market_cap=values["market_cap"],
            volume_24h=values["volume_24h"], change_1h=values["change_1h"],
            change_24h=values["change_24h"], change_7d=values["change_7d"],
            circulating_supply=extras.circulating_supply, total_supply=None, max_supply=None,
            last_updated=None, collected_at=collected_at, currency=currency,
        ))
    return result, data_rows


def read_table(soup: BeautifulSoup, table: Tag, layout: TableLayout, collected_at: datetime,
               currency: str) -> tuple[ParseResult, int]:
    """The coin rows of ``table``, in the page's language, columns by header (else by position)."""
    locale = page_locale(soup, table, layout)
    roles, count = columns(table, layout)
    return parse_table_rows(table=table, layout=layout, collected_at=collected_at, currency=currency,
                            locale=locale, roles=roles, column_count=count)


def not_the_list(body: bytes, source: str, what: str) -> SourceError:
    blocked = sel.blocked_reason(body)
    if blocked is not None:
        return TransientSourceError(source, blocked)
    return TerminalSourceError(source, f"{what} not found - page layout changed?")


def with_coins(source: str, parsed: tuple[ParseResult, int], empty: str) -> ParseResult:
    """The result of a page that holds coins; a page without any raises ``TerminalSourceError(empty)``
    rather than passing as an empty success."""
    result, rows = parsed
    if rows == 0:
        raise TerminalSourceError(source, empty)
    logger.debug("%s: %d quotes, %d rejected", source, len(result.quotes), len(result.rejected))
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
    return ParseResult(quotes=kept, rejected=list(result.rejected))


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

    def fetch(self) -> list[RawPage]:
        currency = self.settings.vs_currency
        return fetch_pages(self.http, self.name, self.page_url, pages_for(self.settings.top_n),
                           lambda body: self.site.row_count(body, currency), self.clock)

    def parse(self, page: RawPage) -> ParseResult:
        result = self.site.parse_page(page.body, page.fetched_at, self.settings.vs_currency)
        return keep_top(result, self.settings.top_n)
