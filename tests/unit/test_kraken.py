"""Kraken websocket v2 ``ticker``: the documented messages, exact parsed values, aliases, every rejection,
heartbeats, status and acknowledgements, refused subscriptions, the subscriptions, and the spec and budget."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from cryptoviz.config import Settings, load_settings
from cryptoviz.errors import ParseError, TransientSourceError
from cryptoviz.sources import kraken, registry
from cryptoviz.sources.base import is_push
from cryptoviz.sources.feed import ASSET_ALIASES, FrameKind, canonical_asset
from cryptoviz.sources.kraken import DEFAULT_PAIRS, classify, pairs, parse_frame, subscribe_messages

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kraken"
T = datetime(2024, 6, 1, 12, 0, 6, tzinfo=UTC)
TICKER_FIELDS = {"symbol", "bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low", "high", "change",
                 "change_pct"}


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def message(*items: Any, kind: str = "update") -> bytes:
    return orjson.dumps({"channel": "ticker", "type": kind, "data": list(items)})


def ticker(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"symbol": "BTC/USD", "bid": 67010.1, "bid_qty": 0.5, "ask": 67010.2, "ask_qty": 1.2,
                            "last": 67010.2, "volume": 2.0, "vwap": 66000.0, "low": 65800.0, "high": 67500.0,
                            "change": 1000.2, "change_pct": 1.52, "timestamp": "2024-06-01T12:00:05.123456Z"}
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


def test_fixtures_have_the_documented_fields() -> None:
    [documented] = json.loads(body("ticker-snapshot.json"))["data"]
    assert set(documented) == TICKER_FIELDS  # the documentation's example: no timestamp yet
    for item in json.loads(body("ticker-update.json"))["data"]:
        assert set(item) == TICKER_FIELDS | {"timestamp"}
        assert all(isinstance(item[k], int | float) for k in TICKER_FIELDS - {"symbol"})


def test_the_documented_snapshot_parses_to_exact_values() -> None:
    result = parse_frame(body("ticker-snapshot.json"), T, "usd")
    assert result.rejected == []
    [quote] = result.quotes
    assert (quote.source, quote.source_id, quote.symbol, quote.currency) == ("kraken", "ALGO/USD", "ALGO", "usd")
    assert (quote.price, quote.base_volume_24h, quote.change_24h) == (0.10035, 997038.98383185, -0.17)
    assert quote.volume_24h == pytest.approx(997038.98383185 * 0.10148)  # quote volume: base volume x vwap
    assert quote.last_updated is None and quote.collected_at == T  # the example has no timestamp
    assert (quote.name, quote.slug, quote.rank, quote.market_cap) == ("", None, None, None)


def test_an_update_parses_every_pair_with_its_time() -> None:
    result = parse_frame(body("ticker-update.json"), T, "usd")
    assert result.rejected == []
    assert {q.source_id: (q.symbol, q.currency, q.price) for q in result.quotes} == {
        "BTC/USD": ("BTC", "usd", 67010.2), "ETH/USDT": ("ETH", "usdt", 3765.0), "USDC/USD": ("USDC", "usd", 1.0)}
    assert result.quotes[0].last_updated == datetime(2024, 6, 1, 12, 0, 5, 123456, tzinfo=UTC)


@pytest.mark.parametrize(("pair", "symbol", "currency"), [("XBT/USD", "BTC", "usd"), ("XDG/USD", "DOGE", "usd"),
                                                          ("ETH/XBT", "ETH", "btc"), ("xbt/eur", "BTC", "eur")])
def test_aliases_are_resolved_and_the_exchange_name_kept(pair: str, symbol: str, currency: str) -> None:
    [quote] = parse_frame(message(ticker(symbol=pair)), T, "usd").quotes
    assert (quote.source_id, quote.symbol, quote.currency) == (pair, symbol, currency)


def test_the_alias_table_is_shared() -> None:
    assert ASSET_ALIASES == {"XBT": "BTC", "XDG": "DOGE"}
    assert [canonical_asset(code) for code in ("xbt", " XDG ", "ETH")] == ["BTC", "DOGE", "ETH"]


@pytest.mark.parametrize(("item", "coin", "field", "reason"), [
    (ticker(symbol="BTCUSD"), "BTCUSD", "symbol", "bad_pair"),
    (ticker(symbol="BTC/"), "BTC/", "symbol", "bad_pair"),
    (ticker(symbol=None), "item 0", "symbol", "missing_field"),
    (ticker(symbol=["BTC/USD"]), "item 0", "symbol", "not_a_string"),
    (ticker(last=None), "BTC/USD", "last", "missing_field"),
    (ticker(last="n/a"), "BTC/USD", "last", "not_a_number"),
    (ticker(last=False), "BTC/USD", "last", "not_a_number"),
    (ticker(volume={}), "BTC/USD", "volume", "not_a_number"),
    (ticker(timestamp="noon"), "BTC/USD", "timestamp", "bad_timestamp"),
    (ticker(timestamp=1717243205), "BTC/USD", "timestamp", "bad_timestamp"),
    (42, "item 0", "item", "not_an_object"),
])
def test_every_rejection_names_the_pair_the_field_and_a_reason(item: Any, coin: str, field: str, reason: str) -> None:
    result = parse_frame(message(item, ticker(symbol="ETH/USD")), T, "usd")
    assert [q.source_id for q in result.quotes] == ["ETH/USD"]
    [rejection] = result.rejected
    assert (rejection.source, rejection.coin, rejection.field, rejection.reason) == ("kraken", coin, field, reason)


def test_numbers_as_decimal_strings_are_read_too() -> None:
    [quote] = parse_frame(message(ticker(last="67010.5", volume="3", vwap=None)), T, "usd").quotes
    assert (quote.price, quote.base_volume_24h, quote.volume_24h) == (67010.5, 3.0, None)


def test_heartbeats_status_and_acknowledgements_hold_no_quote() -> None:
    for name in ("heartbeat.json", "status.json", "subscribe-ack.json"):
        result = parse_frame(body(name), T, "usd")
        assert result.quotes == [] and result.rejected == []


def test_a_refused_subscription_raises_with_kraken_s_words() -> None:
    with pytest.raises(TransientSourceError, match="Currency pair not supported ABC/USD"):
        parse_frame(body("subscribe-error.json"), T, "usd")


@pytest.mark.parametrize("junk", [b"", b"[]", b"{\"channel\": \"ticker\"}", b"{\"channel\": \"ticker\", \"data\": 1}",
                                  b"{\"channel\": \"ticker\", \"data\": [", b"<html>"])
def test_a_message_of_another_shape_is_a_parse_error(junk: bytes) -> None:
    with pytest.raises(ParseError, match="kraken"):
        parse_frame(junk, T, "usd")


@pytest.mark.parametrize(("name", "kind"), [
    ("ticker-snapshot.json", FrameKind.DATA), ("ticker-update.json", FrameKind.DATA),
    ("heartbeat.json", FrameKind.HEARTBEAT), ("status.json", FrameKind.CONTROL),
    ("subscribe-ack.json", FrameKind.CONTROL), ("subscribe-error.json", FrameKind.ERROR),
])
def test_each_documented_message_has_its_kind(name: str, kind: FrameKind) -> None:
    assert classify(body(name)).kind is kind


def test_refusals_say_what_was_refused() -> None:
    refused = classify(body("subscribe-error.json"))
    assert (refused.kind, refused.detail) == (FrameKind.ERROR, "Currency pair not supported ABC/USD")
    rate = classify(orjson.dumps({"error": "Exceeded msg rate", "method": "subscribe", "success": False}))
    assert (rate.kind, rate.detail) == (FrameKind.ERROR, "Exceeded msg rate")
    assert classify(b"garbage").kind is FrameKind.DATA and classify(b"{}").sequence is None


def test_subscriptions_go_fifty_pairs_a_message() -> None:
    symbols = [f"C{n}/USD" for n in range(120)]
    sent = [json.loads(m) for m in subscribe_messages(symbols)]
    assert [m["req_id"] for m in sent] == [1, 2, 3]
    assert [len(m["params"]["symbol"]) for m in sent] == [50, 50, 20]
    assert sent[0]["method"] == "subscribe" and sent[0]["params"]["channel"] == "ticker"
    assert [s for m in sent for s in m["params"]["symbol"]] == symbols


def test_the_pairs_come_from_the_settings_or_the_default_list(caplog: pytest.LogCaptureFixture) -> None:
    assert pairs(Settings()) == list(DEFAULT_PAIRS)
    with caplog.at_level(logging.WARNING):
        chosen = pairs(load_settings(kraken_pairs="xbt/usd,BTC/USD,XDG/USD,ETHUSD,eth/usdc"))
    assert chosen == ["BTC/USD", "DOGE/USD", "ETH/USDC"]
    assert "'ETHUSD' is not a pair like BTC/USD" in caplog.text


def test_the_default_list_holds_the_largest_coins_against_usd_usdt_and_usdc() -> None:
    quotes = [p.split("/")[1] for p in DEFAULT_PAIRS]
    assert len(set(DEFAULT_PAIRS)) == len(DEFAULT_PAIRS) and quotes.count("USD") >= 40
    assert {"USDT", "USDC"} <= set(quotes) and "BTC/USD" in DEFAULT_PAIRS
    assert not any(p.startswith(("XBT/", "XDG/")) for p in DEFAULT_PAIRS)  # v2 names them BTC and DOGE


def test_the_spec_budget_and_limits() -> None:
    spec = registry.SPECS["kraken"]
    assert spec is kraken.SPEC and spec.kind == "push" and spec.namespace.name == "kraken" and spec.pairs
    assert 0.85 <= spec.trust <= 0.9 and spec.default(Settings())
    assert spec.settings == ("kraken_ws_url", "kraken_pairs") and registry.get_parser("kraken") is parse_frame
    assert spec.budget.burst + spec.budget.per_minute * 10 <= 150  # connection attempts in any 10 minutes
    feed = spec.build(load_settings(kraken_pairs="XBT/USD"), None)  # type: ignore[arg-type]
    assert is_push(feed) and feed.name == "kraken"
    [subscription] = feed.subscriptions  # type: ignore[attr-defined]
    assert json.loads(subscription)["params"]["symbol"] == ["BTC/USD"]
