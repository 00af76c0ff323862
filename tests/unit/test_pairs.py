"""Exchange pairs to coins: only unambiguous symbols, stablecoin quotes converted with their live price."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cryptoviz.models import SourceQuote
from cryptoviz.pairs import PairMapper
from tests.factories import snapshot

T = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def pair(exchange: str, pair_id: str, base: str, quote: str, price: float, volume: float | None = 1000.0) -> SourceQuote:
    return SourceQuote(exchange, pair_id, base, "", None, None, price, None, volume, None, None, None, None, None,
                       None, T, T, quote, base_volume_24h=None if volume is None else volume / price)


def aggregator(coin: str, symbol: str, price: float, *, source: str = "coingecko") -> object:
    s = snapshot(coin, price=price, symbol=symbol)
    return replace(s, sources=(replace(s.sources[0], source=source),))


@pytest.fixture
def mapper() -> PairMapper:
    m = PairMapper(vs_currency="usd", exchanges=["binance", "kraken"])
    m.learn([aggregator("bitcoin", "BTC", 100_000.0), aggregator("tether", "USDT", 0.998),
             aggregator("usd-coin", "USDC", 1.001), aggregator("uniswap", "UNI", 7.0),
             aggregator("unicorn-token", "UNI", 0.01), aggregator("ethereum", "eth", 3_000.0)])
    return m


def test_an_unambiguous_symbol_maps_and_stablecoin_quotes_are_converted(mapper: PairMapper) -> None:
    quotes, reports = mapper.map([pair("binance", "BTCUSDT", "BTC", "usdt", 100_100.0),
                                  pair("binance", "ETHUSDC", "ETH", "usdc", 3_000.0)])
    by_coin = {q.slug: q for q in quotes}
    btc, eth = by_coin["bitcoin"], by_coin["ethereum"]
    assert (btc.currency, btc.price, btc.volume_24h) == ("usd", 100_100.0 * 0.998, 1000.0 * 0.998)
    assert btc.source_id == "BTCUSDT" and btc.base_volume_24h == pytest.approx(1000.0 / 100_100.0)
    assert eth.price == 3_000.0 * 1.001  # never assumed to be 1
    assert reports["binance"].mapped == 2 and not reports["binance"].unmapped


def test_a_shared_symbol_is_never_guessed_and_is_listed(mapper: PairMapper) -> None:
    quotes, reports = mapper.map([pair("binance", "UNIUSDT", "UNI", "usdt", 7.1),
                                  pair("binance", "FOOUSDT", "FOO", "usdt", 1.0)])
    assert quotes == []
    report = reports["binance"].as_json()
    assert report == {"mapped": 0, "unmapped": 2, "reasons": {"ambiguous_symbol": 1, "unknown_symbol": 1},
                      "unmapped_pairs": ["FOOUSDT", "UNIUSDT"]}


def test_an_explicit_mapping_settles_a_shared_symbol() -> None:
    m = PairMapper(explicit={"uni": "uniswap"}, vs_currency="usd", exchanges=["binance"])
    m.learn([aggregator("uniswap", "UNI", 7.0), aggregator("unicorn-token", "UNI", 0.01),
             aggregator("tether", "USDT", 1.0)])
    [q], _ = m.map([pair("binance", "UNIUSDT", "UNI", "usdt", 7.1)])
    assert (q.slug, q.price) == ("uniswap", 7.1)


def test_one_quote_per_coin_and_exchange_the_vs_currency_first_then_usdt_then_usdc(mapper: PairMapper) -> None:
    quotes, reports = mapper.map([pair("kraken", "BTC/USDC", "BTC", "usdc", 99_000.0),
                                  pair("kraken", "BTC/USDT", "BTC", "usdt", 99_500.0),
                                  pair("kraken", "BTC/USD", "BTC", "usd", 100_000.0),
                                  pair("binance", "BTCUSDC", "BTC", "usdc", 99_900.0),
                                  pair("binance", "BTCUSDT", "BTC", "usdt", 100_050.0)])
    assert sorted((q.source, q.source_id) for q in quotes) == [("binance", "BTCUSDT"), ("kraken", "BTC/USD")]
    assert reports["kraken"].mapped == 1 and reports["binance"].mapped == 1


def test_other_quotes_and_unknown_stablecoin_prices_are_left_out() -> None:
    m = PairMapper(vs_currency="usd", exchanges=["binance"])
    m.learn([aggregator("bitcoin", "BTC", 100_000.0), aggregator("ethereum", "ETH", 3_000.0)])
    quotes, reports = m.map([pair("binance", "ETHBTC", "ETH", "btc", 0.03),
                             pair("binance", "BTCUSDT", "BTC", "usdt", 100_000.0)])
    assert quotes == []
    assert reports["binance"].reasons == {"other_quote": 1, "no_stablecoin_price": 1}
    eur = PairMapper(vs_currency="eur", exchanges=["binance"])
    eur.learn([replace(aggregator("bitcoin", "BTC", 90_000.0), currency="eur")])
    [q], _ = eur.map([pair("binance", "BTCEUR", "BTC", "eur", 90_100.0)])
    assert (q.currency, q.price) == ("eur", 90_100.0)
    assert eur.map([pair("binance", "BTCUSDT", "BTC", "usdt", 100_000.0)])[0] == []  # no USD detour for eur


def test_quotes_of_other_sources_pass_through_and_exchange_only_coins_teach_nothing(mapper: PairMapper) -> None:
    cg = pair("coingecko", "bitcoin", "BTC", "usd", 100_000.0)
    quotes, reports = mapper.map([cg])
    assert quotes == [cg] and reports == {}
    lonely = snapshot("doge-on-binance", symbol="DOGE")
    mapper.learn([replace(lonely, sources=(replace(lonely.sources[0], source="binance"),))])
    assert mapper.coin_of("DOGE") == (None, "unknown_symbol")


def test_a_mapped_quote_joins_its_coin_by_name_when_the_aggregator_it_took_the_id_from_is_missing() -> None:
    """CoinGecko calls Cronos ``crypto-com-chain``, CoinMarketCap ``cronos``: a mapped quote must still join
    CoinMarketCap's and CoinPaprika's quotes by name and symbol in a cycle where CoinGecko failed."""
    from cryptoviz.reconcile import reconcile

    m = PairMapper(vs_currency="usd", exchanges=["binance"])
    s = snapshot("crypto-com-chain", price=0.12, symbol="CRO", name="Cronos")
    m.learn([replace(s, sources=(replace(s.sources[0], source="coingecko"),)), aggregator("tether", "USDT", 1.0)])
    [mapped], _ = m.map([pair("binance", "CROUSDT", "CRO", "usdt", 0.1201)])
    assert (mapped.slug, mapped.name) == ("crypto-com-chain", "Cronos")
    cmc = SourceQuote("coinmarketcap", "3635", "CRO", "Cronos", "cronos", 30, 0.1199, None, None, None, None,
                      None, None, None, None, T, T, "usd")
    paprika = SourceQuote("coinpaprika", "cro-cronos", "CRO", "Cronos", None, 31, 0.12, None, None, None, None,
                          None, None, None, None, T, T, "usd")
    coins = reconcile([mapped, cmc, paprika], observed_at=T, trust={"binance": 0.85, "coinmarketcap": 0.9,
                                                                    "coinpaprika": 0.8}, max_staleness=900)
    assert len(coins) == 1 and set(coins[0].sources_used) == {"binance", "coinmarketcap", "coinpaprika"}


def test_a_renamed_ticker_maps_to_the_old_one_only_while_no_aggregator_knows_the_new() -> None:
    m = PairMapper(vs_currency="usd", exchanges=["coinbase"])
    m.learn([aggregator("matic-network", "MATIC", 0.72)])
    [q], _ = m.map([pair("coinbase", "POL-USD", "POL", "usd", 0.721)])
    assert q.slug == "matic-network"
    m.learn([aggregator("polygon-ecosystem-token", "POL", 0.5)])  # the aggregators caught up
    [q], _ = m.map([pair("coinbase", "POL-USD", "POL", "usd", 0.501)])
    assert q.slug == "polygon-ecosystem-token"
