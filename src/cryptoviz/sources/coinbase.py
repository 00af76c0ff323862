"""Coinbase Advanced Trade's public websocket (``ticker_batch`` and ``heartbeats``): subscribe, classify, parse.

The feed connects to ``wss://advanced-trade-ws.coinbase.com`` and must subscribe within 5 seconds, one
message per channel::

    {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "ticker_batch"}
    {"type": "subscribe", "channel": "heartbeats"}

Every message is an envelope numbered by ``sequence_num`` (one count for the whole connection: a jump
means messages were dropped, counted as a gap; a lower number is late and ignored)::

    {"channel": "ticker_batch", "client_id": "", "timestamp": "2023-02-09T20:30:37.167359596Z",
     "sequence_num": 0, "events": [{"type": "snapshot", "tickers": [
        {"type": "ticker", "product_id": "BTC-USD", "price": "21932.98", "volume_24_h": "16038.28770938",
         "low_24_h": "21835.29", "high_24_h": "23011.18", "low_52_w": "15460", "high_52_w": "48240",
         "price_percent_chg_24_h": "-4.15775596190603"}]}]}

``ticker_batch`` sends each product's latest ticker every 5 seconds when it changed (``ticker``, the same
shape plus best bid and ask, on every match; both are read). ``volume_24_h`` is in the base asset; the
quote volume is that times the price. Heartbeats come every second (``"channel": "heartbeats"``, with a
``heartbeat_counter``) and keep the subscriptions open (most channels close after 60-90 s without an
update); ``"channel": "subscriptions"`` confirms what is subscribed; ``{"type": "error", "message": ...}``
reports a refused request. Numbers are decimal strings; the time is the envelope's ``timestamp``.

Products are ``BASE-QUOTE``. ``-USDC`` products other than ``USDT-USDC`` answer with the ``-USD`` data, so the
default list (``coinbase_products`` unset) holds the largest coins against USD and a few against USDT.
Documented limits: 8 connections a second per IP (the budget: a burst of 4 and 4 a second) and 8
unauthenticated messages a second per IP (the feed sends at most 4 a second, 2 in all).
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

SOURCE = "coinbase"
CHANNEL = "ticker_batch"
TICKER_CHANNELS = ("ticker_batch", "ticker")
HEARTBEATS = "heartbeats"
# The ~40 largest coins Coinbase lists against USD, and the USDT products it lists.
DEFAULT_PRODUCTS: tuple[str, ...] = (
    "BTC-USD", "ETH-USD", "USDT-USD", "XRP-USD", "SOL-USD", "DOGE-USD", "ADA-USD", "LINK-USD", "AVAX-USD",
    "XLM-USD", "SUI-USD", "BCH-USD", "HBAR-USD", "LTC-USD", "DOT-USD", "SHIB-USD", "UNI-USD", "PEPE-USD",
    "AAVE-USD", "APT-USD", "NEAR-USD", "ICP-USD", "ETC-USD", "POL-USD", "RENDER-USD", "ATOM-USD", "FIL-USD",
    "ARB-USD", "OP-USD", "INJ-USD", "TIA-USD", "IMX-USD", "GRT-USD", "STX-USD", "ALGO-USD", "XTZ-USD",
    "BONK-USD", "LDO-USD", "CRV-USD", "QNT-USD", "SAND-USD", "MANA-USD", "ZEC-USD",
    "BTC-USDT", "ETH-USDT", "SOL-USDT", "USDT-USDC",
)
# 8 connections a second per IP: a burst of 4 and 4 a second stay within it in any second.
BUDGET = RequestBudget(per_minute=240, burst=4)
LIMITS = feed.FeedLimits(stall_after=30.0, messages_per_second=4.0, subscribe_within=5.0)
COINBASE_IDS = IdNamespace(SOURCE)


def products(settings: Settings) -> list[str]:
    """The products to subscribe to: ``coinbase_products``, else :data:`DEFAULT_PRODUCTS`."""
    return feed.pair_list(settings.coinbase_products, DEFAULT_PRODUCTS, "-", SOURCE)


def subscribe_messages(product_ids: list[str], channel: str = CHANNEL) -> list[str]:
    """The subscription messages: the ticker channel for ``product_ids``, then the heartbeats."""
    return [orjson.dumps({"type": "subscribe", "product_ids": product_ids, "channel": channel}).decode(),
            orjson.dumps({"type": "subscribe", "channel": HEARTBEATS}).decode()]


def _error_detail(doc: dict[str, Any]) -> str:
    """What an error message says: its ``message``, and its ``reason`` when there is one."""
    said, reason = brief_text(doc.get("message", "error")), doc.get("reason")
    return f"{said} ({brief_text(reason)})" if reason else said


def classify(body: bytes) -> feed.Classified:
    """Data (tickers, or anything unreadable), heartbeats, control (subscriptions, status) or an error;
    with the envelope's ``sequence_num``."""
    doc = feed.decode(body)
    if doc is feed.NOT_JSON or not isinstance(doc, dict):
        return feed.DATA
    if doc.get("type") == "error":
        return feed.Classified(feed.FrameKind.ERROR, _error_detail(doc))
    sequence = feed.sequence_number(doc.get("sequence_num"))
    channel = doc.get("channel")
    if channel == HEARTBEATS:
        return feed.Classified(feed.FrameKind.HEARTBEAT, sequence=sequence)
    if channel in TICKER_CHANNELS or channel is None:
        return feed.Classified(feed.FrameKind.DATA, sequence=sequence)
    if sequence is None:
        return feed.CONTROL
    return feed.Classified(feed.FrameKind.CONTROL, brief_text(channel), sequence)


def _ticker(item: Any, at: datetime | None, collected_at: datetime) -> SourceQuote:
    if not isinstance(item, dict):
        raise ItemRejected("item", "not_an_object", f"got {type(item).__name__}")
    product = feed.read_pair(item, "product_id")
    base, quote_asset = feed.split_pair(product, "-", "product_id")
    price = feed.read_decimal(item, "price", required=True)
    base_volume = feed.read_decimal(item, "volume_24_h")
    return feed.pair_quote(SOURCE, feed.PairTicker(
        pair=product, base=base, quote=quote_asset, price=price,
        quote_volume=base_volume * price if base_volume is not None and price is not None else None,
        base_volume=base_volume, change_24h=feed.read_decimal(item, "price_percent_chg_24_h"), last_updated=at,
    ), collected_at)


def _tickers(doc: dict[str, Any]) -> list[Any]:
    """Every ticker of every event of a ticker envelope; an event that is not an object with a ``tickers``
    list counts as one broken item."""
    events = doc.get("events")
    if not isinstance(events, list):
        raise ParseError(f"{SOURCE}: a {brief_text(doc.get('channel'), 40)} message without an events list")
    items: list[Any] = []
    for event in events:
        tickers = event.get("tickers") if isinstance(event, dict) else None
        if isinstance(tickers, list):
            items.extend(tickers)
        else:
            items.append(event)
    return items


def parse_frame(body: bytes, collected_at: datetime, currency: str = "usd") -> ParseResult:
    """The quotes of one message (``currency`` is not used: each product is quoted in its own quote asset).

    Heartbeats, subscriptions and other channels hold no quote; an error message raises
    ``TransientSourceError``; anything but a JSON object raises ``ParseError``.
    """
    doc = load_json(body, SOURCE)
    if not isinstance(doc, dict):
        raise ParseError(f"{SOURCE}: expected a message object, got {type(doc).__name__}")
    if doc.get("type") == "error":
        raise TransientSourceError(SOURCE, f"the exchange sent an error: {_error_detail(doc)}")
    if doc.get("channel") not in TICKER_CHANNELS:
        return ParseResult()
    try:
        at = read_timestamp(doc, "timestamp")
    except ItemRejected as bad:
        raise ParseError(f"{SOURCE}: unreadable message timestamp ({bad.detail})") from None
    return collect(_tickers(doc), SOURCE, lambda item: _ticker(item, at, collected_at), feed.pair_label("product_id"))


def subscriptions(settings: Settings) -> list[str]:
    return subscribe_messages(products(settings))


EXCHANGE = feed.Exchange(SOURCE, BUDGET, LIMITS, url=lambda settings: settings.coinbase_ws_url, classify=classify,
                    parse=parse_frame, subscriptions=subscriptions)

SPEC = SourceSpec(
    name=SOURCE, title="Coinbase Advanced Trade ticker_batch (websocket)", kind="push", namespace=COINBASE_IDS,
    trust=0.9, parse=parse_frame, build=EXCHANGE.build, budget=BUDGET,
    settings=("coinbase_ws_url", "coinbase_products"), default=lambda settings: True, extension="json", pairs=True,
)
