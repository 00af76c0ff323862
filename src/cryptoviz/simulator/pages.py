"""coingecko.com and coinmarketcap.com coin list pages, rendered from API-shaped data.

The market simulator serves these at ``/coingecko-www/en?page=N``, ``/coingecko-www/fr?page=N``,
``/cmc-www/?page=N`` and ``/cmc-www/fr/?page=N``; the test fixtures under ``tests/fixtures/html`` are made
with them too. The markup follows the real pages as of 2024-2025 (see the docstrings of
:mod:`cryptoviz.sources.coingecko_html` and :mod:`cryptoviz.sources.coinmarketcap_html`): full documents,
utility/hashed class names, an advertisement row, caret icons for the sign of changes, numbers printed the
way each site prints them, in English or French. Standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal
from html import escape
from typing import Any

from cryptoviz.sources.numbers import to_subscript

NNBSP = "\u202f"  # narrow no-break space: French thousands separator
NBSP = "\u00a0"  # no-break space: French space before a currency sign or %

ROWS_PER_PAGE = 100
CMC_SERVER_ROWS = 10
_WIDE = Context(prec=400)  # enough digits for any float printed in full

# --- numbers as the sites print them ----------------------------------------------------------------


def _group(integer: str, sep: str) -> str:
    out = []
    while len(integer) > 3:
        out.append(integer[-3:])
        integer = integer[:-3]
    out.append(integer)
    return sep.join(reversed(out))


def _fixed(value: float, decimals: int, lang: str) -> str:
    """``1234.5`` -> ``"1,234.50"`` (en) / ``"1 234,50"`` (fr, U+202F).

    Rounds the exact binary value half up, as JavaScript's ``toFixed`` does on the sites (2.345 -> "2.34").
    """
    quantum = Decimal(1).scaleb(-decimals)
    text = f"{Decimal(abs(value)).quantize(quantum, rounding=ROUND_HALF_UP, context=_WIDE):f}"
    integer, _, fraction = text.partition(".")
    sep, point = (",", ".") if lang == "en" else (NNBSP, ",")
    out = _group(integer, sep) + (point + fraction if fraction else "")
    return ("-" if value < 0 and out.strip("0.,") else "") + out


_SIGNS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "krw": "₩", "inr": "₹", "rub": "₽", "btc": "₿",
          "eth": "Ξ", "cad": "CA$", "aud": "A$", "brl": "R$"}


def currency_sign(currency: str) -> str:
    """``"usd"`` -> ``"$"``; a currency without a sign is printed by its code (``"CHF"``)."""
    return _SIGNS.get(currency.lower(), currency.upper())


def _money(number: str, lang: str, currency: str) -> str:
    sign = currency_sign(currency)
    if lang != "en":
        return f"{number}{NBSP}{sign}"
    return f"{sign} {number}" if sign.isalpha() else f"{sign}{number}"


def _leading_zeros(value: float) -> int:
    """Zeros between the decimal point and the first significant digit (0.00123 -> 2)."""
    return max(0, -Decimal(repr(value)).adjusted() - 1) if 0 < value < 1 else 0


def _small(value: float, significant: int, lang: str, subscript_from: int | None) -> str:
    zeros = _leading_zeros(value)
    text = _fixed(value, zeros + significant, lang)
    if subscript_from is None:
        return text
    point = "." if lang == "en" else ","
    integer, _, fraction = text.partition(point)
    shown = len(fraction) - len(fraction.lstrip("0"))
    if integer == "0" and shown >= subscript_from and shown < len(fraction):
        return f"0{point}0{to_subscript(str(shown))}{fraction[shown:]}"
    return text


def coingecko_price(value: float | None, lang: str = "en", currency: str = "usd") -> str:
    """``$67,187.34``, ``$0.5123``, ``$0.0₅1234`` (4+ zeros after the point are written as a count)."""
    if value is None:
        return "-"
    if value >= 1 or value == 0:
        return _money(_fixed(value, 2, lang), lang, currency)
    return _money(_small(value, 4, lang, subscript_from=4), lang, currency)


def coingecko_amount(value: float | None, lang: str = "en", currency: str = "usd") -> str:
    """Market cap and volume, in full: ``$1,323,456,789,012`` / ``1 323 456 789 012 $``."""
    if value is None:
        return "-"
    return _money(_fixed(value, 0, lang), lang, currency)


def percent(value: float | None, decimals: int, lang: str = "en") -> str:
    """The magnitude only (the caret shows the sign): ``1.6%`` / ``1,6 %``."""
    if value is None:
        return "-"
    number = _fixed(abs(value), decimals, lang)
    return f"{number}%" if lang == "en" else f"{number}{NBSP}%"


def cmc_price(value: float | None, lang: str = "en", currency: str = "usd") -> str:
    """``$67,187.34``, ``$0.5123``, ``$0.00002345`` (no zero count on coinmarketcap.com)."""
    if value is None:
        return "--"
    if value >= 1 or value == 0:
        return _money(_fixed(value, 2, lang), lang, currency)
    return _money(_small(value, 4, lang, subscript_from=None), lang, currency)


def cmc_compact(value: float | None, lang: str = "en", currency: str = "usd") -> str:
    """``$1.32T``, ``$29.32B``, ``$812.45M``; French ``1 323,46 Md $``, ``812,45 M $``."""
    if value is None:
        return "--"
    units = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")) if lang == "en" else (
        (1e9, "Md"), (1e6, "M"), (1e3, "k"))
    for size, unit in units:
        if abs(value) >= size:
            number = _fixed(value / size, 2, lang)
            return _money(f"{number}{unit}" if lang == "en" else f"{number}{NBSP}{unit}", lang, currency)
    return _money(_fixed(value, 2, lang), lang, currency)


def cmc_amount(value: float | None, lang: str = "en", currency: str = "usd") -> str:
    """Market cap and volume in full, as the wide layout prints them: ``$1,323,456,789,012``."""
    if value is None:
        return "--"
    return _money(_fixed(value, 0, lang), lang, currency)


def cmc_count(value: float | None, symbol: str, lang: str = "en") -> str:
    """Circulating supply and volume in coins: ``19,696,875 BTC`` / ``19 696 875 BTC``."""
    if value is None:
        return "--"
    return f"{_fixed(value, 0, lang)} {symbol}"


# --- shared page parts -------------------------------------------------------------------------------


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _num(item: dict[str, Any], key: str) -> float | None:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _shown(item: dict[str, Any], key: str, fmt: Callable[[float | None], str]) -> str:
    """A value as the page prints it; a value that is not a number is printed as it is (a broken cell)."""
    value = item.get(key)
    if isinstance(value, str):
        return value
    return fmt(_num(item, key))


def _caret(value: float | None, up: str, down: str, icon_up: str, icon_down: str, text: str,
           extra_class: str = "") -> str:
    if value is None:
        return f'<span class="{extra_class}">{text}</span>'
    cls, icon = (up, icon_up) if value >= 0 else (down, icon_down)
    return f'<span class="{cls} {extra_class}"><i class="{icon}"></i>{text}</span>'


# --- coingecko.com -----------------------------------------------------------------------------------

_CG_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Cryptocurrency Prices, Charts, and Crypto Market Cap | CoinGecko",
        "h1": "Cryptocurrency Prices by Market Cap",
        "buy": "Buy", "ad": "Ad", "next": "Next", "prev": "Previous",
    },
    "fr": {
        "title": "Cours des cryptomonnaies, graphiques et capitalisation boursière | CoinGecko",
        "h1": "Cours des cryptomonnaies par capitalisation boursière",
        "buy": "Acheter", "ad": "Annonce", "next": "Suivant", "prev": "Précédent",
    },
}
_CG_HEADERS: dict[str, list[str]] = {
    "en": ["", "#", "Coin", "", "Price", "1h", "24h", "7d", "30d", "24h Volume", "Market Cap", "FDV",
           "Last 7 Days"],
    "fr": ["", "#", "Monnaie", "", "Cours", "1 h", "24 h", "7 j", "30 j", "Volume sur 24 h",
           "Capitalisation boursière", "FDV", "7 derniers jours"],
}
_CG_HIDDEN = {8, 11}  # 30d and FDV: in the markup, hidden by CSS
_CG_TD = ("tw-px-1 tw-py-2.5 2lg:tw-p-2.5 tw-bg-inherit tw-text-gray-900 dark:tw-text-moon-50 "
          "tw-text-end")


def _cg_image_number(item: dict[str, Any], fallback: int) -> int:
    match = re.search(r"/images/(\d+)/", str(item.get("image") or ""))
    return int(match.group(1)) if match else fallback


def _cg_change(item: dict[str, Any], key: str, lang: str) -> str:
    return _caret(_num(item, key), "gecko-up", "gecko-down", "fas fa-fw fa-caret-up",
                  "fas fa-fw fa-caret-down", escape(_shown(item, key, lambda v: percent(v, 1, lang))),
                  "tw-flex tw-justify-end tw-items-center")


def _cg_row(item: dict[str, Any], position: int, lang: str, currency: str) -> str:
    coin_id = str(item.get("id") or "")
    symbol = str(item.get("symbol") or "").upper()
    name = str(item.get("name") or "")
    number = _cg_image_number(item, position)
    image = item.get("image") or f"https://assets.coingecko.com/coins/images/{number}/standard/{coin_id}.png"
    href = f"/{lang}/coins/{coin_id}"
    rank = item.get("market_cap_rank")
    price = _num(item, "current_price")
    cells = [
        f'<td class="tw-sticky tw-left-0 tw-z-[1] tw-bg-inherit tw-px-1 tw-py-2.5">'
        f'<i class="far fa-star tw-cursor-pointer tw-text-gray-400" '
        f'data-action="click->portfolio-coin#toggle" data-coin-id="{number}"></i></td>',
        f'<td class="tw-sticky tw-left-[24px] tw-z-[1] tw-bg-inherit tw-px-1 tw-py-2.5 tw-text-gray-900 '
        f'dark:tw-text-moon-50 tw-text-center">{escape(str(rank)) if rank is not None else "-"}</td>',
        f'<td class="tw-sticky tw-left-[51px] tw-z-[1] tw-bg-inherit tw-px-1 tw-py-2.5 2lg:tw-p-2.5">'
        f'<a class="tw-flex tw-items-center tw-w-full" href="{_attr(href)}">'
        f'<img alt="{_attr(symbol)}" class="tw-w-6 tw-h-6 tw-mr-2 tw-mx-auto tw-object-cover" loading="lazy"'
        f' src="{_attr(image)}">'
        f'<div class="tw-flex tw-flex-col 2lg:tw-flex-row tw-items-start 2lg:tw-items-center">'
        f'<div class="tw-text-gray-700 dark:tw-text-moon-100 tw-font-semibold tw-text-sm tw-leading-5">'
        f'\n{escape(name)}\n<div class="tw-block 2lg:tw-inline tw-text-xs tw-leading-4 tw-text-gray-500 '
        f'dark:tw-text-moon-200 tw-font-medium">\n{escape(symbol)}\n</div>\n</div></div></a></td>',
        f'<td class="{_CG_TD}"><button class="tw-border tw-border-gray-200 tw-rounded-md tw-px-2.5 tw-py-1 '
        f'tw-text-xs tw-font-semibold" data-action="click->buy-button#open" type="button">'
        f'{_CG_TEXT[lang]["buy"]}</button></td>',
        f'<td class="{_CG_TD}" data-sort="{_attr(price if price is not None else "")}">'
        f'<span data-price-target="price" data-coin-id="{number}" data-price-usd="{_attr(price or "")}">'
        f'{escape(_shown(item, "current_price", lambda v: coingecko_price(v, lang, currency)))}</span></td>',
    ]
    for key in ("price_change_percentage_1h_in_currency", "price_change_percentage_24h_in_currency",
                "price_change_percentage_7d_in_currency", "price_change_percentage_30d_in_currency"):
        value = _num(item, key)
        hidden = " tw-hidden" if key.endswith("30d_in_currency") else ""
        cells.append(f'<td class="{_CG_TD}{hidden}" data-sort="{_attr(value if value is not None else "")}">'
                     f'{_cg_change(item, key, lang)}</td>')
    for key, hidden in (("total_volume", ""), ("market_cap", ""), ("fully_diluted_valuation", " tw-hidden")):
        value = _num(item, key)
        cells.append(f'<td class="{_CG_TD}{hidden}" data-sort="{_attr(value if value is not None else "")}">'
                     f'<span data-price-target="price" data-price-usd="{_attr(value or "")}">'
                     f'{escape(_shown(item, key, lambda v: coingecko_amount(v, lang, currency)))}</span></td>')
    cells.append(
        f'<td class="{_CG_TD} tw-w-[135px]"><a href="{_attr(href)}">'
        f'<img alt="{_attr(coin_id)} ({_attr(symbol)}) 7d chart" class="tw-w-[135px] tw-h-[50px]" '
        f'loading="lazy" '
        f'src="https://www.coingecko.com/coins/{number}/sparkline.svg"></a></td>')
    return ('<tr class="hover:tw-bg-gray-50 tw-bg-white dark:tw-bg-moon-900 hover:dark:tw-bg-moon-800 '
            'tw-text-sm" data-view-component="true">\n' + "\n".join(cells) + "\n</tr>")


def _cg_ad_row(lang: str) -> str:
    return (
        '<tr class="tw-bg-white dark:tw-bg-moon-900" data-view-component="true">'
        '<td colspan="13" class="tw-p-0"><div class="tw-flex tw-items-center tw-gap-2 tw-px-2 tw-py-3 '
        'tw-bg-gray-50" data-controller="ad-impression" data-ad-impression-id-value="cg-home-table-1">'
        '<a href="https://ads.example-exchange.com/landing?utm_source=coingecko&amp;utm_medium=table" '
        'rel="sponsored nofollow noopener" target="_blank" class="tw-flex tw-items-center tw-gap-2">'
        '<img alt="ExampleX" class="tw-w-6 tw-h-6" src="https://assets.coingecko.com/ads/examplex.png">'
        '<span class="tw-font-semibold">ExampleX</span><span class="tw-text-gray-500">'
        + ("Trade 350+ coins with 0% maker fees" if lang == "en" else "Échangez plus de 350 monnaies")
        + f'</span></a><span class="tw-ml-auto tw-text-xs tw-text-gray-400">{_CG_TEXT[lang]["ad"]}</span>'
        '</div></td></tr>'
    )


def _cg_pagination(page: int, lang: str) -> str:
    pages = sorted({1, 2, 3, max(1, page - 1), page, page + 1})
    links = [f'<a class="tw-px-3 tw-py-1.5{" tw-font-bold" if p == page else ""}" '
             f'href="/{lang}?page={p}">{p}</a>' for p in pages]
    if page > 1:
        links.insert(0, f'<a rel="prev" href="/{lang}?page={page - 1}">{_CG_TEXT[lang]["prev"]}</a>')
    links.append(f'<a rel="next" href="/{lang}?page={page + 1}">{_CG_TEXT[lang]["next"]}</a>')
    return ('<nav aria-label="Pagination" class="tw-flex tw-justify-center tw-gap-1 tw-my-6">'
            + "".join(links) + "</nav>")


def render_coingecko_html(items: list[dict[str, Any]], page: int, lang: str = "en", *,
                          currency: str | None = None) -> str:
    """A coingecko.com coin list page (``/en?page=N`` or ``/fr?page=N``) showing ``items``.

    ``items``: the coins of this page in ``/coins/markets`` shape (at most 100; when more are given, the
    page's slice ``[(page-1)*100 : page*100]`` is shown). ``page`` numbers the pagination links.
    ``currency``: what the values are in, for the sign printed; default ``usd`` in English and ``eur``
    in French (the simulator's French pages). An advertisement row sits in the middle of the table, as
    on the real site. A value that is not a number (a broken item) is printed as it is.
    """
    if lang not in _CG_TEXT:
        raise ValueError(f"lang must be 'en' or 'fr', got {lang!r}")
    currency = (currency or ("usd" if lang == "en" else "eur")).lower()
    if len(items) > ROWS_PER_PAGE:
        items = items[(page - 1) * ROWS_PER_PAGE: page * ROWS_PER_PAGE]
    text = _CG_TEXT[lang]
    heads = []
    for i, label in enumerate(_CG_HEADERS[lang]):
        hidden = " tw-hidden" if i in _CG_HIDDEN else ""
        align = " tw-text-left" if i == 2 else " tw-text-end"
        heads.append(f'<th class="tw-py-3 tw-px-1 tw-font-semibold{align}{hidden}" '
                     f'data-sortable-target="column"><div class="tw-flex tw-items-center">'
                     f'{escape(label)}</div></th>')
    rows = [_cg_row(item, (page - 1) * ROWS_PER_PAGE + i + 1, lang, currency) for i, item in enumerate(items)]
    if rows:
        rows.insert(max(1, len(rows) // 2), _cg_ad_row(lang))
    total = sum(v for v in (_num(i, "market_cap") for i in items) if v is not None)
    return f"""<!DOCTYPE html>
<html lang="{lang}" class="tw-antialiased">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(text["title"])}</title>
<meta name="description" content="CoinGecko">
<link rel="canonical" href="https://www.coingecko.com/{lang}?page={page}">
<link rel="stylesheet" href="https://static.coingecko.com/packs/css/v2/application-c86563d7.chunk.css">
<script src="https://static.coingecko.com/packs/js/application-6f1f0a0b2c.js" defer></script>
</head>
<body class="tw-bg-white dark:tw-bg-moon-900" data-controller="application">
<header class="tw-border-b tw-border-gray-200">
<nav class="tw-flex tw-items-center tw-gap-4 tw-px-4 tw-py-3" aria-label="Main">
<a href="/{lang}" class="tw-font-bold">CoinGecko</a>
<a href="/{lang}/categories">Categories</a><a href="/{lang}/exchanges">Exchanges</a>
<a href="/{lang}/nft">NFT</a><a href="/{lang}/learn">Learn</a>
</nav>
</header>
<main class="container tw-mx-auto tw-px-2">
<h1 class="tw-text-gray-900 tw-font-bold tw-text-xl">{escape(text["h1"])}</h1>
<p class="tw-text-gray-500 tw-text-sm">{escape(coingecko_amount(total, lang, currency))}</p>
<div class="tw-overflow-x-auto 2lg:tw-overflow-x-visible" data-controller="coin-table">
<table class="sortable gecko-homepage-coin-table gecko-sticky-table-wrapper !tw-w-full tw-border-y \
tw-border-gray-200 dark:tw-border-moon-700 tw-divide-y tw-divide-gray-200" data-coin-table-target="table">
<thead class="tw-bg-white dark:tw-bg-moon-900 tw-text-gray-900 tw-font-semibold tw-text-xs">
<tr>
{chr(10).join(heads)}
</tr>
</thead>
<tbody data-view-component="true">
{chr(10).join(rows)}
</tbody>
</table>
</div>
{_cg_pagination(page, lang)}
</main>
<footer class="tw-border-t tw-border-gray-200 tw-py-8"><p>© 2025 CoinGecko</p></footer>
<script>(function(){{var a=document.createElement('script');\
a.src='/cdn-cgi/challenge-platform/scripts/jsd/main.js';document.getElementsByTagName('head')[0].appendChild(a);\
}})();</script>
<script defer src="https://static.cloudflareinsights.com/beacon.min.js" \
data-cf-beacon='{{"token": "0a1b2c3d4e5f"}}'></script>
</body>
</html>
"""


# --- coinmarketcap.com -------------------------------------------------------------------------------

_CMC_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Cryptocurrency Prices, Charts And Market Capitalizations | CoinMarketCap",
        "h1": "Today's Cryptocurrency Prices by Market Cap",
    },
    "fr": {
        "title": "Cours, graphiques et capitalisations boursières des cryptomonnaies | CoinMarketCap",
        "h1": "Cours des cryptomonnaies aujourd'hui par capitalisation boursière",
    },
}

_CMC_HEADERS: dict[str, list[str]] = {
    "en": ["", "#", "Name", "Price", "1h %", "24h %", "7d %", "Market Cap", "Volume(24h)",
           "Circulating Supply", "Last 7 Days", ""],
    "fr": ["", "#", "Nom", "Prix", "1h %", "24h %", "7j %", "Capitalisation boursière", "Volume (24 h)",
           "Offre en circulation", "7 derniers jours", ""],
}


def _h(n: int) -> str:
    """A styled-components class as the build prints it: ``sc-ae0cff98-0``."""
    return f"sc-ae0cff98-{n}"


def _cmc_quote(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    quotes = item.get("quote") or {}
    if not isinstance(quotes, dict) or not quotes:
        return "USD", {}
    name = "USD" if "USD" in quotes else next(iter(quotes))
    quote = quotes[name]
    return name, quote if isinstance(quote, dict) else {}


def cmc_list_item(item: dict[str, Any]) -> dict[str, Any]:
    """A ``/v1/cryptocurrency/listings/latest`` item -> the camelCase ``cryptoCurrencyList`` item."""
    quotes = []
    for name, q in (item.get("quote") or {}).items():
        if not isinstance(q, dict):
            continue
        quotes.append({
            "name": name, "price": q.get("price"), "volume24h": q.get("volume_24h"),
            "volumeChange24h": q.get("volume_change_24h"), "marketCap": q.get("market_cap"),
            "percentChange1h": q.get("percent_change_1h"), "percentChange24h": q.get("percent_change_24h"),
            "percentChange7d": q.get("percent_change_7d"), "percentChange30d": q.get("percent_change_30d"),
            "lastUpdated": q.get("last_updated"),
            "fullyDilluttedMarketCap": q.get("fully_diluted_market_cap"),  # sic, as on the site
            "dominance": q.get("market_cap_dominance"), "turnover": None,
        })
    return {
        "id": item.get("id"), "name": item.get("name"), "symbol": item.get("symbol"),
        "slug": item.get("slug"),
        "cmcRank": item.get("cmc_rank"), "marketPairCount": item.get("num_market_pairs"),
        "circulatingSupply": item.get("circulating_supply"), "selfReportedCirculatingSupply": 0,
        "totalSupply": item.get("total_supply"), "maxSupply": item.get("max_supply"),
        "isActive": 1, "lastUpdated": item.get("last_updated"), "dateAdded": item.get("date_added"),
        "quotes": quotes, "isAudited": False, "auditInfoList": [], "badges": [1],
        "tags": list(item.get("tags") or [])[:5],
    }


def _cmc_change(q: dict[str, Any], key: str, lang: str) -> str:
    value = _num(q, key)
    shown = escape(_shown(q, key, lambda v: percent(v, 2, lang) if v is not None else "--"))
    if value is None:
        return f'<span class="{_h(0)} kOpHxi">{shown}</span>'
    cls = "sc-a59753b0-0 ivvJzO" if value >= 0 else "sc-a59753b0-0 cmnujh"
    icon = "icon-Caret-up" if value >= 0 else "icon-Caret-down"
    return f'<span class="{cls}" style="font-size:14px"><span class="{icon}"></span>{shown}</span>'


def _cmc_name_cell(item: dict[str, Any], lang: str) -> tuple[str, str]:
    slug = str(item.get("slug") or "")
    prefix = "" if lang == "en" else f"/{lang}"
    return f"{prefix}/currencies/{slug}/", slug


def _cmc_row(item: dict[str, Any], lang: str) -> str:
    href, slug = _cmc_name_cell(item, lang)
    cid = item.get("id")
    name = escape(str(item.get("name") or ""))
    symbol = str(item.get("symbol") or "")
    currency, q = _cmc_quote(item)
    rank = item.get("cmc_rank")
    volume = _num(q, "volume_24h")
    price = _num(q, "price")
    coins_traded = volume / price if volume is not None and price else None
    supply = _num(item, "circulating_supply")
    max_supply = _num(item, "max_supply")
    share = f"{min(100, round(100 * supply / max_supply))}%" if supply and max_supply else "0%"
    cells = [
        f'<td><span class="{_h(1)} icon-Star" role="button" aria-label="Add to watchlist"></span></td>',
        f'<td style="text-align:start"><p class="{_h(2)} fJsaJU" color="text2" font-size="0">'
        f'{escape(str(rank)) if rank is not None else ""}</p></td>',
        f'<td style="text-align:start"><div class="{_h(3)} dJtqvO" display="flex">'
        f'<a href="{_attr(href)}" class="cmc-link"><div class="{_h(4)} gSbZEj">'
        f'<img class="coin-logo" src="https://s2.coinmarketcap.com/static/img/coins/64x64/{_attr(cid)}.png" '
        f'loading="lazy" decoding="async" fetchpriority="low" alt="{name} logo">'
        f'<div class="{_h(5)} kZmLVm"><p class="{_h(6)} coin-item-name" font-weight="semibold" color="text" '
        f'font-size="1">{name}</p><div class="{_h(7)} bvlZaK"><p class="{_h(6)} coin-item-symbol" '
        f'color="text3" font-size="1">{escape(symbol)}</p></div></div></div></a></div></td>',
        f'<td style="text-align:end"><div class="{_h(8)} fCzAyk"><span>'
        f'{escape(_shown(q, "price", lambda v: cmc_price(v, lang, currency)))}</span></div></td>',
        f'<td style="text-align:end">{_cmc_change(q, "percent_change_1h", lang)}</td>',
        f'<td style="text-align:end">{_cmc_change(q, "percent_change_24h", lang)}</td>',
        f'<td style="text-align:end">{_cmc_change(q, "percent_change_7d", lang)}</td>',
        f'<td style="text-align:end"><p class="{_h(9)} hUmgCF" color="text" font-size="1">'
        f'<span class="{_h(10)} ieFnWP" data-nosnippet="true">'
        f'{escape(_shown(q, "market_cap", lambda v: cmc_compact(v, lang, currency)))}</span>'
        f'<span class="{_h(10)} kRPDpw" data-nosnippet="true">'
        f'{escape(_shown(q, "market_cap", lambda v: cmc_amount(v, lang, currency)))}</span></p></td>',
        f'<td style="text-align:end"><div class="{_h(11)} hKeXhG"><a href="{_attr(href)}#markets" '
        f'class="cmc-link"><p class="{_h(2)} font_weight_500" color="text" font-size="1" '
        f'data-nosnippet="true">'
        f'{escape(_shown(q, "volume_24h", lambda v: cmc_amount(v, lang, currency)))}</p></a>'
        f'<div data-nosnippet="true"><p class="{_h(2)} fzHqUE" '
        f'color="text3" font-size="0">{escape(cmc_count(coins_traded, symbol, lang))}</p></div></div></td>',
        f'<td style="text-align:end"><div class="{_h(12)} kHWeFS"><div class="{_h(13)} cTVRyc">'
        f'<p class="{_h(2)} hhmVNu" color="text" font-size="1" data-nosnippet="true">'
        f'{escape(cmc_count(supply, symbol, lang))}</p></div>'
        f'<div class="{_h(14)} progress-bar"><div class="{_h(15)}" style="width:{share}"></div></div>'
        f'</div></td>',
        f'<td style="text-align:end"><a href="{_attr(href)}?period=7d" class="cmc-link">'
        f'<img src="https://s3.coinmarketcap.com/generated/sparklines/web/7d/2781/{_attr(cid)}.svg" '
        f'alt="{_attr(slug)}-7d-price-graph" class="{_h(16)} isUp" loading="lazy"></a></td>',
        f'<td style="text-align:end"><div class="{_h(17)} eCJQpr"><button class="{_h(18)} dDuvCS" '
        f'type="button" aria-label="more"><span class="icon-More-Vertical"></span></button></div></td>',
    ]
    return f'<tr style="cursor:pointer">\n{chr(10).join(cells)}\n</tr>'


def _cmc_lazy_row(item: dict[str, Any], lang: str) -> str:
    """Rows past the tenth: the browser fills them in; the server sends name, symbol and price only."""
    href, _ = _cmc_name_cell(item, lang)
    currency, q = _cmc_quote(item)
    rank = item.get("cmc_rank")
    return (
        f'<tr class="{_h(19)} bXSHqn"><td><span class="{_h(1)} icon-Star"></span></td>'
        f'<td>{escape(str(rank)) if rank is not None else ""}</td>'
        f'<td><a href="{_attr(href)}" class="cmc-link"><span class="circle"></span>'
        f'<span>{escape(str(item.get("name") or ""))}</span><span class="crypto-symbol">'
        f'{escape(str(item.get("symbol") or ""))}</span></a></td>'
        f'<td><span>{escape(_shown(q, "price", lambda v: cmc_price(v, lang, currency)))}</span></td>'
        f'<td colspan="8"></td></tr>'
    )


def _script_json(doc: Any) -> str:
    # As Next.js does: no "<" in the script text, so "</script>" cannot end it early.
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render_coinmarketcap_html(items: list[dict[str, Any]], lang: str = "en") -> str:
    """A coinmarketcap.com coin list page (``/?page=N`` or ``/fr/?page=N``) showing ``items``.

    ``items``: the coins of this page in ``/v1/cryptocurrency/listings/latest`` shape (``quote: {CUR:
    {...}}``). All of them go into ``__NEXT_DATA__`` (``props.pageProps.initialState``, a JSON string,
    ``cryptocurrency.listingLatest.data.cryptoCurrencyList``); the first ten are rendered as full table
    rows and the rest as placeholder rows, as on the real site.
    """
    if lang not in _CMC_TEXT:
        raise ValueError(f"lang must be 'en' or 'fr', got {lang!r}")
    text = _CMC_TEXT[lang]
    ranks = [r for r in (item.get("cmc_rank") for item in items) if isinstance(r, int)]
    page = (min(ranks) - 1) // ROWS_PER_PAGE + 1 if ranks else 1
    initial_state = {
        "app": {"locale": lang, "theme": "DAY", "lang": lang, "country": "", "currency": {"id": 2781}},
        "cryptocurrency": {
            "listingLatest": {
                "page": page, "sort": "rank", "sortDirection": "asc",
                "data": {"cryptoCurrencyList": [cmc_list_item(i) for i in items],
                         "totalCount": str(max(ranks or [0]))},
            },
            "quoteLatest": {}, "map": {"data": []},
        },
        "globalMetrics": {"numCryptocurrencies": 9876, "numMarkets": 41234, "btcDominance": 54.1},
    }
    next_data = {
        "props": {
            "pageProps": {
                "initialState": json.dumps(initial_state, separators=(",", ":")),
                "isHomePage": True, "pageSize": ROWS_PER_PAGE, "noindex": page > 1,
            },
            "__N_SSP": True,
        },
        "page": "/", "query": {"page": str(page)}, "buildId": "kx8bzPLs4AyyBDuZk2A5q",
        "isFallback": False, "gssp": True, "locale": lang, "locales": ["en", "fr", "de", "es"],
        "defaultLocale": "en", "scriptLoader": [],
    }
    heads = []
    for i, label in enumerate(_CMC_HEADERS[lang]):
        align = "start" if i in (1, 2) else "end"
        info = f'<span class="{_h(21)} info-icon"><svg width="12" height="12"></svg></span>' if i == 7 else ""
        heads.append(f'<th class="{_h(20)} stickyTop" style="text-align:{align}"><div class="{_h(22)} '
                     f'cgLoAt"><p class="{_h(2)} hhjEnB" color="text" font-size="0">{escape(label)}</p>'
                     f'{info}</div></th>')
    rows = [_cmc_row(item, lang) if i < CMC_SERVER_ROWS else _cmc_lazy_row(item, lang)
            for i, item in enumerate(items)]
    home = "/" if lang == "en" else f"/{lang}/"
    return f"""<!DOCTYPE html><html lang="{lang}" dir="ltr"><head><meta charSet="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1, maximum-scale=1"/>
<title>{escape(text["title"])}</title>
<meta name="description" content="CoinMarketCap"/>
<link rel="canonical" href="https://coinmarketcap.com{home}?page={page}"/>
<link rel="preload" as="font"
 href="https://s2.coinmarketcap.com/static/cloud/fonts/inter/Inter-Regular.woff2"/>
<script src="/_next/static/chunks/webpack-4e1a3b2c9d8f7e6a.js" defer=""></script>
<script src="/_next/static/chunks/main-2bd4c0a9f1e3d5b7.js" defer=""></script>
</head><body><div id="__next"><div class="{_h(23)} bKLdQG"><header class="{_h(24)} gFcKEZ">
<nav class="{_h(25)} jRzLpB"><a href="{home}" class="cmc-link">CoinMarketCap</a>
<a href="{home}exchanges/" class="cmc-link">Exchanges</a>
<a href="{home}community/" class="cmc-link">Community</a>
<a href="{home}products/" class="cmc-link">Products</a></nav></header>
<div class="cmc-body-wrapper"><div class="grid full-width-layout"><div class="{_h(26)} cKTJAh">
<h1 class="{_h(27)} kEcQOV">{escape(text["h1"])}</h1>
<div class="{_h(28)} cLkjre"><table class="{_h(29)}-3 hxdBbW cmc-table  "><thead><tr>
{chr(10).join(heads)}
</tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></div>
<div class="{_h(30)} iWMxYa"><ul class="pagination"><li class="previous">
<a href="{home}?page={max(1, page - 1)}" class="chevron">&lt;</a></li>
<li class="page active"><a href="{home}?page={page}">{page}</a></li>
<li class="next"><a href="{home}?page={page + 1}" class="chevron">&gt;</a></li></ul></div>
</div></div></div><footer class="{_h(31)} hQxblH"><p>© 2025 CoinMarketCap. All rights reserved</p></footer>
</div></div>
<script id="__NEXT_DATA__" type="application/json">{_script_json(next_data)}</script>
</body></html>
"""
