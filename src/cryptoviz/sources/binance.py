"""Binance's all-market mini tickers (``!miniTicker@arr``, public websocket): subscribe, classify and parse.

The feed connects to the combined-stream form, ``<base>/stream?streams=!miniTicker@arr`` (base
``wss://stream.binance.com:9443``), which needs no subscription message; every second (when something
changed) it sends the 24 h rolling mini ticker of every symbol that changed, e.g. (the documentation's
payload)::

    {"stream": "!miniTicker@arr",
     "data": [{"e": "24hrMiniTicker", "E": 1672515782136, "s": "BNBBTC", "c": "0.0025", "o": "0.0010",
               "h": "0.0025", "l": "0.0010", "v": "10000", "q": "18"}]}

``c`` is the last price, ``o`` the price 24 h ago, ``v`` the 24 h volume in the base asset and ``q`` in the
quote asset, ``E`` the event time (milliseconds). The raw form (``/ws/!miniTicker@arr``) sends the array
alone; both are read. A symbol is split into base and quote asset by the quote assets Binance lists,
longest first (``BTCUSDT`` is BTC in USDT, ``USDCUSDT`` USDC in USDT); a symbol no quote asset ends is
rejected (``unknown_quote``).

Other frames: ``{"result": null, "id": 1}`` acknowledges a request; ``{"code": 2, "msg": "Invalid request:
..."}`` (or ``{"error": {...}, "id": 1}``) is an error; ``{"e": "serverShutdown", "E": ...}`` (combined:
``{"stream": "!serverShutdown", "data": {...}}``) announces that the server closes soon: reconnect.

Documented limits: a connection lives at most 24 h (the feed replaces it after 23 h); the server pings
every 20 s and the client must answer (the websocket library does); the client may send at most 5 messages
a second (pings, pongs and requests; this feed sends none but pongs) and listen to at most 1024 streams on
one connection; an IP may open at most 300 connections every 5 minutes (the budget: a burst of 50 and 50 a
minute, at most 300 in any 5 minutes). ``binance.com`` refuses some countries with HTTP 451: the feed is
then switched off with one warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, TransientSourceError
from cryptoviz.models import ParseResult, SourceQuote
from cryptoviz.sources import feed
from cryptoviz.sources.base import brief_text
from cryptoviz.sources.fields import ItemRejected, collect, load_json
from cryptoviz.sources.spec import IdNamespace, RequestBudget, SourceSpec

SOURCE = "binance"
STREAM = "!miniTicker@arr"
MAX_STREAMS = 1024
TICKER_EVENTS = ("24hrMiniTicker", "24hrTicker")
SHUTDOWN_EVENT = "serverShutdown"
# Quote assets Binance (and Binance.US: USD) lists, longest first so that BUSD wins over USD.
QUOTE_ASSETS: tuple[str, ...] = tuple(sorted((
    "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "USD1", "AEUR", "EURI", "USD", "UST", "PAX", "VAI",
    "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE",
    "EUR", "TRY", "BRL", "GBP", "AUD", "JPY", "ZAR", "UAH", "RUB", "PLN", "RON", "ARS", "MXN", "COP", "CZK",
    "IDR", "BIDR", "IDRT", "NGN", "BKRW",
), key=lambda code: (-len(code), code)))
# 300 connection attempts per 5 minutes per IP: a burst of 50 and 50 a minute stay within it in any window.
BUDGET = RequestBudget(per_minute=50, burst=50)
LIMITS = feed.FeedLimits(stall_after=30.0, max_age=23 * 3600.0, messages_per_second=4.0)
BINANCE_IDS = IdNamespace(SOURCE)


def stream_url(base: str, streams: Sequence[str] = (STREAM,)) -> str:
    """The combined-stream URL of ``streams`` on ``base`` (a trailing ``/ws`` or ``/stream`` is dropped)."""
    if not 1 <= len(streams) <= MAX_STREAMS:
        raise ValueError(f"a Binance connection listens to 1 to {MAX_STREAMS} streams, got {len(streams)}")
    root = base.rstrip("/").removesuffix("/ws").removesuffix("/stream").rstrip("/")
    return f"{root}/stream?streams={quote('/'.join(streams), safe='!@/')}"


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> ``("BTC", "USDT")``; raises ``ItemRejected`` (``unknown_quote``) when no listed quote
    asset ends the symbol with something left before it."""
    upper = symbol.upper()
    for code in QUOTE_ASSETS:
        if upper.endswith(code) and len(upper) > len(code):
            return feed.asset(upper[:-len(code)], "s"), code
    raise ItemRejected("s", "unknown_quote", f"no known quote asset ends {symbol!r:.40}")


def _event(doc: Any) -> Any:
    """The payload of a combined-stream frame (``{"stream": ..., "data": ...}``), else the frame."""
    if isinstance(doc, dict) and "stream" in doc and "data" in doc:
        return doc["data"]
    return doc


def _error_text(doc: dict[str, Any]) -> str | None:
    """What an error frame says (``{"code": 2, "msg": ...}`` or ``{"error": {...}, "id": 1}``), else None."""
    error = doc.get("error")
    if isinstance(error, dict):
        doc = error
    elif error is not None:
        return brief_text(error)
    if "code" in doc and "msg" in doc:
        return f"error {brief_text(doc['code'])}: {brief_text(doc['msg'])}"
    return None


def classify(body: bytes) -> feed.Classified:
    """What a frame is: data (tickers, or anything unreadable: the parser says what), a control frame (an
    acknowledgement), an error, or a shutdown notice."""
    payload = _event(feed.decode(body))
    if payload is feed.NOT_JSON or isinstance(payload, list) or not isinstance(payload, dict):
        return feed.DATA
    if payload.get("e") == SHUTDOWN_EVENT:
        return feed.Classified(feed.FrameKind.RECONNECT, "serverShutdown")
    error = _error_text(payload)
    if error is not None:
        return feed.Classified(feed.FrameKind.ERROR, error)
    if "result" in payload and "id" in payload:
        return feed.CONTROL
    return feed.DATA


def _ticker(item: Any, collected_at: datetime) -> SourceQuote:
    if not isinstance(item, dict):
        raise ItemRejected("item", "not_an_object", f"got {type(item).__name__}")
    event = item.get("e")
    if event is not None and event not in TICKER_EVENTS:
        raise ItemRejected("e", "unexpected_event", f"got {brief_text(event, 40)!r}")
    symbol = feed.read_pair(item, "s")
    base, quote_asset = split_symbol(symbol)
    price = feed.read_decimal(item, "c", required=True)
    opened = feed.read_decimal(item, "o")
    change = (price / opened - 1.0) * 100.0 if price is not None and opened else None
    return feed.pair_quote(SOURCE, feed.PairTicker(
        pair=symbol, base=base, quote=quote_asset, price=price, quote_volume=feed.read_decimal(item, "q"),
        base_volume=feed.read_decimal(item, "v"), change_24h=change, last_updated=feed.read_epoch_ms(item, "E"),
    ), collected_at)


def parse_frame(body: bytes, collected_at: datetime, currency: str = "usd") -> ParseResult:
    """The quotes of one frame (``currency`` is not used: each pair is quoted in its own quote asset).

    Acknowledgements and shutdown notices hold no quote; an error frame raises ``TransientSourceError``;
    a frame that is neither a ticker array nor one of those raises ``ParseError``.
    """
    payload = _event(load_json(body, SOURCE))
    if isinstance(payload, dict):
        error = _error_text(payload)
        if error is not None:
            raise TransientSourceError(SOURCE, f"the exchange sent an error: {error}")
        if payload.get("e") == SHUTDOWN_EVENT or ("result" in payload and "id" in payload):
            return ParseResult()
        if payload.get("e") in TICKER_EVENTS:  # a single-symbol stream (<symbol>@miniTicker)
            payload = [payload]
    if not isinstance(payload, list):
        raise ParseError(f"{SOURCE}: expected an array of mini tickers, got {type(payload).__name__}")
    return collect(payload, SOURCE, lambda item: _ticker(item, collected_at), feed.pair_label("s"))


def feed_url(settings: Settings) -> str:
    return stream_url(settings.binance_ws_url)


EXCHANGE = feed.Exchange(SOURCE, BUDGET, LIMITS, url=feed_url, classify=classify, parse=parse_frame)

SPEC = SourceSpec(
    name=SOURCE, title="Binance all-market mini tickers (websocket !miniTicker@arr)", kind="push",
    namespace=BINANCE_IDS, trust=0.85, parse=parse_frame, build=EXCHANGE.build, budget=BUDGET,
    settings=("binance_ws_url",), default=lambda settings: True, extension="json", pairs=True,
)
