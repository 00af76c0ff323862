"""Canonical records that flow through the pipeline.

``SourceQuote``: one coin as one source reported it, parsed but not yet validated.
``CoinSnapshot``: the reconciled record for one coin and one cycle (consensus + confidence +
each source's own value). Snapshots travel on the bus as a JSON envelope with ``schema_version``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from cryptoviz.errors import MessageError

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
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
    currency: str  # vs currency, lower case ("usd")


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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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
        "coingecko_id": s.coingecko_id, "coinmarketcap_id": s.coinmarketcap_id,
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


def _str(d: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = d.get(name)
    if value is None:
        if required:
            raise MessageError(f"field {name!r} is missing")
        return None
    if not isinstance(value, str):
        raise MessageError(f"field {name!r}: expected a string, got {type(value).__name__}")
    return value


def snapshot_from_dict(d: dict[str, Any]) -> CoinSnapshot:
    """Build and validate a snapshot from its wire dict; raises ``MessageError`` naming the field."""
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
    coin_id = _str(d, "coin_id", required=True)
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
            source=_str(v, "source", required=True) or "",
            source_id=_str(v, "source_id", required=True) or "",
            price=sp, market_cap=_num(v, "market_cap"), volume_24h=_num(v, "volume_24h"),
            last_updated=_parse_dt(v.get("last_updated"), f"sources[{i}].last_updated"),
            used=bool(v.get("used", True)), dropped_reason=_str(v, "dropped_reason"),
        ))
    return CoinSnapshot(
        coin_id=coin_id, symbol=_str(d, "symbol", required=True) or "",
        name=_str(d, "name", required=True) or "", slug=_str(d, "slug"), rank=rank,
        price=price, market_cap=_num(d, "market_cap"), volume_24h=_num(d, "volume_24h"),
        change_1h=_num(d, "change_1h"), change_24h=_num(d, "change_24h"), change_7d=_num(d, "change_7d"),
        circulating_supply=_num(d, "circulating_supply"), total_supply=_num(d, "total_supply"),
        max_supply=_num(d, "max_supply"), confidence=confidence, observed_at=observed_at,
        currency=_str(d, "currency", required=True) or "",
        coingecko_id=_str(d, "coingecko_id"), coinmarketcap_id=_str(d, "coinmarketcap_id"),
        sources=tuple(sources),
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
