"""coingecko.com coin list pages: saved pages (tests/fixtures/html) -> quotes, rejections, loud errors."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptoviz.config import Settings
from cryptoviz.errors import (
    LayoutChangedError,
    ParseError,
    SourceError,
    TerminalSourceError,
    TransientSourceError,
)
from cryptoviz.models import ParseResult, Rejection, SourceQuote
from cryptoviz.simulator.pages import render_coingecko_html
from cryptoviz.sources.coingecko_html import (
    CoinGeckoHtmlSource,
    coin_row_count,
    page_url,
    parse_page,
)
from cryptoviz.sources.html import BROWSER_HEADERS, PAGE_RATE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "html"
COLLECTED = datetime(2024, 6, 1, 12, 0, 5, tzinfo=UTC)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("html_fixture_generator", FIXTURES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(name: str, currency: str = "usd") -> ParseResult:
    return parse_page(read(name), COLLECTED, currency)


def by_slug(result: ParseResult) -> dict[str, SourceQuote]:
    return {q.slug or "": q for q in result.quotes}


def test_committed_fixtures_match_the_generator() -> None:
    """Regenerate with: .venv/bin/python tests/fixtures/html/generate.py"""
    pages = _generator().all_pages()
    for name, text in pages.items():
        assert (FIXTURES / name).read_text(encoding="utf-8") == text, f"{name} is stale: regenerate it"
    committed = {p.name for p in FIXTURES.glob("*.html")}
    assert committed == set(pages), "fixtures without a generator entry (or the reverse)"


# --- the clean page ------------------------------------------------------------------------------------

BITCOIN = SourceQuote(
    source="coingecko-html", source_id="bitcoin", symbol="BTC", name="Bitcoin", slug="bitcoin", rank=1,
    price=67187.34, market_cap=1323456789012.0, volume_24h=29317843051.0, change_1h=0.1, change_24h=-1.6,
    change_7d=3.2, circulating_supply=None, total_supply=None, max_supply=None, last_updated=None,
    collected_at=COLLECTED, currency="usd",
)


def test_english_page_reads_every_row_with_exact_values() -> None:
    result = parse("coingecko-en-page1.html")
    assert (result.strategy, result.strategies_tried) == ("table", ())
    assert result.rejected == []
    assert len(result.quotes) == 100  # the advertisement row is not a coin and not a rejection
    assert [q.rank for q in result.quotes[:12]] == list(range(1, 13))
    coins = by_slug(result)
    assert coins["bitcoin"] == BITCOIN
    eth = coins["ethereum"]
    assert (eth.source_id, eth.symbol, eth.name, eth.rank) == ("ethereum", "ETH", "Ethereum", 2)
    assert (eth.price, eth.market_cap, eth.volume_24h) == (3456.79, 415234567890.0, 15234567891.0)
    assert (eth.change_1h, eth.change_24h, eth.change_7d) == (0.0, 2.3, -4.6)
    assert str(eth.change_1h) == "0.0"  # "0.0%" under a down caret is not -0.0
    ton = coins["the-open-network"]
    assert (ton.source_id, ton.symbol, ton.name, ton.price) == ("the-open-network", "TON", "Toncoin", 6.98)
    shib = coins["shiba-inu"]
    assert (shib.price, shib.change_24h, shib.change_7d) == (0.00002345, -2.2, 6.6)  # "$0.0₄2345"
    pepe = coins["pepe"]
    assert (pepe.price, pepe.market_cap, pepe.volume_24h) == (0.000001234, 519123456.0, 123456789.0)
    assert (pepe.change_1h, pepe.change_24h, pepe.change_7d) == (1.9, 11.4, -23.4)  # 1.95 is 1.9499...
    fresh = coins["fresh-listing"]  # no rank, market cap, volume, 1h or 7d: printed "-"
    assert (fresh.rank, fresh.price, fresh.market_cap, fresh.volume_24h) == (None, 0.0345, None, None)
    assert (fresh.change_1h, fresh.change_24h, fresh.change_7d) == (None, 5.5, None)
    last = result.quotes[-1]
    assert (last.slug, last.symbol, last.name, last.rank) == ("synthetic-coin-100", "SYN100",
                                                              "Synthetic Coin 100", 100)


def test_french_page_in_euros_gives_the_same_values() -> None:
    french = parse("coingecko-fr-page1.html", currency="eur")  # "67 187,34 €", "1,6 %", "Cours"...
    english = parse("coingecko-en-page1.html")
    assert french.rejected == []
    assert len(french.quotes) == 30
    assert french.quotes == [replace(q, currency="eur") for q in english.quotes[:30]]
    assert by_slug(french)["bitcoin"] == replace(BITCOIN, currency="eur")


@pytest.mark.parametrize("name", [
    "coingecko-en-renamed-classes.html",  # a new build: every utility class renamed
    "coingecko-en-no-table-marker.html",  # data-coin-table-target gone: found by its header
    "coingecko-en-no-header.html",  # no thead: columns by position
])
def test_layout_drift_still_reads_the_same_values(name: str) -> None:
    result = parse(name)
    assert result.rejected == []
    assert result.quotes == parse("coingecko-en-page1.html").quotes[:20]


def test_lazy_rows_and_skeletons_are_skipped_silently() -> None:
    result = parse("coingecko-en-lazy-rows.html")
    assert result.rejected == []
    assert [q.rank for q in result.quotes] == list(range(1, 13)) + [None] + list(range(14, 21))


def test_broken_rows_are_rejected_with_reasons_and_the_rest_kept() -> None:
    result = parse("coingecko-en-broken-rows.html")
    assert result.rejected == [
        Rejection("coingecko-html", "tether", "row", "missing_cell", "expected 13 cells, found 12"),
        Rejection("coingecko-html", "binancecoin", "price", "unparseable",
                  "cannot read number '$59O.12': not a number as the pages print them"),
        Rejection("coingecko-html", "solana", "change_24h", "unparseable",
                  "cannot read number 'n/a%x': not a number as the pages print them"),
        Rejection("coingecko-html", "usd-coin", "symbol", "missing", "the coin link shows no symbol"),
    ]
    coins = by_slug(result)
    assert len(coins) == 16
    assert coins["bitcoin"] == BITCOIN
    assert coins["ripple"].price == 0.5234
    assert coins["ripple"].change_24h == -0.8  # "0.8%" under a down caret
    assert not {"tether", "binancecoin", "solana", "usd-coin"} & coins.keys()


def test_broken_items_from_the_simulator_are_shown_as_broken_cells() -> None:
    items = _generator().coingecko_items(3)
    items[1] = dict(items[1], current_price="n/a")
    items[2] = dict(items[2], market_cap="12 apples")
    result = parse_page(render_coingecko_html(items, 1).encode(), COLLECTED, "usd")
    assert [q.slug for q in result.quotes] == ["bitcoin", "ethereum"]
    assert result.quotes[1].price is None  # "n/a": no value; the validator rejects a quote without price
    assert result.rejected == [Rejection("coingecko-html", "tether", "market_cap", "unparseable",
                                         "cannot read number '12 apples': not a number as the pages print them")]


def test_the_table_with_the_most_coin_rows_is_read_not_a_header_only_copy() -> None:
    body = read("coingecko-en-page1.html").decode()
    table = re.search(r'<table[^>]*data-coin-table-target="table"[^>]*>\s*<thead[^>]*>.*?</thead>', body, re.DOTALL)
    assert table is not None
    copy = table.group() + "<tbody></tbody></table>"
    damaged = body.replace(table.group(), copy + copy + table.group(), 1)
    assert damaged.count('data-coin-table-target="table"') == 3
    result = parse_page(damaged.encode(), COLLECTED, "usd")
    assert result.quotes == parse("coingecko-en-page1.html").quotes
    assert coin_row_count(damaged.encode()) == 100


def _table_page(rows: str, lang: str = "en") -> bytes:
    return (f'<html lang="{lang}"><body><table><thead><tr><th>#</th><th>Coin</th><th>Price</th><th>24h</th>'
            f"<th>Market Cap</th></tr></thead><tbody>{rows}</tbody></table></body></html>").encode()


def _row(rank: int, slug: str, symbol: str, price: str, change: str, cap: str) -> str:
    return (f'<tr><td>{rank}</td><td><a href="/en/coins/{slug}">{slug.title()} <span>{symbol}</span></a></td>'
            f"<td>{price}</td><td>{change}</td><td>{cap}</td></tr>")


def test_numbers_in_the_browsers_format_are_read_in_the_format_they_show() -> None:
    rows = _row(1, "bitcoin", "BTC", "$7.299,98", "0,05%", "$144.812.372.117") + _row(
        2, "ethereum", "ETH", "$1.234", "-1,5%", "$148.291.339.001")
    result = parse_page(_table_page(rows), COLLECTED, "usd")  # <html lang="en">, printed the German way
    assert result.rejected == []
    assert [(q.price, q.change_24h, q.market_cap) for q in result.quotes] == [
        (7299.98, 0.05, 144812372117.0), (1234.0, -1.5, 148291339001.0)]


def test_a_number_the_page_does_not_settle_is_rejected_not_guessed() -> None:
    rows = _row(1, "bitcoin", "BTC", "$1.234", "1.5%", "$1,234") + _row(2, "ethereum", "ETH", "$2,5", "3,25%", "$12")
    result = parse_page(_table_page(rows), COLLECTED, "usd")  # "1.5%" says point, "3,25%" comma: unsettled
    assert [(r.coin, r.field, r.reason) for r in result.rejected] == [("bitcoin", "price", "ambiguous")]
    assert "'$1.234'" in result.rejected[0].detail and "do not tell which" in result.rejected[0].detail
    # A cell whose own shape tells its mark is read so.
    assert [(q.slug, q.price, q.change_24h, q.market_cap) for q in result.quotes] == [("ethereum", 2.5, 3.25, 12.0)]
    alone = parse_page(_table_page(_row(1, "bitcoin", "BTC", "$1.234", "-", "-")), COLLECTED, "usd")
    assert [(r.field, r.reason) for r in alone.rejected] == [("price", "ambiguous")]
    # A rank is whole: "1.234" groups thousands whatever the page says.
    rank = parse_page(_table_page(_row(1, "bitcoin", "BTC", "$5", "-", "-").replace("<td>1</td>", "<td>1.234</td>")),
                      COLLECTED, "usd")
    assert rank.quotes[0].rank == 1234


def test_a_link_that_is_the_symbol_gives_the_symbol_not_the_name() -> None:
    cell = ('<a class="coin-symbol" href="/en/coins/bitcoin">BTC</a> <a href="/en/coins/bitcoin">Bitcoin</a>')
    rows = (f"<tr><td>1</td><td>{cell}</td><td>$5.00</td><td>1.0%</td><td>$10</td></tr>"
            '<tr><td>2</td><td><a href="/en/coins/ethereum">ETH</a><a href="/en/coins/ethereum">Ethereum</a></td>'
            "<td>$4.00</td><td>1.0%</td><td>$10</td></tr>")
    result = parse_page(_table_page(rows), COLLECTED, "usd")
    assert result.rejected == []
    assert [(q.name, q.symbol) for q in result.quotes] == [("Bitcoin", "BTC"), ("Ethereum", "ETH")]


def test_sub_element_zero_counts_are_read() -> None:
    body = read("coingecko-en-page1.html").decode().replace("$0.0₅1234", "$0.0<sub>5</sub>1234")
    assert "<sub>5</sub>" in body
    assert by_slug(parse_page(body.encode(), COLLECTED, "usd"))["pepe"].price == 0.000001234


# --- loud failures ---------------------------------------------------------------------------------------


def test_cloudflare_challenge_is_transient_and_named() -> None:
    with pytest.raises(TransientSourceError) as info:
        parse("coingecko-challenge.html")
    assert str(info.value) == ('coingecko-html: blocked by Cloudflare ("Just a moment..." challenge page) '
                               "- retry later, at a lower rate")
    assert info.value.source == "coingecko-html"


def test_cloudflare_access_denied_is_transient_and_named() -> None:
    with pytest.raises(TransientSourceError, match=r'Cloudflare \("Access denied" page\)'):
        parse("coingecko-access-denied.html")


def test_missing_table_is_a_layout_error_naming_the_strategies_tried() -> None:
    with pytest.raises(LayoutChangedError) as info:
        parse("coingecko-en-no-table.html")
    assert str(info.value) == (
        "coingecko-html: coin table not found - page layout changed? (tried: table, table:attributes). "
        "Update CryptoViz, or use the API source instead (coingecko); attach the page kept under "
        "data/failed-pages/ to a bug report")
    assert info.value.strategies_tried == ("table", "table:attributes")
    assert isinstance(info.value, TerminalSourceError)


def test_a_table_without_coin_rows_is_an_error_not_an_empty_success() -> None:
    with pytest.raises(TerminalSourceError, match="coin table has no coin rows"):
        parse("coingecko-en-empty-table.html")
    assert coin_row_count(read("coingecko-en-empty-table.html")) == 0
    assert coin_row_count(read("coingecko-en-lazy-rows.html")) == 20


@pytest.mark.parametrize("body", [b"", b"   ", b'{"status": {"error_code": 429}}', b"<html></html>",
                                  b"<?xml version='1.0'?><error>nope</error>"])
def test_bodies_that_are_not_the_page_are_terminal(body: bytes) -> None:
    with pytest.raises(TerminalSourceError, match="coin table not found"):
        parse_page(body, COLLECTED, "usd")


def test_a_page_in_another_currency_is_refused() -> None:
    with pytest.raises(TerminalSourceError, match=r"shows price in USD but EUR was asked for"):
        parse("coingecko-en-page1.html", currency="eur")
    with pytest.raises(TerminalSourceError, match=r"shows price in EUR but USD was asked for"):
        parse("coingecko-fr-page1.html", currency="usd")


def test_an_unsupported_page_language_is_refused() -> None:
    body = read("coingecko-en-page1.html").replace(b'<html lang="en"', b'<html lang="de"', 1)
    with pytest.raises(TerminalSourceError, match="page language 'de' is not read"):
        parse_page(body, COLLECTED, "usd")


def test_language_comes_from_links_when_html_has_no_lang() -> None:
    body = read("coingecko-fr-page1.html").replace(b'<html lang="fr"', b"<html", 1)
    assert by_slug(parse_page(body, COLLECTED, "eur"))["bitcoin"] == replace(BITCOIN, currency="eur")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_pages_fail_only_with_source_or_parse_errors(data: st.DataObject) -> None:
    body = read("coingecko-en-renamed-classes.html")
    cut = data.draw(st.integers(0, len(body)))
    junk = data.draw(st.binary(max_size=64))
    start = data.draw(st.integers(0, len(body)))
    damaged = body[:start] + junk + body[start:cut] if start <= cut else body[:cut]
    try:
        result = parse_page(damaged, COLLECTED, "usd")
    except (SourceError, ParseError):
        return
    assert all(q.price is None or q.price >= 0 for q in result.quotes)


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_fail_only_with_source_or_parse_errors(body: bytes) -> None:
    try:
        parse_page(body, COLLECTED, "usd")
    except (SourceError, ParseError):
        pass


# --- fetching -------------------------------------------------------------------------------------------


class FakeHttp:
    """Answers GETs like ``HttpClient``: url -> body, (status, body), or an exception; 404 for the rest."""

    def __init__(self, pages: dict[str, bytes | tuple[int, bytes] | SourceError]) -> None:
        self.pages = pages
        self.calls: list[tuple[str, str, dict[str, str] | None]] = []
        self.rates: dict[str, tuple[float, int]] = {}

    def set_rate_limit(self, source: str, rate_per_minute: float, burst: int = 1) -> None:
        self.rates[source] = (rate_per_minute, burst)

    def get(self, source: str, url: str, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> httpx.Response:
        self.calls.append((source, url, headers))
        answer = self.pages.get(url, (404, b"no such page\n"))
        if isinstance(answer, SourceError):
            raise answer
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return httpx.Response(status, content=body, request=httpx.Request("GET", url))


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, coingecko_html_base_url="http://sim/coingecko-www", **values)  # type: ignore[call-arg]


def _items(n: int) -> list[dict[str, Any]]:
    generated = _generator().coingecko_items(min(n, 100))
    out = list(generated)
    for i in range(len(out) + 1, n + 1):
        out.append(dict(generated[-1], id=f"extra-{i}", symbol=f"x{i}", name=f"Extra {i}", market_cap_rank=i))
    return out


def _page(items: list[dict[str, Any]], page: int) -> bytes:
    return render_coingecko_html(items[(page - 1) * 100: page * 100], page, "en").encode()


def test_page_url() -> None:
    assert page_url("https://www.coingecko.com", 2) == "https://www.coingecko.com/en?page=2"
    assert page_url("https://www.coingecko.com/", 1, "fr") == "https://www.coingecko.com/fr?page=1"


def test_fetch_asks_for_enough_pages_like_a_browser_and_parse_keeps_top_n() -> None:
    items = _items(300)
    http = FakeHttp({f"http://sim/coingecko-www/en?page={p}": _page(items, p) for p in (1, 2, 3)})
    clock = iter([datetime(2024, 6, 1, 12, 0, s, tzinfo=UTC) for s in range(3)])
    source = CoinGeckoHtmlSource(_settings(top_n=250), http, clock=lambda: next(clock))
    pages = source.fetch()
    assert [c[1] for c in http.calls] == [f"http://sim/coingecko-www/en?page={p}" for p in (1, 2, 3)]
    headers = http.calls[0][2]
    assert headers is not None
    assert re.search(r"Chrome/\d+", headers["User-Agent"]) and "Windows NT" in headers["User-Agent"]
    assert headers["Accept-Language"].startswith("en-US")
    assert headers == BROWSER_HEADERS
    assert http.rates == {"coingecko-html": PAGE_RATE}  # pages are paced by the source's own limit
    assert [(p.source, p.extension, p.url, p.fetched_at.second) for p in pages] == [
        ("coingecko-html", "html", f"http://sim/coingecko-www/en?page={n}", n - 1) for n in (1, 2, 3)]
    assert source.name == "coingecko-html"
    ranks = [q.rank for page in pages for q in source.parse(page).quotes]
    # page 3 holds ranks 201-300; 251-300 are dropped. The coin without a rank is kept.
    assert len(ranks) == 250
    assert ranks[-1] == 250
    assert ranks.count(None) == 1


def test_fetch_all_stops_at_the_first_page_without_coins() -> None:
    items = _items(150)
    http = FakeHttp({f"http://sim/coingecko-www/en?page={p}": _page(items, p) for p in (1, 2, 3)})
    pages = CoinGeckoHtmlSource(_settings(top_n="all"), http).fetch()
    assert len(pages) == 2
    assert len(http.calls) == 3


def test_fetch_all_stops_at_a_404() -> None:
    items = _items(200)
    http = FakeHttp({f"http://sim/coingecko-www/en?page={p}": _page(items, p) for p in (1, 2)})
    assert len(CoinGeckoHtmlSource(_settings(top_n="all"), http).fetch()) == 2


def test_fetch_fails_when_the_first_page_fails() -> None:
    http = FakeHttp({"http://sim/coingecko-www/en?page=1": TransientSourceError("coingecko-html", "HTTP 503",
                                                                                 status=503)})
    with pytest.raises(TransientSourceError, match="HTTP 503"):
        CoinGeckoHtmlSource(_settings(top_n=100), http).fetch()


def test_fetch_keeps_earlier_pages_when_a_later_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    items = _items(300)
    http = FakeHttp({
        "http://sim/coingecko-www/en?page=1": _page(items, 1),
        "http://sim/coingecko-www/en?page=2": TransientSourceError("coingecko-html", "HTTP 429", status=429),
        "http://sim/coingecko-www/en?page=3": _page(items, 3),
    })
    pages = CoinGeckoHtmlSource(_settings(top_n=300), http).fetch()
    assert [p.url for p in pages] == ["http://sim/coingecko-www/en?page=1"]
    assert "page 2 failed" in caplog.text


def test_fetch_stops_quietly_when_the_site_has_fewer_pages() -> None:
    items = _items(150)
    http = FakeHttp({f"http://sim/coingecko-www/en?page={p}": _page(items, p) for p in (1, 2)})
    assert len(CoinGeckoHtmlSource(_settings(top_n=500), http).fetch()) == 2


def test_fetch_refuses_a_404_first_page() -> None:
    with pytest.raises(TerminalSourceError, match=r"en\?page=1 answered HTTP 404 - check the base URL"):
        CoinGeckoHtmlSource(_settings(top_n=100), FakeHttp({})).fetch()


@pytest.mark.parametrize("name", ["coingecko-challenge.html", "coingecko-access-denied.html"])
def test_fetch_names_cloudflare_on_a_403(name: str) -> None:
    http = FakeHttp({"http://sim/coingecko-www/en?page=1": (403, read(name))})
    with pytest.raises(TransientSourceError, match=r"blocked by Cloudflare .*\(HTTP 403\)") as info:
        CoinGeckoHtmlSource(_settings(top_n=100), http).fetch()
    assert info.value.status == 403


def test_fetch_all_fails_loudly_on_a_cloudflare_first_page() -> None:
    http = FakeHttp({"http://sim/coingecko-www/en?page=1": read("coingecko-challenge.html")})
    with pytest.raises(TransientSourceError, match="Cloudflare"):
        CoinGeckoHtmlSource(_settings(top_n="all"), http).fetch()


def test_french_pages_can_be_fetched() -> None:
    items = _items(100)
    http = FakeHttp({"http://sim/coingecko-www/fr?page=1": render_coingecko_html(items, 1, "fr").encode()})
    source = CoinGeckoHtmlSource(_settings(top_n=100, vs_currency="eur"), http, lang="fr")
    pages = source.fetch()
    assert by_slug(source.parse(pages[0]))["bitcoin"].price == 67187.34
