"""coinmarketcap.com coin list pages: __NEXT_DATA__ list, table fallback, rejections, loud errors."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
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
from cryptoviz.simulator.pages import cmc_list_item, render_coinmarketcap_html
from cryptoviz.sources.coinmarketcap_html import (
    CoinMarketCapHtmlSource,
    coin_row_count,
    find_coin_lists,
    item_layout,
    keyed_rows,
    page_url,
    parse_page,
)
from cryptoviz.sources.html import PAGE_RATE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "html"
COLLECTED = datetime(2024, 6, 1, 12, 0, 5, tzinfo=UTC)
UPDATED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(name: str, currency: str = "usd") -> ParseResult:
    return parse_page(read(name), COLLECTED, currency)


def by_slug(result: ParseResult) -> dict[str, SourceQuote]:
    return {q.slug or "": q for q in result.quotes}


# --- the __NEXT_DATA__ list ----------------------------------------------------------------------------

BITCOIN = SourceQuote(
    source="coinmarketcap-html", source_id="1", symbol="BTC", name="Bitcoin", slug="bitcoin", rank=1,
    price=67187.3412, market_cap=1323456789012.0, volume_24h=29317843051.27, change_1h=0.1234,
    change_24h=-1.5678, change_7d=3.2109, circulating_supply=19696875.0, total_supply=19696875.0,
    max_supply=21000000.0, last_updated=UPDATED, collected_at=COLLECTED, currency="usd",
)

# What the ten server-rendered rows show: rounded prices and changes, no total/max supply, no time.
BITCOIN_ROW = SourceQuote(
    source="coinmarketcap-html", source_id="1", symbol="BTC", name="Bitcoin", slug="bitcoin", rank=1,
    price=67187.34, market_cap=1323456789012.0, volume_24h=29317843051.0, change_1h=0.12,
    change_24h=-1.57, change_7d=3.21, circulating_supply=19696875.0, total_supply=None,
    max_supply=None, last_updated=None, collected_at=COLLECTED, currency="usd",
)


def test_next_data_list_gives_all_coins_with_exact_values() -> None:
    result = parse("coinmarketcap-en-page1.html")
    assert (result.strategy, result.strategies_tried) == ("next-data:cryptoCurrencyList", ())
    assert result.rejected == []
    assert len(result.quotes) == 100  # the whole page, not only the ten rendered rows
    assert [q.rank for q in result.quotes] == list(range(1, 101))
    coins = by_slug(result)
    assert coins["bitcoin"] == BITCOIN
    bnb = coins["bnb"]
    assert (bnb.source_id, bnb.symbol, bnb.name, bnb.price, bnb.max_supply) == ("1839", "BNB", "BNB", 598.12,
                                                                                 200000000.0)
    pepe = coins["pepe"]
    assert (pepe.source_id, pepe.price, pepe.market_cap, pepe.change_7d) == ("24478", 0.000001234,
                                                                             519123456.0, -23.45)
    fresh = coins["fresh-listing"]
    assert (fresh.market_cap, fresh.volume_24h, fresh.change_1h, fresh.circulating_supply) == (None,) * 4
    assert (fresh.rank, fresh.total_supply) == (13, 1000000000.0)


def test_french_page_json_is_locale_free() -> None:
    result = parse("coinmarketcap-fr-page1.html", currency="eur")
    assert len(result.quotes) == 30
    english = parse("coinmarketcap-en-page1.html").quotes[:30]
    assert result.quotes == [replace(q, currency="eur") for q in english]


def test_list_directly_in_page_props_and_longest_list_wins() -> None:
    result = parse("coinmarketcap-en-list-in-page-props.html")
    assert len(result.quotes) == 15  # not the two-coin "trending" list beside it
    assert by_slug(result)["bitcoin"] == BITCOIN


def test_find_coin_lists_searches_json_strings() -> None:
    inner = json.dumps({"a": {"cryptoCurrencyList": [{"id": 1}]}})
    doc = {"props": {"pageProps": {"initialState": inner, "other": "cryptoCurrencyList{not json"}}}
    assert find_coin_lists(doc) == [[{"id": 1}]]
    assert find_coin_lists({"x": [1, "2", None]}) == []
    deep: Any = []
    for _ in range(200):
        deep = [deep]
    assert find_coin_lists({"cryptoCurrencyList": deep}) == [deep]
    assert find_coin_lists(json.dumps(deep)) == []


def _page_with_state(state: Any, *, as_string: bool) -> bytes:
    doc = {"props": {"initialState": json.dumps(state) if as_string else state}, "page": "/"}
    return (f'<html lang="en"><body><script id="__NEXT_DATA__" type="application/json">{json.dumps(doc)}'
            "</script></body></html>").encode()


CAMEL_ITEM = {"id": 1, "name": "Bitcoin", "symbol": "BTC", "slug": "bitcoin", "cmcRank": 1,
              "circulatingSupply": 18500000, "totalSupply": 18500000, "maxSupply": 21000000,
              "lastUpdated": "2020-11-01T10:00:00.000Z",
              "quote": {"USD": {"price": 13700.25, "volume24h": 2.1e10, "marketCap": 2.5e11,
                                "percentChange1h": 0.1, "percentChange24h": -0.5, "percentChange7d": 4.2,
                                "lastUpdated": "2020-11-01T10:00:00.000Z"}}}


@pytest.mark.parametrize("as_string", [False, True])
def test_listing_latest_items_in_camel_case_with_keyed_quotes(as_string: bool) -> None:
    state = {"cryptocurrency": {"listingLatest": {"page": 1, "data": [CAMEL_ITEM, dict(CAMEL_ITEM, id=True)]}}}
    result = parse_page(_page_with_state(state, as_string=as_string), COLLECTED, "usd")
    assert (result.strategy, result.strategies_tried) == ("next-data:listingLatest", ("next-data:cryptoCurrencyList",))
    quote = result.quotes[0]
    assert (quote.source_id, quote.rank, quote.price, quote.market_cap, quote.change_24h) == ("1", 1, 13700.25,
                                                                                            2.5e11, -0.5)
    assert (quote.circulating_supply, quote.max_supply) == (18500000.0, 21000000.0)
    assert result.rejected == [Rejection("coinmarketcap-html", "bitcoin", "id", "not_an_integer", "got bool True")]
    gbp = parse_page(_page_with_state(state, as_string=as_string), COLLECTED, "gbp").rejected[0]
    assert (gbp.field, gbp.reason) == ("quote.GBP", "missing_field")


def test_keys_arr_rows_become_items() -> None:
    keys = ["id", "name", "symbol", "slug", "cmcRank", "quote.USD.price", "quote.USD.percentChange24h", 7, ""]
    data = [{"keysArr": keys, "excludeProps": ["tags"]}, [5, "Five", "FIV", "five", 9, 0.5, -1.0, "x", "y"],
            [6, "Six"], "not a row"]
    assert keyed_rows(data) == [
        {"id": 5, "name": "Five", "symbol": "FIV", "slug": "five", "cmcRank": 9,
         "quote": {"USD": {"price": 0.5, "percentChange24h": -1.0}}},
        {"id": 6, "name": "Six"}, "not a row"]
    state = {"cryptocurrency": {"listingLatest": {"data": data}}}
    result = parse_page(_page_with_state(state, as_string=True), COLLECTED, "usd")
    assert result.strategy == "next-data:keysArr"
    assert [(q.symbol, q.rank, q.price, q.change_24h) for q in result.quotes] == [("FIV", 9, 0.5, -1.0)]
    assert [(r.coin, r.field, r.reason) for r in result.rejected] == [
        ("6", "quote", "missing_field"), ("item 2", "item", "not_an_object")]
    assert keyed_rows([{"keysArr": "not a list"}, [1]]) == [[1]]


def test_an_empty_listing_is_a_page_past_the_last_one() -> None:
    state = {"cryptocurrency": {"listingLatest": {"data": []}}}
    body = _page_with_state(state, as_string=False)
    assert coin_row_count(body) == 0
    with pytest.raises(TerminalSourceError, match="coin list has no coins"):
        parse_page(body, COLLECTED, "usd")


def test_item_layout_follows_the_names_the_items_use() -> None:
    snake = item_layout([{"cmc_rank": 1, "quote": {}}])
    assert (snake.rank, snake.price, snake.quotes, snake.source) == ("cmc_rank", "price", "quote",
                                                                     "coinmarketcap-html")
    assert item_layout([{"circulating_supply": 1, "rank": 4}]).rank == "rank"
    camel = item_layout(["junk", {"cmcRank": 1, "quotes": [{"name": "USD"}]}])
    assert (camel.rank, camel.market_cap, camel.quotes) == ("cmcRank", "marketCap", "quotes")
    assert item_layout([]).quotes == "quote"


def test_broken_items_are_rejected_with_reasons() -> None:
    result = parse("coinmarketcap-en-broken-items.html")
    assert result.rejected == [  # the reasons of the API parsers
        Rejection("coinmarketcap-html", "tether", "quotes.USD", "missing_field", "no USD quote (found: EUR)"),
        Rejection("coinmarketcap-html", "bnb", "quotes.USD.price", "not_a_number", "got str '598.12'"),
        Rejection("coinmarketcap-html", "item 4", "item", "not_an_object", "got str"),
        Rejection("coinmarketcap-html", "solana", "id", "missing_field", ""),
        Rejection("coinmarketcap-html", "xrp", "cmcRank", "not_an_integer", "got str '7'"),
    ]
    coins = by_slug(result)
    assert len(coins) == 11
    assert coins["bitcoin"] == BITCOIN
    assert coins["ethereum"].price == 3456.789


def test_quote_of_the_asked_currency_is_used() -> None:
    items = [dict(cmc_list_item({"id": 1, "name": "Bitcoin", "symbol": "BTC", "slug": "bitcoin", "cmc_rank": 1,
                                 "quote": {"USD": {"price": 67000.5}, "EUR": {"price": 61000.25}}}))]
    # The list sits in initialState, a JSON string: splice it in quoted the same way.
    body = render_coinmarketcap_html([], "en")
    state_items = json.dumps(json.dumps(items))[1:-1]
    body = body.replace('\\"cryptoCurrencyList\\":[]', '\\"cryptoCurrencyList\\":' + state_items)
    assert parse_page(body.encode(), COLLECTED, "eur").quotes[0].price == 61000.25
    assert parse_page(body.encode(), COLLECTED, "USD").quotes[0].price == 67000.5
    rejected = parse_page(body.encode(), COLLECTED, "gbp").rejected
    assert rejected == [Rejection("coinmarketcap-html", "bitcoin", "quotes.GBP", "missing_field",
                                  "no GBP quote (found: USD, EUR)")]


# --- the table fallback ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "currency"), [
    ("coinmarketcap-en-no-next-data.html", "usd"),  # no data script: the ten rendered rows
    ("coinmarketcap-en-json-without-list.html", "usd"),  # data script without the list
    ("coinmarketcap-en-renamed-classes.html", "usd"),  # new hashes, no "cmc-table" class: found by header
    ("coinmarketcap-fr-no-next-data.html", "eur"),  # French numbers in the table: "67 187,34 €"
])
def test_table_fallback_reads_the_server_rendered_rows(name: str, currency: str) -> None:
    result = parse(name, currency)
    assert result.strategy == "table"
    assert result.strategies_tried == ("next-data:cryptoCurrencyList", "next-data:listingLatest", "next-data:keysArr")
    assert result.rejected == []
    assert len(result.quotes) == 10  # rows 11-15 are placeholders: skipped, not rejected
    assert [q.rank for q in result.quotes] == list(range(1, 11))
    coins = by_slug(result)
    assert coins["bitcoin"] == replace(BITCOIN_ROW, currency=currency)
    eth = coins["ethereum"]
    assert (eth.source_id, eth.symbol, eth.price, eth.market_cap, eth.volume_24h) == (
        "1027", "ETH", 3456.79, 415234567890.0, 15234567891.0)
    assert (eth.change_1h, eth.change_24h, eth.change_7d, eth.circulating_supply) == (-0.05, 2.35, -4.57,
                                                                                      120123457.0)
    usdc = coins["usd-coin"]
    assert (usdc.symbol, usdc.name, usdc.price, usdc.change_7d) == ("USDC", "USDC", 0.9998, -0.01)
    ton = coins["toncoin"]
    assert (ton.source_id, ton.price, ton.circulating_supply) == ("11419", 6.98, 2453000000.0)


def test_broken_table_rows_are_rejected_with_reasons() -> None:
    result = parse("coinmarketcap-en-broken-rows.html")
    assert result.rejected == [
        Rejection("coinmarketcap-html", "ethereum", "row", "missing_cell", "expected 12 cells, found 11"),
        Rejection("coinmarketcap-html", "solana", "price", "unparseable",
                  "cannot read number '$145..67': more than one decimal separator '.'"),
    ]
    assert len(result.quotes) == 8
    assert by_slug(result)["bitcoin"] == BITCOIN_ROW


# --- loud failures ---------------------------------------------------------------------------------------


def test_cloudflare_pages_are_transient_and_named() -> None:
    with pytest.raises(TransientSourceError) as info:
        parse("coinmarketcap-challenge.html")
    assert str(info.value) == ('coinmarketcap-html: blocked by Cloudflare ("Just a moment..." challenge page) '
                               "- retry later, at a lower rate")
    with pytest.raises(TransientSourceError, match=r'Cloudflare \("Access denied" page\)'):
        parse("coinmarketcap-access-denied.html")


def test_no_list_and_no_table_is_a_layout_error_naming_the_strategies_tried() -> None:
    with pytest.raises(LayoutChangedError) as info:
        parse("coinmarketcap-en-no-list-no-table.html")
    tried = ("next-data:cryptoCurrencyList", "next-data:listingLatest", "next-data:keysArr", "table",
             "table:attributes")
    assert str(info.value) == (
        f"coinmarketcap-html: coin list not found - page layout changed? (tried: {', '.join(tried)}). "
        "Update CryptoViz, or use the API source instead (coinmarketcap, with a free API key from "
        "coinmarketcap.com/api); attach the page kept under data/failed-pages/ to a bug report")
    assert info.value.strategies_tried == tried


def test_an_empty_list_is_an_error_not_an_empty_success() -> None:
    with pytest.raises(TerminalSourceError, match="coin list has no coins"):
        parse("coinmarketcap-en-empty-list.html")
    assert coin_row_count(read("coinmarketcap-en-empty-list.html")) == 0
    assert coin_row_count(read("coinmarketcap-en-page1.html")) == 100


def test_invalid_next_data_json_falls_back_to_the_table() -> None:
    body = read("coinmarketcap-en-page1.html").replace(b'<script id="__NEXT_DATA__" type="application/json">{',
                                                       b'<script id="__NEXT_DATA__" type="application/json">{{')
    result = parse_page(body, COLLECTED, "usd")
    assert len(result.quotes) == 10
    assert by_slug(result)["bitcoin"] == BITCOIN_ROW


@pytest.mark.parametrize("body", [b"", b"not html", b'{"data": []}', b"<html><body></body></html>"])
def test_bodies_that_are_not_the_page_are_terminal(body: bytes) -> None:
    with pytest.raises(TerminalSourceError, match="coin list not found"):
        parse_page(body, COLLECTED, "usd")


def test_broken_items_from_the_simulator() -> None:
    items = [dict(i) for i in _items(12)]
    items[0]["quote"] = {"USD": dict(items[0]["quote"]["USD"], price="n/a")}
    body = render_coinmarketcap_html(items).encode()
    rejected = parse_page(body, COLLECTED, "usd").rejected
    assert rejected == [Rejection("coinmarketcap-html", "coin-1", "quotes.USD.price", "not_a_number",
                                  "got str 'n/a'")]
    table = parse_page(body.replace(b"__NEXT_DATA__", b"__OTHER__"), COLLECTED, "usd")
    assert table.rejected == [] and table.quotes[0].price is None and len(table.quotes) == 10


def test_table_in_another_currency_is_refused() -> None:
    with pytest.raises(TerminalSourceError, match="USD but EUR was asked for"):
        parse("coinmarketcap-en-no-next-data.html", currency="eur")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_pages_fail_only_with_source_or_parse_errors(data: st.DataObject) -> None:
    body = read(data.draw(st.sampled_from(["coinmarketcap-en-broken-items.html",
                                           "coinmarketcap-en-no-next-data.html"])))
    cut = data.draw(st.integers(0, len(body)))
    junk = data.draw(st.binary(max_size=64))
    start = data.draw(st.integers(0, len(body)))
    damaged = body[:start] + junk + body[start:cut] if start <= cut else body[:cut]
    try:
        parse_page(damaged, COLLECTED, "usd")
    except (SourceError, ParseError):
        pass


# --- fetching -------------------------------------------------------------------------------------------


class FakeHttp:
    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.urls: list[str] = []
        self.rates: dict[str, tuple[float, int]] = {}

    def set_rate_limit(self, source: str, rate_per_minute: float, burst: int = 1) -> None:
        self.rates[source] = (rate_per_minute, burst)

    def get(self, source: str, url: str, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> httpx.Response:
        self.urls.append(url)
        if url not in self.pages:  # HttpClient hands 4xx answers back
            return httpx.Response(404, content=b"Not Found", request=httpx.Request("GET", url))
        return httpx.Response(200, content=self.pages[url], request=httpx.Request("GET", url))


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, coinmarketcap_html_base_url="http://sim/cmc-www", **values)  # type: ignore[call-arg]


def _items(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(1, n + 1):
        out.append({"id": 10_000 + i, "name": f"Coin {i}", "symbol": f"C{i}", "slug": f"coin-{i}", "cmc_rank": i,
                    "circulating_supply": 1000.0, "quote": {"USD": {"price": 1.5, "market_cap": 1500.0,
                                                                    "volume_24h": 10.0, "percent_change_1h": 0.1,
                                                                    "percent_change_24h": -0.2,
                                                                    "percent_change_7d": 0.3}}})
    return out


def test_page_url() -> None:
    assert page_url("https://coinmarketcap.com", 2) == "https://coinmarketcap.com/?page=2"
    assert page_url("https://coinmarketcap.com/", 1, "fr") == "https://coinmarketcap.com/fr/?page=1"


def test_fetch_pages_and_keep_top_n() -> None:
    items = _items(300)
    http = FakeHttp({f"http://sim/cmc-www/?page={p}": render_coinmarketcap_html(
        items[(p - 1) * 100: p * 100]).encode() for p in (1, 2, 3)})
    source = CoinMarketCapHtmlSource(_settings(top_n=150), http)
    pages = source.fetch()
    assert http.urls == ["http://sim/cmc-www/?page=1", "http://sim/cmc-www/?page=2"]
    assert http.rates == {"coinmarketcap-html": PAGE_RATE}  # pages are paced by the source's own limit
    assert all(p.source == "coinmarketcap-html" and p.extension == "html" for p in pages)
    quotes = [q for page in pages for q in source.parse(page).quotes]
    assert [q.rank for q in quotes] == list(range(1, 151))
    assert quotes[0].source_id == "10001" and quotes[0].slug == "coin-1"


def test_fetch_all_until_the_empty_page() -> None:
    items = _items(250)
    pages = {f"http://sim/cmc-www/fr/?page={p}": render_coinmarketcap_html(
        items[(p - 1) * 100: p * 100], "fr").encode() for p in (1, 2, 3, 4)}
    http = FakeHttp(pages)
    source = CoinMarketCapHtmlSource(_settings(top_n="all"), http, lang="fr")
    fetched = source.fetch()
    assert [p.url for p in fetched] == [f"http://sim/cmc-www/fr/?page={p}" for p in (1, 2, 3)]
    assert sum(len(source.parse(p).quotes) for p in fetched) == 250
