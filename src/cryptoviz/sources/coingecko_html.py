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
``missing``, ``ambiguous``) and the other rows kept. No table -> ``LayoutChangedError``; a Cloudflare page
-> ``TransientSourceError``; a table without coin rows -> ``TerminalSourceError``, never an empty success.
Of several tables headed like the coin table, the one with the most coin rows is read.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptoviz.models import ParseResult
from cryptoviz.sources import selectors as sel
from cryptoviz.sources.coingecko import COINGECKO_IDS
from cryptoviz.sources.html import (
    PAGE_BUDGET,
    HtmlPageSource,
    Site,
    Strategy,
    TableLayout,
    read_page,
    table_strategies,
    with_coins,
)
from cryptoviz.sources.spec import SourceSpec

SOURCE = "coingecko-html"
API_HINT = "coingecko"

TABLE = TableLayout(source=SOURCE, selector=sel.COINGECKO_TABLE, coin_href=sel.COINGECKO_COIN_HREF,
                    positions=sel.COINGECKO_POSITIONS, warn_missing=True)

# The page embeds no coin list: its table (the one with the most coin rows), from its printed text or,
# where its cells keep exact values in attributes, from those.
STRATEGIES: tuple[Strategy, ...] = table_strategies(TABLE)


def page_url(base_url: str, page: int, lang: str = "en") -> str:
    """``https://www.coingecko.com/en?page=2``."""
    return f"{base_url.rstrip('/')}/{lang}?page={page}"


def _parse(body: bytes, collected_at: datetime, currency: str) -> tuple[ParseResult, int]:
    return read_page(body, collected_at, currency, source=SOURCE, strategies=STRATEGIES, what="coin table",
                     api_hint=API_HINT)


def parse_page(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    """Parse one coingecko.com coin list page (pure), trying :data:`STRATEGIES` in order.

    Raises ``TransientSourceError`` for a Cloudflare challenge/block page, ``LayoutChangedError`` (naming
    the strategies tried) when no coin table is found, ``TerminalSourceError`` when the table holds no
    coin rows (past the last page), or when the page prices are in another currency than ``currency``.
    """
    return with_coins(SOURCE, _parse(body, collected_at, currency),
                      "coin table has no coin rows - the page is past the last one, or its layout changed")


def coin_row_count(body: bytes, currency: str = "usd") -> int:
    """How many coin rows a page holds: 0 for a coin table without coins (past the last page).

    Raises like :func:`parse_page` when the page is not a coin list at all.
    """
    return _parse(body, datetime.now(UTC), currency)[1]


class CoinGeckoHtmlSource(HtmlPageSource):
    """coingecko.com's public coin list pages, 100 coins a page, read like a browser would."""

    name = SOURCE
    site = Site(base_url=lambda settings: settings.coingecko_html_base_url, page_url=page_url,
                parse_page=parse_page, row_count=coin_row_count)


SPEC = SourceSpec(
    name=SOURCE, title="coingecko.com coin list pages (scraped)", kind="pull", namespace=COINGECKO_IDS,
    trust=0.6, parse=parse_page, build=CoinGeckoHtmlSource, budget=PAGE_BUDGET,
    settings=("coingecko_html_base_url",), extension="html",
)
