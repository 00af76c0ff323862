"""Coin list pages of other years (tests/fixtures/html/real, see its README): each read by the strategy for its
layout, with the values the page itself shows."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cryptoviz.errors import LayoutChangedError, TerminalSourceError
from cryptoviz.models import ParseResult, SourceQuote
from cryptoviz.sources import coingecko_html, coinmarketcap_html

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "html" / "real"
COLLECTED = datetime(2025, 6, 24, 16, 0, tzinfo=UTC)
CMC_JSON = ("next-data:cryptoCurrencyList", "next-data:listingLatest", "next-data:keysArr")
CMC_ALL = (*CMC_JSON, "table", "table:attributes")


def read(name: str) -> bytes:
    return (REAL / name).read_bytes()


def cmc(body: bytes, currency: str = "usd") -> ParseResult:
    return coinmarketcap_html.parse_page(body, COLLECTED, currency)


def by_slug(result: ParseResult) -> dict[str, SourceQuote]:
    return {q.slug or "": q for q in result.quotes}


def without_next_data(body: bytes) -> bytes:
    return re.sub(rb'<script id="__NEXT_DATA__".*?</script>', b"", body, flags=re.DOTALL)


def without_exact_attributes(body: bytes) -> bytes:
    for name in (b"data-usd", b"data-supply", b"data-percentusd", b"data-sort"):
        body = body.replace(name + b"=", b"data-was-" + name[5:] + b"=")
    return body


def test_every_page_has_a_readme_row_and_the_real_ones_a_licence() -> None:
    readme = (REAL / "README.md").read_text(encoding="utf-8")
    pages = sorted(p.name for p in REAL.glob("*.html"))
    assert pages
    for name in pages:
        assert f"`{name}`" in readme, f"{name} is not described in the README"
    real = [n for n in pages if "-made" not in n]
    assert real == ["coinmarketcap-2025-home.html"]
    assert (REAL / "LICENSE-roseteromeo56-CoinMarketCap.com").read_text(encoding="utf-8").startswith("MIT License")


# --- coinmarketcap.com ---------------------------------------------------------------------------------


def test_2025_home_page_saved_by_a_browser_is_read_from_its_table() -> None:
    result = cmc(read("coinmarketcap-2025-home.html"))
    assert (result.strategy, result.strategies_tried) == ("table", CMC_JSON)
    assert result.rejected == []
    # As printed: "$105,469.75", caret down "0.24%", "$2,097,047,168,150", "$64,530,207,815", "19.88M BTC".
    assert result.quotes[0] == SourceQuote(
        source="coinmarketcap-html", source_id="1", symbol="BTC", name="Bitcoin", slug="bitcoin", rank=1,
        price=105469.75, market_cap=2097047168150.0, volume_24h=64530207815.0, change_1h=-0.24,
        change_24h=4.0, change_7d=1.15, circulating_supply=19880000.0, total_supply=None, max_supply=None,
        last_updated=None, collected_at=COLLECTED, currency="usd")
    eth, usdt = result.quotes[1:]
    assert (eth.source_id, eth.symbol, eth.name, eth.rank, eth.price) == ("1027", "ETH", "Ethereum", 2, 2439.75)
    assert (eth.market_cap, eth.volume_24h, eth.circulating_supply) == (294525311602.0, 27108059016.0, 120710000.0)
    assert (eth.change_1h, eth.change_24h, eth.change_7d) == (0.32, 8.4, -2.37)
    assert (usdt.source_id, usdt.symbol, usdt.name, usdt.rank, usdt.price) == ("825", "USDT", "Tether", 3, 1.0)
    assert (usdt.market_cap, usdt.volume_24h, usdt.circulating_supply) == (156409155470.0, 104097374689.0,
                                                                          156340000000.0)
    assert (usdt.change_1h, usdt.change_24h, usdt.change_7d) == (-0.01, -0.01, 0.01)
    assert coinmarketcap_html.coin_row_count(read("coinmarketcap-2025-home.html")) == 3


def test_2018_home_page_symbol_link_first_and_exact_values_from_attributes() -> None:
    body = read("coinmarketcap-2018-home-made.html")
    result = cmc(body)
    assert (result.strategy, result.strategies_tried) == ("table:attributes", (*CMC_JSON, "table"))
    assert result.rejected == []
    assert [(q.source_id, q.symbol, q.name, q.slug, q.rank) for q in result.quotes] == [
        ("1", "BTC", "Bitcoin", "bitcoin", 1), ("1027", "ETH", "Ethereum", "ethereum", 2),
        ("52", "XRP", "XRP", "ripple", 3)]
    btc = result.quotes[0]
    # data-usd="6500.69178044" (printed "$6500.69"), data-usd="1.12014758327e+11", data-supply, data-sort.
    assert (btc.price, btc.market_cap, btc.volume_24h) == (6500.69178044, 112014758327.0, 4201337526.93)
    assert (btc.change_1h, btc.change_24h, btc.change_7d, btc.circulating_supply) == (None, 0.387226, None,
                                                                                     17231125.0)
    assert by_slug(result)["ethereum"].change_24h == -1.80672
    assert by_slug(result)["ripple"].price == 0.470713447451
    # The printed text, without the attributes: rounded, and from the same rows.
    printed = cmc(without_exact_attributes(body))
    assert (printed.strategy, printed.strategies_tried) == ("table", CMC_JSON)
    assert [(q.symbol, q.price, q.change_24h) for q in printed.quotes] == [
        ("BTC", 6500.69, 0.39), ("ETH", 227.86, -1.81), ("XRP", 0.470713, 5.1)]


def test_2019_all_coins_saved_in_a_german_locale() -> None:
    body = read("coinmarketcap-2019-all-browser-de-made.html")
    assert b'<html lang="en">' in body and b"$7.299.982.172" in body and b"0,05%" in body
    result = cmc(body)
    assert (result.strategy, result.rejected) == ("table:attributes", [])
    btc = result.quotes[0]
    assert (btc.source_id, btc.symbol, btc.name, btc.rank) == ("1", "BTC", "Bitcoin", 1)
    assert (btc.price, btc.market_cap, btc.volume_24h) == (3830.48251973, 67314052186.6, 7299982171.98)
    assert (btc.change_1h, btc.change_24h, btc.change_7d, btc.circulating_supply) == (0.0501673, -1.16906, 6.47562,
                                                                                     17573062.0)
    # From the printed text alone: the page's numbers say the decimal mark is the comma.
    printed = cmc(without_exact_attributes(body))
    assert (printed.strategy, printed.rejected) == ("table", [])
    assert [(q.symbol, q.price, q.market_cap, q.volume_24h, q.change_1h, q.circulating_supply)
            for q in printed.quotes] == [
        ("BTC", 3830.48, 67314052187.0, 7299982172.0, 0.05, 17573062.0),
        ("ETH", 136.75, 14297532683.0, 3262843046.0, -0.22, 104550728.0),
        ("USDT", 1.0, 2024154291.0, 6043296459.0, 0.03, 2018674155.0)]


def test_2020_home_page_listing_latest_items_in_snake_case() -> None:
    result = cmc(read("coinmarketcap-2020-home-made.html"))
    assert (result.strategy, result.strategies_tried) == ("next-data:listingLatest", ("next-data:cryptoCurrencyList",))
    assert result.rejected == []
    assert result.quotes[0] == SourceQuote(
        source="coinmarketcap-html", source_id="1", symbol="BTC", name="Bitcoin", slug="bitcoin", rank=1,
        price=9746.32716831, market_cap=177559066880.65613, volume_24h=35912542918.8734, change_1h=-0.313672,
        change_24h=1.98011, change_7d=3.04711, circulating_supply=18217862.0, total_supply=None, max_supply=None,
        last_updated=datetime(2020, 2, 6, 21, 4, 33, tzinfo=UTC), collected_at=COLLECTED, currency="usd")
    assert [(q.rank, q.symbol) for q in result.quotes] == [(1, "BTC"), (2, "ETH"), (3, "XRP")]
    in_btc = cmc(read("coinmarketcap-2020-home-made.html"), "btc")  # the page quotes every coin in BTC too
    assert [q.price for q in in_btc.quotes] == [1.0, 0.0217435, 0.0000284527]


def test_2020_home_page_table_after_its_header_only_copies() -> None:
    body = without_next_data(read("coinmarketcap-2020-home-made.html"))
    assert body.count(b"<table>") == 3 and body.count(b"<tbody>") == 1
    result = cmc(body)
    assert (result.strategy, result.strategies_tried) == ("table", CMC_JSON)
    assert result.rejected == []
    assert [(q.source_id, q.symbol, q.name, q.rank, q.price, q.change_24h, q.circulating_supply)
            for q in result.quotes] == [
        ("1", "BTC", "Bitcoin", 1, 9746.33, 1.98, 18217862.0),
        ("1027", "ETH", "Ethereum", 2, 211.92, 4.17, 109619438.0),
        ("52", "XRP", "XRP", 3, 0.277306, -1.51, 43796904004.0)]
    assert coinmarketcap_html.coin_row_count(body) == 3


def test_2022_all_coins_keys_arr_rows_in_a_json_string() -> None:
    result = cmc(read("coinmarketcap-2022-all-keysarr-made.html"))
    assert (result.strategy, result.strategies_tried) == (
        "next-data:keysArr", ("next-data:cryptoCurrencyList", "next-data:listingLatest"))
    assert result.rejected == []
    assert result.quotes[0] == SourceQuote(
        source="coinmarketcap-html", source_id="1", symbol="BTC", name="Bitcoin", slug="bitcoin", rank=1,
        price=20730.40076506806, market_cap=398142961847.1573, volume_24h=35705935453.5611,
        change_1h=-0.21338541, change_24h=-1.87301245, change_7d=1.26393045, circulating_supply=19206050.0,
        total_supply=19206050.0, max_supply=21000000.0, last_updated=datetime(2022, 11, 7, 18, 42, tzinfo=UTC),
        collected_at=COLLECTED, currency="usd")
    usdt = by_slug(result)["tether"]
    assert (usdt.source_id, usdt.rank, usdt.price, usdt.max_supply) == ("825", 3, 1.000124472106895, None)


def test_a_page_no_strategy_reads_names_them_all() -> None:
    body = read("coinmarketcap-2025-home.html").replace(b"/currencies/", b"/assets/")
    with pytest.raises(LayoutChangedError) as info:
        cmc(body)
    assert info.value.strategies_tried == CMC_ALL
    assert "coin list not found - page layout changed? (tried: " + ", ".join(CMC_ALL) + ")" in str(info.value)
    assert "use the API source instead" in str(info.value) and "bug report" in str(info.value)


def test_a_table_without_rows_is_still_a_page_past_the_last_one() -> None:
    body = re.sub(rb"<tbody>.*</tbody>", b"<tbody></tbody>", read("coinmarketcap-2025-home.html"), flags=re.DOTALL)
    assert coinmarketcap_html.coin_row_count(body) == 0
    with pytest.raises(TerminalSourceError, match="past the last one") as info:
        cmc(body)
    assert not isinstance(info.value, LayoutChangedError)


# --- coingecko.com -------------------------------------------------------------------------------------


def test_2020_coingecko_home_page_symbol_link_before_the_name() -> None:
    body = read("coingecko-2020-home-made.html")
    result = coingecko_html.parse_page(body, COLLECTED, "usd")
    assert (result.strategy, result.strategies_tried, result.rejected) == ("table", (), [])
    assert result.quotes[0] == SourceQuote(
        source="coingecko-html", source_id="bitcoin", symbol="BTC", name="Bitcoin", slug="bitcoin", rank=1,
        price=19062.47, market_cap=354121804233.0, volume_24h=30574862097.0, change_1h=0.4, change_24h=-1.7,
        change_7d=4.1, circulating_supply=None, total_supply=None, max_supply=None, last_updated=None,
        collected_at=COLLECTED, currency="usd")
    assert [(q.symbol, q.name, q.price, q.change_24h) for q in result.quotes[1:]] == [
        ("ETH", "Ethereum", 602.83, -2.4), ("USDT", "Tether", 1.0, 0.1)]


def test_2020_coingecko_table_after_header_only_copies() -> None:
    body = read("coingecko-2020-home-made.html")
    head = re.search(rb"<thead>.*?</thead>", body, flags=re.DOTALL)
    assert head is not None
    copies = b'<table class="sort table">' + head.group() + b"</table>"
    body = body.replace(b'<div class="coin-table table-responsive">', b'<div class="coin-table table-responsive">'
                        + copies * 2, 1)
    result = coingecko_html.parse_page(body, COLLECTED, "usd")
    original = coingecko_html.parse_page(read("coingecko-2020-home-made.html"), COLLECTED, "usd")
    assert result.quotes == original.quotes and len(result.quotes) == 3
    assert coingecko_html.coin_row_count(body) == 3


def test_2020_coingecko_page_in_another_currency_is_refused() -> None:
    with pytest.raises(TerminalSourceError, match="shows price in USD but EUR was asked for"):
        coingecko_html.parse_page(read("coingecko-2020-home-made.html"), COLLECTED, "eur")


def test_keep_top_keeps_the_strategy() -> None:
    from cryptoviz.sources.html import keep_top

    result = cmc(read("coinmarketcap-2018-home-made.html"))
    kept = keep_top(result, 2)
    assert [q.rank for q in kept.quotes] == [1, 2]
    assert (kept.strategy, kept.strategies_tried) == (result.strategy, result.strategies_tried)
    assert replace(kept, quotes=result.quotes) == result
