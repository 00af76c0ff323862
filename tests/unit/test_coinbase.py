"""Coinbase Advanced Trade ``ticker_batch``/``ticker``: the documented messages, exact parsed values, every
rejection, heartbeats and control messages, sequence numbers, the subscriptions, and the spec and budget."""

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
from cryptoviz.sources import coinbase, registry
from cryptoviz.sources.base import is_push
from cryptoviz.sources.coinbase import DEFAULT_PRODUCTS, classify, parse_frame, products, subscribe_messages
from cryptoviz.sources.feed import FrameKind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "coinbase"
T = datetime(2024, 6, 1, 12, 0, 6, tzinfo=UTC)
ENVELOPE_FIELDS = {"channel", "client_id", "timestamp", "sequence_num", "events"}
TICKER_FIELDS = {"type", "product_id", "price", "volume_24_h", "low_24_h", "high_24_h", "low_52_w", "high_52_w",
                 "price_percent_chg_24_h"}


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def message(*tickers: Any, channel: str = "ticker_batch", **changes: Any) -> bytes:
    doc: dict[str, Any] = {"channel": channel, "client_id": "", "timestamp": "2024-06-01T12:00:05.123456789Z",
                           "sequence_num": 3, "events": [{"type": "update", "tickers": list(tickers)}]}
    doc.update(changes)
    return orjson.dumps(doc)


def ticker(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "ticker", "product_id": "BTC-USD", "price": "67012.5", "volume_24_h": "10",
                            "low_24_h": "65800", "high_24_h": "67500", "low_52_w": "25000", "high_52_w": "73835",
                            "price_percent_chg_24_h": "1.5"}
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


def test_fixtures_have_the_documented_fields() -> None:
    for name in ("ticker.json", "ticker-batch.json", "heartbeats.json", "subscriptions.json"):
        assert set(json.loads(body(name))) == ENVELOPE_FIELDS
    documented = json.loads(body("ticker.json"))["events"][0]["tickers"][0]
    assert set(documented) == TICKER_FIELDS | {"best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity"}
    for item in json.loads(body("ticker-batch.json"))["events"][0]["tickers"]:
        assert set(item) == TICKER_FIELDS and all(isinstance(item[k], str) for k in TICKER_FIELDS)


def test_the_documented_ticker_parses_to_exact_values() -> None:
    result = parse_frame(body("ticker.json"), T, "usd")
    assert result.rejected == []
    [quote] = result.quotes
    assert (quote.source, quote.source_id, quote.symbol, quote.currency) == ("coinbase", "BTC-USD", "BTC", "usd")
    assert quote.price == 21932.98 and quote.base_volume_24h == 16038.28770938
    assert quote.volume_24h == pytest.approx(16038.28770938 * 21932.98)  # quote volume: base volume x price
    assert quote.change_24h == -4.15775596190603
    assert quote.last_updated == datetime(2023, 2, 9, 20, 30, 37, 167359, tzinfo=UTC)  # nanoseconds cut
    assert (quote.collected_at, quote.name, quote.slug, quote.rank, quote.market_cap) == (T, "", None, None, None)


def test_a_batch_parses_every_product() -> None:
    result = parse_frame(body("ticker-batch.json"), T, "usd")
    assert result.rejected == []
    assert {q.source_id: (q.symbol, q.currency, q.price) for q in result.quotes} == {
        "BTC-USD": ("BTC", "usd", 67012.5), "ETH-USD": ("ETH", "usd", 3765.2), "BTC-USDT": ("BTC", "usdt", 67001.99),
        "USDT-USDC": ("USDT", "usdc", 1.0001), "SHIB-USD": ("SHIB", "usd", 0.00002451),
    }
    assert {q.last_updated for q in result.quotes} == {datetime(2024, 6, 1, 12, 0, 5, 123456, tzinfo=UTC)}


def test_aliases_are_resolved() -> None:
    [quote] = parse_frame(message(ticker(product_id="XBT-USD")), T, "usd").quotes
    assert (quote.source_id, quote.symbol) == ("XBT-USD", "BTC")


@pytest.mark.parametrize(("item", "coin", "field", "reason"), [
    (ticker(product_id="BTCUSD"), "BTCUSD", "product_id", "bad_pair"),
    (ticker(product_id="BTC-USD-X"), "BTC-USD-X", "product_id", "bad_pair"),
    (ticker(product_id="-USD"), "-USD", "product_id", "bad_pair"),
    (ticker(product_id=None), "item 0", "product_id", "missing_field"),
    (ticker(price="n/a"), "BTC-USD", "price", "not_a_number"),
    (ticker(price="Infinity"), "BTC-USD", "price", "not_a_number"),
    (ticker(price=None), "BTC-USD", "price", "missing_field"),
    (ticker(volume_24_h=[1]), "BTC-USD", "volume_24_h", "not_a_number"),
    (ticker(price_percent_chg_24_h="+"), "BTC-USD", "price_percent_chg_24_h", "not_a_number"),
    ("BTC-USD", "item 0", "item", "not_an_object"),
])
def test_every_rejection_names_the_product_the_field_and_a_reason(item: Any, coin: str, field: str,
                                                                 reason: str) -> None:
    result = parse_frame(message(item, ticker(product_id="ETH-USD")), T, "usd")
    assert [q.source_id for q in result.quotes] == ["ETH-USD"]
    [rejection] = result.rejected
    assert (rejection.source, rejection.coin, rejection.field, rejection.reason) == ("coinbase", coin, field, reason)


def test_an_event_without_a_tickers_list_is_one_broken_item() -> None:
    doc = json.loads(message(ticker()))
    doc["events"].append({"type": "update"})
    result = parse_frame(orjson.dumps(doc), T, "usd")
    assert len(result.quotes) == 1 and [r.reason for r in result.rejected] == ["missing_field"]


def test_heartbeats_subscriptions_and_other_channels_hold_no_quote() -> None:
    for name in ("heartbeats.json", "subscriptions.json"):
        result = parse_frame(body(name), T, "usd")
        assert result.quotes == [] and result.rejected == []
    assert parse_frame(message(ticker(), channel="status"), T, "usd").quotes == []


def test_an_error_message_raises_with_its_message_and_reason() -> None:
    with pytest.raises(TransientSourceError, match=r"Failed to subscribe \(BOGUS-USD is not a valid product\)"):
        parse_frame(body("error.json"), T, "usd")


@pytest.mark.parametrize("junk", [b"", b"[1, 2]", b"{\"channel\": \"ticker_batch\"}", b"{\"channel\": \"ticker\", "
                                  b"\"events\": {}}", b"<html>", message(ticker(), timestamp="yesterday")])
def test_a_message_of_another_shape_is_a_parse_error(junk: bytes) -> None:
    with pytest.raises(ParseError, match="coinbase"):
        parse_frame(junk, T, "usd")


def test_messages_are_classified_with_their_sequence_number() -> None:
    batch = classify(body("ticker-batch.json"))
    assert (batch.kind, batch.sequence) == (FrameKind.DATA, 7)
    assert classify(body("ticker.json")).sequence == 0
    heartbeat = classify(body("heartbeats.json"))
    assert (heartbeat.kind, heartbeat.sequence) == (FrameKind.HEARTBEAT, 0)
    subscriptions = classify(body("subscriptions.json"))
    assert (subscriptions.kind, subscriptions.sequence) == (FrameKind.CONTROL, 1)
    error = classify(body("error.json"))
    assert error.kind is FrameKind.ERROR and "BOGUS-USD" in error.detail
    assert classify(message(ticker(), sequence_num=-1)).sequence is None
    assert classify(message(ticker(), sequence_num="5")).sequence is None
    assert classify(b"{broken").kind is FrameKind.DATA


def test_one_subscription_message_per_channel() -> None:
    ticker_batch, heartbeats = (json.loads(m) for m in subscribe_messages(["BTC-USD", "ETH-USDT"]))
    assert ticker_batch == {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USDT"], "channel": "ticker_batch"}
    assert heartbeats == {"type": "subscribe", "channel": "heartbeats"}


def test_the_products_come_from_the_settings_or_the_default_list(caplog: pytest.LogCaptureFixture) -> None:
    assert products(Settings()) == list(DEFAULT_PRODUCTS)
    with caplog.at_level(logging.WARNING):
        chosen = products(load_settings(coinbase_products="btc-usd, XBT-USD, ETHUSD, sol-usdt"))
    assert chosen == ["BTC-USD", "SOL-USDT"]  # aliases resolved, duplicates and non-pairs dropped
    assert "'ETHUSD' is not a pair like BTC-USD" in caplog.text


def test_the_default_list_holds_the_largest_coins_against_usd_and_some_usdt() -> None:
    quotes = [p.split("-")[1] for p in DEFAULT_PRODUCTS]
    assert len(DEFAULT_PRODUCTS) == len(set(DEFAULT_PRODUCTS)) and quotes.count("USD") >= 40
    assert {"BTC-USDT", "ETH-USDT", "USDT-USD", "USDT-USDC"} <= set(DEFAULT_PRODUCTS)
    # -USDC products answer with the -USD data on the market channels: only USDT-USDC is worth asking for
    assert [p for p in DEFAULT_PRODUCTS if p.endswith("-USDC")] == ["USDT-USDC"]


def test_the_spec_budget_and_limits() -> None:
    spec = registry.SPECS["coinbase"]
    assert spec is coinbase.SPEC and spec.kind == "push" and spec.namespace.name == "coinbase" and spec.pairs
    assert 0.85 <= spec.trust <= 0.9 and spec.default(Settings())
    assert spec.settings == ("coinbase_ws_url", "coinbase_products") and registry.get_parser("coinbase") is parse_frame
    assert spec.budget.burst + spec.budget.per_minute / 60 <= 8  # connections in any second per IP
    assert coinbase.LIMITS.messages_per_second <= 8 and coinbase.LIMITS.subscribe_within == 5
    feed = spec.build(load_settings(coinbase_products="BTC-USD"), None)  # type: ignore[arg-type]
    assert is_push(feed) and feed.name == "coinbase"
    assert [json.loads(m)["channel"] for m in feed.subscriptions] == ["ticker_batch", "heartbeats"]  # type: ignore[attr-defined]
