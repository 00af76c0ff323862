"""coingecko.com coin list pages (``https://www.coingecko.com/en?page=N``), scraped without a key.

The page, as served in 2024-2025 (class names trimmed; they are Tailwind utilities and are not used)::

    <html lang="en"> ...
    <table class="... tw-..." data-coin-table-target="table">
      <thead><tr><th></th><th>#</th><th>Coin</th><th></th><th>Price</th><th>1h</th><th>24h</th><th>7d</th>
          <th class="tw-hidden">30d</th><th>24h Volume</th><th>Market Cap</th><th class="tw-hidden">FDV</th>
          <th>Last 7 Days</th></tr></thead>
      <tbody>
        <tr>
          <td><i class="far fa-star"></i></td>
          <td>1</td>
          <td><a href="/en/coins/bitcoin"><img alt="BTC" src="..."><div>Bitcoin <div>BTC</div></div></a></td>
          <td><button>Buy</button></td>
          <td><span>$67,187.34</span></td>
          <td><span class="gecko-up"><i class="fas fa-caret-up"></i>0.1%</span></td>      (1h)
          <td><span class="gecko-down"><i class="fas fa-caret-down"></i>1.6%</span></td>  (24h: -1.6)
          <td>...7d...</td> <td class="tw-hidden">...30d...</td>
          <td><span>$29,317,843,051</span></td>       (24h volume, printed in full)
          <td><span>$1,323,456,789,012</span></td>    (market cap, printed in full)
          <td class="tw-hidden">...FDV...</td> <td><a href="/en/coins/bitcoin"><img ...sparkline.svg></a></td>
        </tr>
        <tr><td colspan="13"> ...advertisement... </td></tr>

French pages (``/fr?page=N``, ``<html lang="fr">``, links ``/fr/coins/<slug>``) print ``67 187,34 $``
or ``67 187,34 €`` (U+202F between groups), ``1,6 %``, and head the columns "#", "Monnaie", "Cours" (or
"Prix"), "1 h", "24 h", "7 j", "Volume sur 24 h", "Capitalisation boursière".

Columns are found by header text (see :mod:`cryptoviz.sources.selectors`), with the usual positions as a
fallback. Tiny prices are printed ``$0.0₅1234`` (or ``$0.0<sub>5</sub>1234``); changes print the magnitude
and show the sign with a caret. No 1h/24h/7d value, volume or market cap: "-" -> ``None``. A page whose
currency sign is not the asked currency (``€`` when ``usd`` was asked) is refused rather than mislabelled.

Rows: no coin link (advertisement, skeleton) -> skipped; a coin link but no numbers (placeholder) ->
skipped; a cell missing or unreadable -> a ``Rejection`` (reasons ``missing_cell``, ``unparseable``,
``missing``) and the other rows kept. No table -> ``TerminalSourceError``; a Cloudflare page ->
``TransientSourceError``; a table without coin rows -> ``TerminalSourceError``, never an empty success.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote

import httpx
from bs4 import BeautifulSoup, Tag

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, SourceError, TerminalSourceError, TransientSourceError
from cryptoviz.models import ParseResult, Rejection, SourceQuote
from cryptoviz.sources import selectors as sel
from cryptoviz.sources.base import MAX_SYMBOL, MAX_TEXT, RawPage, checked_text, printable
from cryptoviz.sources.numbers import currency_code, parse_number

logger = logging.getLogger(__name__)

SOURCE = "coingecko-html"
ROWS_PER_PAGE = 100
# An upper bound for top_n="all" (coingecko.com lists about 17,000 coins, 170 pages).
MAX_PAGES = 400

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
    """What the HTML sources need from ``cryptoviz.sources.http.HttpClient``."""

    def get(self, source: str, url: str, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> httpx.Response: ...


class RowError(Exception):
    """One cell of a table row cannot be read; the row becomes a Rejection."""

    def __init__(self, field: str, reason: str, detail: str = "") -> None:
        super().__init__(detail)
        self.field = field
        self.reason = reason
        self.detail = detail


# --- pure parsing ------------------------------------------------------------------------------------


def page_url(base_url: str, page: int, lang: str = "en") -> str:
    """``https://www.coingecko.com/en?page=2``."""
    return f"{base_url.rstrip('/')}/{lang}?page={page}"


def _locale(soup: BeautifulSoup, table: Tag, source: str) -> str:
    lang = sel.page_lang(soup)
    if lang is None:
        for a in table.find_all("a", href=True):
            m = sel.COINGECKO_COIN_HREF.match(str(a["href"]))
            if m and m["lang"]:
                lang = m["lang"].split("-")[0].casefold()
                break
    lang = lang or "en"
    if lang not in ("en", "fr"):
        raise TerminalSourceError(source, f"page language {lang!r} is not read (en and fr are)")
    return lang


def _find_table(soup: BeautifulSoup) -> Tag | None:
    table = soup.select_one(sel.COINGECKO_TABLE)
    if isinstance(table, Tag):
        return table
    # The data attribute is the stable marker, but a table headed Coin/Price/Market Cap is the same table.
    for candidate in soup.find_all("table"):
        roles, _ = sel.header_columns(candidate)
        if {"coin", "price"} <= roles.keys() and ("market_cap" in roles or "volume_24h" in roles):
            return candidate
    return None


def _columns(table: Tag) -> tuple[dict[str, int], int | None]:
    roles, count = sel.header_columns(table)
    if {"coin", "price"} <= roles.keys():
        missing = [r for r in sel.COINGECKO_POSITIONS if r not in roles]
        if missing:
            logger.warning("%s: no column headed %s; those values will be empty", SOURCE, ", ".join(missing))
        return roles, count
    logger.warning("%s: coin table header not recognised; reading columns by position", SOURCE)
    return dict(sel.COINGECKO_POSITIONS), None


def _coin_link(row: Tag, cells: list[Tag], coin_col: int) -> tuple[Tag, str] | None:
    scopes: list[Tag] = [cells[coin_col]] if coin_col < len(cells) else []
    scopes.append(row)
    for scope in scopes:
        for a in scope.find_all("a", href=True):
            m = sel.COINGECKO_COIN_HREF.match(str(a["href"]).strip())
            if m:
                return a, unquote(m["slug"])
    return None


_NUMERIC_ROLES = ("change_1h", "change_24h", "change_7d", "volume_24h", "market_cap")
_VALUE_KINDS = (("price", "money"), ("change_1h", "percent"), ("change_24h", "percent"),
                ("change_7d", "percent"), ("volume_24h", "money"), ("market_cap", "money"))


@dataclass(frozen=True, slots=True)
class RowExtras:
    """Values one site's rows carry beyond the common columns."""

    source_id: str | None = None  # default: the slug
    circulating_supply: float | None = None


def _is_lazy(cells: list[Tag], roles: dict[str, int]) -> bool:
    """A placeholder row: it names a coin but every number cell is empty (filled later by script)."""
    return all(sel.is_blank(cells[roles[r]] if roles.get(r, 10**6) < len(cells) else None)
               for r in ("price", *_NUMERIC_ROLES))


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
    *, table: Tag, source: str, collected_at: datetime, currency: str,
    locale: str, roles: dict[str, int], column_count: int | None,
    coin_link: Callable[[Tag, list[Tag], int], tuple[Tag, str] | None],
    extra: Callable[[list[Tag], dict[str, int], str, str], RowExtras] | None = None,
    lazy: Callable[[list[Tag], dict[str, int]], bool] = _is_lazy,
) -> tuple[ParseResult, int]:
    """Read the coin rows of a table; returns the result and how many rows carried coin data.

    Shared by both sites' table layouts. Rows without a coin link (advertisements) and placeholder rows
    without numbers are skipped; a row whose cells cannot be read becomes a :class:`Rejection`.
    """
    result = ParseResult()
    data_rows = 0
    sel.mark_subscripts(table)
    needed = max(roles.values()) + 1
    for row in sel.body_rows(table):
        cells = sel.expand_cells(row)
        if not cells:
            continue
        found = coin_link(row, cells, roles.get("coin", 0))
        if found is None:
            continue  # an advertisement or a separator row
        link, slug = found
        if lazy(cells, roles):
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
            for field, text, longest in (("slug", slug, MAX_TEXT), ("name", name, MAX_TEXT),
                                         ("symbol", symbol.upper(), MAX_SYMBOL)):
                checked_text(text, field, longest, RowError)
            rank = _rank(cells, roles, locale)
            values = {role: _number(cells, roles, role, locale, kind, currency, source)
                      for role, kind in _VALUE_KINDS}
            extras = extra(cells, roles, locale, symbol) if extra is not None else RowExtras()
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


def not_the_list(body: bytes, source: str, what: str) -> SourceError:
    blocked = sel.blocked_reason(body)
    if blocked is not None:
        return TransientSourceError(source, blocked)
    return TerminalSourceError(source, f"{what} not found - page layout changed?")


def _parse(body: bytes, collected_at: datetime, currency: str) -> tuple[ParseResult, int]:
    currency = currency.lower()
    soup = sel.html_soup(body)
    if soup is None:
        raise not_the_list(body, SOURCE, "coin table")
    table = _find_table(soup)
    if table is None:
        raise not_the_list(body, SOURCE, "coin table")
    locale = _locale(soup, table, SOURCE)
    roles, count = _columns(table)
    return parse_table_rows(
        table=table, source=SOURCE, collected_at=collected_at, currency=currency,
        locale=locale, roles=roles, column_count=count, coin_link=_coin_link)


def parse_page(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    """Parse one coingecko.com coin list page (pure).

    Raises ``TransientSourceError`` for a Cloudflare challenge/block page, ``TerminalSourceError`` when
    the coin table is missing or holds no coin rows (layout changed, or past the last page), or when the
    page prices are in another currency than ``currency``.
    """
    result, data_rows = _parse(body, collected_at, currency)
    if data_rows == 0:
        raise TerminalSourceError(SOURCE, "coin table has no coin rows - page layout changed, "
                                          "or the page is past the last one?")
    logger.debug("%s: %d quotes, %d rejected", SOURCE, len(result.quotes), len(result.rejected))
    return result


def coin_row_count(body: bytes, currency: str = "usd") -> int:
    """How many coin rows a page holds: 0 for a coin table without coins (past the last page).

    Raises like :func:`parse_page` when the page is not a coin list at all.
    """
    return _parse(body, datetime.now(UTC), currency)[1]


# --- I/O -----------------------------------------------------------------------------------------------


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


def utc_now() -> datetime:
    return datetime.now(UTC)


class CoinGeckoHtmlSource:
    """coingecko.com's public coin list pages, 100 coins a page, read like a browser would."""

    name = SOURCE

    def __init__(self, settings: Settings, http: HttpGetter, *, lang: str = "en",
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.http = http
        self.lang = lang
        self.clock = clock

    def page_url(self, page: int) -> str:
        return page_url(self.settings.coingecko_html_base_url, page, self.lang)

    def fetch(self) -> list[RawPage]:
        currency = self.settings.vs_currency
        return fetch_pages(self.http, self.name, self.page_url, pages_for(self.settings.top_n),
                           lambda body: coin_row_count(body, currency), self.clock)

    def parse(self, page: RawPage) -> ParseResult:
        result = parse_page(page.body, page.fetched_at, self.settings.vs_currency)
        return keep_top(result, self.settings.top_n)
