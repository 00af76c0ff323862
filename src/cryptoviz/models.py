"""Canonical records that flow through the pipeline.

``SourceQuote``: one coin as one source reported it, parsed but not yet validated.
``CoinSnapshot``: the reconciled record for one coin and one cycle (consensus + confidence +
each source's own value). Snapshots travel on the bus as a JSON envelope with ``schema_version``.

The records built in bulk (``SourceQuote``, ``SourceValue``, ``CoinSnapshot``) are plain slots dataclasses,
hashable by value (``unsafe_hash``) but not frozen: a frozen dataclass sets every field through
``object.__setattr__``, which made building them a large share of reconciling and decoding. Treat them as
immutable all the same (``dataclasses.replace`` makes a changed copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from cryptoviz.errors import MessageError

SCHEMA_VERSION = 1


@dataclass(slots=True, unsafe_hash=True)
class SourceQuote:
    source: str  # e.g. "coingecko", "coinmarketcap", "coingecko-html"
    source_id: str  # the source's own coin id ("bitcoin" for CoinGecko, "1" for CoinMarketCap)
    symbol: str
    name: str
    slug: str | None
    rank: int | None
    price: float | None
    market_cap: float | None
    volume_24h: float | None
    change_1h: float | None
    change_24h: float | None
    change_7d: float | None
    circulating_supply: float | None
    total_supply: float | None
    max_supply: float | None
    last_updated: datetime | None  # the source's own time for this value
    collected_at: datetime  # when CryptoViz received the body
    currency: str  # vs currency, lower case ("usd"); an exchange pair's quote asset ("usdt") until converted
    base_volume_24h: float | None = None  # exchanges: 24 h volume in the base asset (volume_24h: quote asset)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one item (or one quote) was not kept. ``reason`` is a stable, named code."""

    source: str
    coin: str
    field: str
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.source}: coin {self.coin!r}, field {self.field!r}: {self.reason}{tail}"


@dataclass(slots=True)
class ParseResult:
    quotes: list[SourceQuote] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # Page parsers: the extraction strategy that read the page ("next-data:cryptoCurrencyList", "table", ...)
    # and the ones tried before it, in order. Other parsers leave them empty.
    strategy: str | None = None
    strategies_tried: tuple[str, ...] = ()


@dataclass(slots=True, unsafe_hash=True)
class SourceValue:
    """One source's own reading of a coin, kept beside the consensus."""

    source: str
    source_id: str
    price: float
    market_cap: float | None
    volume_24h: float | None
    last_updated: datetime | None
    used: bool = True
    dropped_reason: str | None = None  # "stale", "outlier", "disagreement"


@dataclass(slots=True, unsafe_hash=True)
class CoinSnapshot:
    coin_id: str  # canonical id: the CoinGecko id when known, else the slug
    symbol: str
    name: str
    slug: str | None
    rank: int | None
    price: float
    market_cap: float | None
    volume_24h: float | None
    change_1h: float | None
    change_24h: float | None
    change_7d: float | None
    circulating_supply: float | None
    total_supply: float | None
    max_supply: float | None
    confidence: float
    observed_at: datetime
    currency: str
    coingecko_id: str | None = None
    coinmarketcap_id: str | None = None
    sources: tuple[SourceValue, ...] = ()
    # Whether this observation makes a history row (and its source-quote rows): something changed since
    # the coin's last one, or the heartbeat is due. The current value is updated either way.
    record: bool = True
    # A nominal 95 % interval around ``price`` from the sources' values and their own uncertainty (None:
    # not computed); ``unverified``: two sources disagree beyond tolerance and nothing settles which is
    # right; ``price_at``: when the newest price used was quoted at its source (the value's age).
    price_low: float | None = None
    price_high: float | None = None
    unverified: bool = False
    price_at: datetime | None = None

    @property
    def sources_used(self) -> tuple[str, ...]:
        return tuple(s.source for s in self.sources if s.used)


# --- wire format -------------------------------------------------------------------------------

_FLOAT_FIELDS = ("price", "market_cap", "volume_24h", "change_1h", "change_24h", "change_7d",
                 "circulating_supply", "total_supply", "max_supply", "confidence")


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse_dt(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(f"field {name!r}: expected an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MessageError(f"field {name!r}: {exc}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def snapshot_to_dict(s: CoinSnapshot) -> dict[str, Any]:
    return {
        "coin_id": s.coin_id, "symbol": s.symbol, "name": s.name, "slug": s.slug, "rank": s.rank,
        "price": s.price, "market_cap": s.market_cap, "volume_24h": s.volume_24h,
        "change_1h": s.change_1h, "change_24h": s.change_24h, "change_7d": s.change_7d,
        "circulating_supply": s.circulating_supply, "total_supply": s.total_supply,
        "max_supply": s.max_supply, "confidence": s.confidence,
        "observed_at": _dt(s.observed_at), "currency": s.currency,
        "coingecko_id": s.coingecko_id, "coinmarketcap_id": s.coinmarketcap_id, "record": s.record,
        "price_low": s.price_low, "price_high": s.price_high, "unverified": s.unverified,
        "price_at": _dt(s.price_at),
        "sources": [
            {"source": v.source, "source_id": v.source_id, "price": v.price,
             "market_cap": v.market_cap, "volume_24h": v.volume_24h,
             "last_updated": _dt(v.last_updated), "used": v.used,
             "dropped_reason": v.dropped_reason}
            for v in s.sources
        ],
    }


def encode_snapshot(s: CoinSnapshot) -> bytes:
    """The bus message value: ``{"schema_version": 1, "snapshot": {...}}``."""
    return orjson.dumps({"schema_version": SCHEMA_VERSION, "snapshot": snapshot_to_dict(s)})


def _num(d: dict[str, Any], name: str, *, required: bool = False) -> float | None:
    value = d.get(name)
    if value is None:
        if required:
            raise MessageError(f"field {name!r} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MessageError(f"field {name!r}: expected a number, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise MessageError(f"field {name!r}: not a finite number")
    return f


# The longest text each field may hold: the width of the column it is stored in. A longer one, or one
# holding a NUL (which PostgreSQL text cannot store), makes the message a dead letter here instead of a
# batch the database refuses again and again.
TEXT_LIMITS = {"coin_id": 200, "symbol": 64, "name": 200, "slug": 200, "coingecko_id": 200,
               "coinmarketcap_id": 64, "currency": 10}
SOURCE_TEXT_LIMITS = {"source": 40, "source_id": 200, "dropped_reason": 40}


def _text_ok(value: str | None, limit: int) -> bool:
    return value is None or (len(value) <= limit and "\x00" not in value)


def _str(d: dict[str, Any], name: str, *, required: bool = False, limit: int) -> str | None:
    value = d.get(name)
    if value is None:
        if required:
            raise MessageError(f"field {name!r} is missing")
        return None
    if not isinstance(value, str):
        raise MessageError(f"field {name!r}: expected a string, got {type(value).__name__}")
    if len(value) > limit:
        raise MessageError(f"field {name!r}: longer than {limit} characters ({len(value)})")
    if "\x00" in value:
        raise MessageError(f"field {name!r}: contains a NUL character")
    return value


def _bool(d: dict[str, Any], name: str, *, default: bool) -> bool:
    value = d.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise MessageError(f"field {name!r}: expected true or false, got {type(value).__name__}")
    return value


_INF = math.inf


def _finite_or_none(value: Any) -> bool:
    """``value`` is None or a finite float (``x - x`` is NaN for an infinity and for NaN)."""
    return value is None or (type(value) is float and value - value == 0.0)


def _dt_or_none(value: Any) -> tuple[bool, datetime | None]:
    """(ok, value) for an optional ISO-8601 string; not ok sends the caller to the checked path."""
    if value is None:
        return True, None
    if type(value) is not str:
        return False, None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False, None
    return True, (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC))


def _snapshot_fast(d: dict[str, Any]) -> CoinSnapshot | None:
    """The snapshot when every field is well-formed as ``encode_snapshot`` writes it, else None.

    Accepts exactly a subset of what :func:`_snapshot_checked` accepts and builds the same value; anything
    unusual (a missing or mistyped field, an integer where a float is expected...) returns None, and the
    checked path then converts it or raises the ``MessageError`` naming the field.
    """
    get = d.get
    price = get("price")
    if type(price) is not float or not 0.0 < price < _INF:
        return None
    market_cap = get("market_cap")
    volume = get("volume_24h")
    change_1h = get("change_1h")
    change_24h = get("change_24h")
    change_7d = get("change_7d")
    circulating = get("circulating_supply")
    total = get("total_supply")
    maximum = get("max_supply")
    if not (_finite_or_none(market_cap) and _finite_or_none(volume) and _finite_or_none(change_1h)
            and _finite_or_none(change_24h) and _finite_or_none(change_7d) and _finite_or_none(circulating)
            and _finite_or_none(total) and _finite_or_none(maximum)):
        return None
    if (market_cap is not None and market_cap < 0) or (volume is not None and volume < 0):
        return None
    confidence = get("confidence")
    if type(confidence) is not float or not 0.0 <= confidence <= 1.0:
        return None
    ok, observed_at = _dt_or_none(get("observed_at"))
    if not ok or observed_at is None:
        return None
    rank = get("rank")
    coin_id = get("coin_id")
    symbol = get("symbol")
    name = get("name")
    currency = get("currency")
    slug = get("slug")
    coingecko_id = get("coingecko_id")
    coinmarketcap_id = get("coinmarketcap_id")
    if ((rank is not None and type(rank) is not int) or type(coin_id) is not str or not coin_id
            or type(symbol) is not str or type(name) is not str or type(currency) is not str
            or (slug is not None and type(slug) is not str)
            or (coingecko_id is not None and type(coingecko_id) is not str)
            or (coinmarketcap_id is not None and type(coinmarketcap_id) is not str)):
        return None
    if not (_text_ok(coin_id, 200) and _text_ok(symbol, 64) and _text_ok(name, 200) and _text_ok(slug, 200)
            and _text_ok(coingecko_id, 200) and _text_ok(coinmarketcap_id, 64) and _text_ok(currency, 10)):
        return None
    raw_sources = get("sources") or []
    if type(raw_sources) is not list:
        return None
    sources = []
    for v in raw_sources:
        if type(v) is not dict:
            return None
        sget = v.get
        source_price = sget("price")
        source = sget("source")
        source_id = sget("source_id")
        source_cap = sget("market_cap")
        source_volume = sget("volume_24h")
        dropped = sget("dropped_reason")
        if (type(source_price) is not float or source_price - source_price != 0.0 or type(source) is not str
                or type(source_id) is not str or not _finite_or_none(source_cap)
                or not _finite_or_none(source_volume) or (dropped is not None and type(dropped) is not str)
                or not (_text_ok(source, 40) and _text_ok(source_id, 200) and _text_ok(dropped, 40))):
            return None
        ok, last_updated = _dt_or_none(sget("last_updated"))
        if not ok:
            return None
        sources.append(SourceValue(source, source_id, source_price, source_cap, source_volume, last_updated,
                                   bool(sget("used", True)), dropped))
    record = get("record", True)
    unverified = get("unverified", False)
    if type(record) is not bool or type(unverified) is not bool:
        return None
    price_low = get("price_low")
    price_high = get("price_high")
    if not (_finite_or_none(price_low) and _finite_or_none(price_high)):
        return None
    ok, price_at = _dt_or_none(get("price_at"))
    if not ok:
        return None
    return CoinSnapshot(coin_id, symbol, name, slug, rank, price, market_cap, volume, change_1h, change_24h,
                        change_7d, circulating, total, maximum, confidence, observed_at, currency, coingecko_id,
                        coinmarketcap_id, tuple(sources), record, price_low, price_high, unverified, price_at)


def snapshot_from_dict(d: dict[str, Any]) -> CoinSnapshot:
    """Build and validate a snapshot from its wire dict; raises ``MessageError`` naming the field."""
    fast = _snapshot_fast(d)
    return fast if fast is not None else _snapshot_checked(d)


def _snapshot_checked(d: dict[str, Any]) -> CoinSnapshot:
    """Every rule, one field at a time, in a fixed order: the first broken rule names the field."""
    price = _num(d, "price", required=True)
    assert price is not None
    if price <= 0:
        raise MessageError(f"field 'price': must be > 0, got {price!r}")
    for name in ("market_cap", "volume_24h"):
        v = _num(d, name)
        if v is not None and v < 0:
            raise MessageError(f"field {name!r}: must be >= 0, got {v!r}")
    confidence = _num(d, "confidence", required=True)
    assert confidence is not None
    if not 0.0 <= confidence <= 1.0:
        raise MessageError(f"field 'confidence': must be within [0, 1], got {confidence!r}")
    observed_at = _parse_dt(d.get("observed_at"), "observed_at")
    if observed_at is None:
        raise MessageError("field 'observed_at' is missing")
    rank = d.get("rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)):
        raise MessageError("field 'rank': expected an integer")
    coin_id = _str(d, "coin_id", required=True, limit=TEXT_LIMITS["coin_id"])
    if not coin_id:
        raise MessageError("field 'coin_id' is empty")
    raw_sources = d.get("sources") or []
    if not isinstance(raw_sources, list):
        raise MessageError("field 'sources': expected a list")
    sources = []
    for i, v in enumerate(raw_sources):
        if not isinstance(v, dict):
            raise MessageError(f"field 'sources[{i}]': expected an object")
        sp = _num(v, "price", required=True)
        assert sp is not None
        sources.append(SourceValue(
            source=_str(v, "source", required=True, limit=SOURCE_TEXT_LIMITS["source"]) or "",
            source_id=_str(v, "source_id", required=True, limit=SOURCE_TEXT_LIMITS["source_id"]) or "",
            price=sp, market_cap=_num(v, "market_cap"), volume_24h=_num(v, "volume_24h"),
            last_updated=_parse_dt(v.get("last_updated"), f"sources[{i}].last_updated"),
            used=bool(v.get("used", True)),
            dropped_reason=_str(v, "dropped_reason", limit=SOURCE_TEXT_LIMITS["dropped_reason"]),
        ))
    return CoinSnapshot(
        coin_id=coin_id, symbol=_str(d, "symbol", required=True, limit=TEXT_LIMITS["symbol"]) or "",
        name=_str(d, "name", required=True, limit=TEXT_LIMITS["name"]) or "",
        slug=_str(d, "slug", limit=TEXT_LIMITS["slug"]), rank=rank,
        price=price, market_cap=_num(d, "market_cap"), volume_24h=_num(d, "volume_24h"),
        change_1h=_num(d, "change_1h"), change_24h=_num(d, "change_24h"), change_7d=_num(d, "change_7d"),
        circulating_supply=_num(d, "circulating_supply"), total_supply=_num(d, "total_supply"),
        max_supply=_num(d, "max_supply"), confidence=confidence, observed_at=observed_at,
        currency=_str(d, "currency", required=True, limit=TEXT_LIMITS["currency"]) or "",
        coingecko_id=_str(d, "coingecko_id", limit=TEXT_LIMITS["coingecko_id"]),
        coinmarketcap_id=_str(d, "coinmarketcap_id", limit=TEXT_LIMITS["coinmarketcap_id"]),
        sources=tuple(sources), record=_bool(d, "record", default=True),
        price_low=_num(d, "price_low"), price_high=_num(d, "price_high"),
        unverified=_bool(d, "unverified", default=False), price_at=_parse_dt(d.get("price_at"), "price_at"),
    )


def decode_snapshot(value: bytes | str | None) -> CoinSnapshot:
    """Decode a bus message value; raises ``MessageError`` with the reason (for the DLQ)."""
    if value is None:
        raise MessageError("empty message value")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MessageError("message is not a JSON object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MessageError(f"unsupported schema_version {version!r} (this consumer reads {SCHEMA_VERSION})")
    body = doc.get("snapshot")
    if not isinstance(body, dict):
        raise MessageError("field 'snapshot' is missing or not an object")
    return snapshot_from_dict(body)
