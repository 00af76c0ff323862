"""Kraken's public websocket v2 ``ticker`` channel: subscribe, classify and parse.

The feed connects to ``wss://ws.kraken.com/v2`` and subscribes to the ticker of its pairs (v2 names them
``BTC/USD``; v1's ``XBT`` and ``XDG`` are read as ``BTC`` and ``DOGE``)::

    {"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD", "ETH/USD"]}, "req_id": 1}

Kraken acknowledges each pair (``{"method": "subscribe", "result": {"channel": "ticker", "symbol":
"BTC/USD", ...}, "success": true, ...}``) or refuses it (``"success": false, "error": "Currency pair not
supported ..."``), sends a snapshot, then an update on every trade::

    {"channel": "ticker", "type": "update", "data": [{"symbol": "BTC/USD", "bid": 67000.1, "bid_qty": 0.5,
     "ask": 67000.2, "ask_qty": 1.2, "last": 67000.1, "volume": 1234.56, "vwap": 66800.0, "low": 66000.0,
     "high": 67500.0, "change": 1000.1, "change_pct": 1.51, "timestamp": "2025-01-20T10:00:00.123456Z"}]}

Numbers are JSON numbers; ``volume`` is the 24 h volume in the base asset (the quote volume is that times
``vwap``); ``timestamp`` (RFC 3339) is in newer messages only. ``{"channel": "heartbeat"}`` comes about
once a second when nothing else does; ``{"channel": "status", ...}`` reports the system's state.

Limits: the message rate is not a fixed number (an ``Exceeded msg rate`` error says it was too fast): the
feed sends its subscriptions 50 pairs a message, one message a second. Kraken's guidance on connections is
about 150 attempts per rolling 10 minutes per IP (the budget: a burst of 50 and 10 a minute).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, TransientSourceError
from cryptoviz.models import ParseResult, SourceQuote
from cryptoviz.sources import feed
from cryptoviz.sources.base import brief_text
from cryptoviz.sources.fields import ItemRejected, collect, load_json, read_timestamp
from cryptoviz.sources.spec import IdNamespace, RequestBudget, SourceSpec

SOURCE = "kraken"
CHANNEL = "ticker"
PAIRS_PER_MESSAGE = 50
# The ~40 largest coins Kraken lists against USD, and its main USDT and USDC pairs.
DEFAULT_PAIRS: tuple[str, ...] = (
    "BTC/USD", "ETH/USD", "USDT/USD", "XRP/USD", "SOL/USD", "USDC/USD", "DOGE/USD", "TRX/USD", "ADA/USD",
    "LINK/USD", "AVAX/USD", "XLM/USD", "SUI/USD", "BCH/USD", "HBAR/USD", "LTC/USD", "DOT/USD", "SHIB/USD",
    "TON/USD", "UNI/USD", "PEPE/USD", "AAVE/USD", "APT/USD", "NEAR/USD", "ICP/USD", "ETC/USD", "POL/USD",
    "RENDER/USD", "ATOM/USD", "FIL/USD", "ARB/USD", "OP/USD", "INJ/USD", "TIA/USD", "XMR/USD", "ALGO/USD",
    "XTZ/USD", "BONK/USD", "WIF/USD", "LDO/USD",
    "BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BTC/USDC", "ETH/USDC", "SOL/USDC", "USDC/USDT",
)
# About 150 connection attempts per 10 minutes per IP: a burst of 50 and 10 a minute stay within it.
BUDGET = RequestBudget(per_minute=10, burst=50)
LIMITS = feed.FeedLimits(stall_after=30.0, messages_per_second=1.0)
KRAKEN_IDS = IdNamespace(SOURCE)


def pairs(settings: Settings) -> list[str]:
    """The pairs to subscribe to: ``kraken_pairs``, else :data:`DEFAULT_PAIRS` (``XBT/USD`` -> ``BTC/USD``)."""
    return feed.pair_list(settings.kraken_pairs, DEFAULT_PAIRS, "/", SOURCE)


def subscribe_messages(symbols: list[str]) -> list[str]:
    """One subscription message per :data:`PAIRS_PER_MESSAGE` pairs, numbered by ``req_id``."""
    chunks = [symbols[at:at + PAIRS_PER_MESSAGE] for at in range(0, len(symbols), PAIRS_PER_MESSAGE)]
    return [orjson.dumps({"method": "subscribe", "params": {"channel": CHANNEL, "symbol": chunk},
                          "req_id": number}).decode() for number, chunk in enumerate(chunks, start=1)]


def classify(body: bytes) -> feed.Classified:
    """Data (tickers, or anything unreadable), heartbeats, control frames (acknowledgements, status) or an
    error (a refused request, or an ``error`` frame)."""
    doc = feed.decode(body)
    if doc is feed.NOT_JSON or not isinstance(doc, dict):
        return feed.DATA
    channel = doc.get("channel")
    if channel == "heartbeat":
        return feed.HEARTBEAT
    if channel == CHANNEL:
        return feed.DATA
    if doc.get("success") is False or ("error" in doc and channel is None):
        said = brief_text(doc.get("error", "request refused"))
        symbol = brief_text(doc["symbol"]) if doc.get("symbol") else ""
        return feed.Classified(feed.FrameKind.ERROR, f"{said} ({symbol})" if symbol and symbol not in said else said)
    return feed.CONTROL


def _ticker(item: Any, collected_at: datetime) -> SourceQuote:
    if not isinstance(item, dict):
        raise ItemRejected("item", "not_an_object", f"got {type(item).__name__}")
    symbol = feed.read_pair(item, "symbol")
    base, quote_asset = feed.split_pair(symbol, "/", "symbol")
    base_volume = feed.read_decimal(item, "volume")
    vwap = feed.read_decimal(item, "vwap")
    return feed.pair_quote(SOURCE, feed.PairTicker(
        pair=symbol, base=base, quote=quote_asset, price=feed.read_decimal(item, "last", required=True),
        quote_volume=base_volume * vwap if base_volume is not None and vwap is not None else None,
        base_volume=base_volume, change_24h=feed.read_decimal(item, "change_pct"),
        last_updated=read_timestamp(item, "timestamp"),
    ), collected_at)


def parse_frame(body: bytes, collected_at: datetime, currency: str = "usd") -> ParseResult:
    """The quotes of one message (``currency`` is not used: each pair is quoted in its own quote asset).

    Heartbeats, status messages and acknowledgements hold no quote; a refused request raises
    ``TransientSourceError``; a ticker message without a data list, or anything but a JSON object, raises
    ``ParseError``.
    """
    doc = load_json(body, SOURCE)
    if not isinstance(doc, dict):
        raise ParseError(f"{SOURCE}: expected a message object, got {type(doc).__name__}")
    if doc.get("channel") != CHANNEL:
        if doc.get("success") is False or ("error" in doc and doc.get("channel") is None):
            raise TransientSourceError(SOURCE, f"the exchange refused a request: {brief_text(doc.get('error'))}")
        return ParseResult()
    data = doc.get("data")
    if not isinstance(data, list):
        raise ParseError(f"{SOURCE}: a ticker message without a data list (got {type(data).__name__})")
    return collect(data, SOURCE, lambda item: _ticker(item, collected_at), feed.pair_label("symbol"))


def subscriptions(settings: Settings) -> list[str]:
    return subscribe_messages(pairs(settings))


EXCHANGE = feed.Exchange(SOURCE, BUDGET, LIMITS, url=lambda settings: settings.kraken_ws_url, classify=classify,
                    parse=parse_frame, subscriptions=subscriptions)

SPEC = SourceSpec(
    name=SOURCE, title="Kraken ticker (websocket v2)", kind="push", namespace=KRAKEN_IDS, trust=0.85,
    parse=parse_frame, build=EXCHANGE.build, budget=BUDGET, settings=("kraken_ws_url", "kraken_pairs"),
    default=lambda settings: True, extension="json", pairs=True,
)
