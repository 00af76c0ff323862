"""Binance ``!miniTicker@arr``: the documented frames, exact parsed values, symbol splitting, every rejection,
control and error frames, the stream URL, and the spec and budget as the registry sees them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, TransientSourceError
from cryptoviz.sources import binance, registry
from cryptoviz.sources.base import FRAME, RawPage, is_push
from cryptoviz.sources.binance import classify, parse_frame, split_symbol, stream_url
from cryptoviz.sources.feed import FrameKind, WebSocketFeed
from cryptoviz.sources.fields import ItemRejected

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
T = datetime(2024, 6, 1, 0, 0, 6, tzinfo=UTC)
# The documented fields of a <symbol>@miniTicker payload.
MINI_TICKER_FIELDS = {"e", "E", "s", "c", "o", "h", "l", "v", "q"}


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def frame(*items: Any, combined: bool = True) -> bytes:
    return orjson.dumps({"stream": "!miniTicker@arr", "data": list(items)} if combined else list(items))


def ticker(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"e": "24hrMiniTicker", "E": 1717200005123, "s": "BTCUSDT", "c": "67012.34000000",
                            "o": "66012.00000000", "h": "67500.00000000", "l": "65800.10000000",
                            "v": "21034.55812000", "q": "1405712345.90123400"}
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


# --- the fixtures are the documented shapes ------------------------------------------------------------


def test_fixtures_have_the_documented_fields() -> None:
    raw = json.loads(body("mini-ticker-arr-raw.json"))
    combined = json.loads(body("mini-ticker-arr-combined.json"))
    assert combined["stream"] == "!miniTicker@arr"
    for item in raw + combined["data"]:
        assert set(item) == MINI_TICKER_FIELDS and item["e"] == "24hrMiniTicker"
        assert all(isinstance(item[k], str) for k in "cohlvq") and isinstance(item["E"], int)


# --- exact values -------------------------------------------------------------------------------------


def test_the_documented_payload_parses_to_exact_values() -> None:
    result = parse_frame(body("mini-ticker-arr-raw.json"), T, "usd")
    assert result.rejected == []
    [quote] = result.quotes
    assert (quote.source, quote.source_id, quote.symbol, quote.currency) == ("binance", "BNBBTC", "BNB", "btc")
    assert (quote.price, quote.volume_24h, quote.base_volume_24h) == (0.0025, 18.0, 10000.0)
    assert quote.change_24h == pytest.approx(150.0)  # from 0.0010 to 0.0025
    assert quote.last_updated == datetime(2022, 12, 31, 19, 43, 2, 136000, tzinfo=UTC)
    assert quote.collected_at == T
    assert (quote.name, quote.slug, quote.rank, quote.market_cap) == ("", None, None, None)
    assert (quote.circulating_supply, quote.total_supply, quote.max_supply, quote.change_1h) == (None,) * 4


def test_the_combined_form_parses_every_quote_asset() -> None:
    result = parse_frame(body("mini-ticker-arr-combined.json"), T, "usd")
    assert result.rejected == []
    got = {q.source_id: (q.symbol, q.currency, q.price) for q in result.quotes}
    assert got == {
        "BTCUSDT": ("BTC", "usdt", 67012.34), "ETHUSDT": ("ETH", "usdt", 3765.21), "ETHBTC": ("ETH", "btc", 0.05618),
        "USDCUSDT": ("USDC", "usdt", 1.0001), "PEPEUSDT": ("PEPE", "usdt", 0.00001528),
        "SOLFDUSD": ("SOL", "fdusd", 166.43), "UNIUSDC": ("UNI", "usdc", 9.812),
    }
    btc = result.quotes[0]
    assert (btc.volume_24h, btc.base_volume_24h) == (1405712345.901234, 21034.55812)
    assert btc.last_updated == datetime(2024, 6, 1, 0, 0, 5, 123000, tzinfo=UTC)


def test_a_single_symbol_stream_payload_is_read_too() -> None:
    result = parse_frame(orjson.dumps(ticker(s="ETHUSDT")), T, "usd")
    assert [q.source_id for q in result.quotes] == ["ETHUSDT"]
    assert [q.source_id for q in parse_frame(frame(ticker(), combined=False), T, "usd").quotes] == ["BTCUSDT"]


@pytest.mark.parametrize(("symbol", "split"), [
    ("BTCUSDT", ("BTC", "USDT")), ("ETHBUSD", ("ETH", "BUSD")), ("ETHTUSD", ("ETH", "TUSD")),
    ("TUSDUSDT", ("TUSD", "USDT")), ("USDCUSDT", ("USDC", "USDT")), ("BTCUSD", ("BTC", "USD")),
    ("SOLFDUSD", ("SOL", "FDUSD")), ("1000SATSUSDT", ("1000SATS", "USDT")), ("XBTUSDT", ("BTC", "USDT")),
    ("ETHBTC", ("ETH", "BTC")), ("BTCEUR", ("BTC", "EUR")), ("ethusdt", ("ETH", "USDT")),
])
def test_symbols_split_on_the_longest_listed_quote_asset(symbol: str, split: tuple[str, str]) -> None:
    assert split_symbol(symbol) == split


@pytest.mark.parametrize("symbol", ["BTCXYZ", "USDT", "BTC", "ABC"])
def test_a_symbol_no_quote_asset_ends_is_unknown(symbol: str) -> None:
    with pytest.raises(ItemRejected) as raised:
        split_symbol(symbol)
    assert (raised.value.field, raised.value.reason) == ("s", "unknown_quote")


# --- rejections -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("item", "coin", "field", "reason"), [
    (ticker(s="BTCXYZ"), "BTCXYZ", "s", "unknown_quote"),
    (ticker(c="n/a"), "BTCUSDT", "c", "not_a_number"),
    (ticker(c="NaN"), "BTCUSDT", "c", "not_a_number"),
    (ticker(c="1_000"), "BTCUSDT", "c", "not_a_number"),
    (ticker(c=" 1.5"), "BTCUSDT", "c", "not_a_number"),
    (ticker(c=True), "BTCUSDT", "c", "not_a_number"),
    (ticker(c=None), "BTCUSDT", "c", "missing_field"),
    (ticker(q="many"), "BTCUSDT", "q", "not_a_number"),
    (ticker(s=None), "item 0", "s", "missing_field"),
    (ticker(s=7), "item 0", "s", "not_a_string"),
    (ticker(s="BTC\x00USDT"), "BTC\ufffdUSDT", "s", "bad_text"),
    (ticker(E="yesterday"), "BTCUSDT", "E", "bad_timestamp"),
    (ticker(E=2**62), "BTCUSDT", "E", "bad_timestamp"),
    (ticker(e="kline"), "BTCUSDT", "e", "unexpected_event"),
    ("BTCUSDT", "item 0", "item", "not_an_object"),
])
def test_every_rejection_names_the_pair_the_field_and_a_reason(item: Any, coin: str, field: str, reason: str) -> None:
    result = parse_frame(frame(item, ticker(s="ETHUSDT")), T, "usd")
    assert [q.source_id for q in result.quotes] == ["ETHUSDT"]  # the rest of the frame is kept
    [rejection] = result.rejected
    assert (rejection.source, rejection.coin, rejection.field, rejection.reason) == ("binance", coin, field, reason)


def test_numbers_may_come_as_json_numbers_and_a_zero_open_gives_no_change() -> None:
    [quote] = parse_frame(frame(ticker(c=2.5, o=0, q=10, v="4")), T, "usd").quotes
    assert (quote.price, quote.change_24h, quote.volume_24h, quote.base_volume_24h) == (2.5, None, 10.0, 4.0)


# --- other frames ----------------------------------------------------------------------------------------


def test_acknowledgements_and_shutdown_notices_hold_no_quote() -> None:
    for name in ("subscribe-response.json", "server-shutdown.json"):
        result = parse_frame(body(name), T, "usd")
        assert result.quotes == [] and result.rejected == []
    assert parse_frame(orjson.dumps({"e": "serverShutdown", "E": 1}), T, "usd").quotes == []


def test_an_error_frame_raises_with_what_the_exchange_said() -> None:
    with pytest.raises(TransientSourceError, match="request ID must be an unsigned integer"):
        parse_frame(body("error-invalid-request.json"), T, "usd")
    with pytest.raises(TransientSourceError, match="error 2: Invalid request"):
        parse_frame(orjson.dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": 1}), T, "usd")


@pytest.mark.parametrize("junk", [b"", b"{\"stream\": \"!miniTicker@arr\", \"data\": [", b"<html>403</html>",
                                  b"\"text\"", b"{\"unknown\": 1}", b"42"])
def test_a_frame_of_another_shape_is_a_parse_error(junk: bytes) -> None:
    with pytest.raises(ParseError, match="binance"):
        parse_frame(junk, T, "usd")


def test_frames_are_classified() -> None:
    assert classify(body("mini-ticker-arr-combined.json")).kind is FrameKind.DATA
    assert classify(body("mini-ticker-arr-raw.json")).kind is FrameKind.DATA
    assert classify(body("subscribe-response.json")).kind is FrameKind.CONTROL
    error = classify(body("error-invalid-request.json"))
    assert error.kind is FrameKind.ERROR and error.detail.startswith("error 2: Invalid request")
    assert classify(body("server-shutdown.json")).kind is FrameKind.RECONNECT
    assert classify(orjson.dumps({"e": "serverShutdown", "E": 1})).kind is FrameKind.RECONNECT
    assert classify(b"not json").kind is FrameKind.DATA  # the parser says what is wrong with it
    assert classify(b"").sequence is None


# --- connecting ---------------------------------------------------------------------------------------


def test_the_feed_reads_the_combined_stream() -> None:
    assert stream_url("wss://stream.binance.com:9443") == "wss://stream.binance.com:9443/stream?streams=!miniTicker@arr"
    assert stream_url("ws://127.0.0.1:9/binance/ws/") == "ws://127.0.0.1:9/binance/stream?streams=!miniTicker@arr"
    assert stream_url("ws://h/stream", ["btcusdt@miniTicker", "!miniTicker@arr"]).endswith(
        "/stream?streams=btcusdt@miniTicker/!miniTicker@arr")
    with pytest.raises(ValueError, match="1024"):
        stream_url("ws://h", [f"s{n}@miniTicker" for n in range(1025)])
    assert binance.feed_url(Settings()) == "wss://stream.binance.com:9443/stream?streams=!miniTicker@arr"


def test_the_spec_as_the_registry_sees_it() -> None:
    spec = registry.SPECS["binance"]
    assert spec is binance.SPEC and spec.kind == "push" and spec.extension == "json" and spec.pairs
    assert spec.namespace.name == "binance" and not spec.namespace.canonical
    assert 0.85 <= spec.trust <= 0.9 and spec.settings == ("binance_ws_url",)
    assert spec.default(Settings()) and "binance" in registry.default_sources(Settings())
    assert registry.get_parser("binance") is parse_frame
    page = RawPage("binance", body("mini-ticker-arr-raw.json"), FRAME, T)
    assert registry.parse_page(page, "usd").quotes[0].source_id == "BNBBTC"
    feed = spec.build(Settings(), None)  # type: ignore[arg-type]
    assert isinstance(feed, WebSocketFeed) and is_push(feed) and feed.name == "binance"
    assert feed.subscriptions == []  # the stream is named in the URL
    assert feed.parse(page).quotes[0].symbol == "BNB"


def test_the_budget_and_limits_keep_within_the_documented_ones() -> None:
    budget, limits = binance.BUDGET, binance.LIMITS
    assert budget.burst + budget.per_minute * 5 <= 300  # connection attempts in any 5 minutes
    assert limits.messages_per_second <= 5
    assert limits.max_age is not None and 22 * 3600 <= limits.max_age < 24 * 3600
    assert limits.stall_after == 30
