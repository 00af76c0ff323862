"""Per-quote validation: keep the plausible quotes, reject the others with a named reason.

Each rule has a stable reason code (the module constants below); a rejected quote yields exactly one
``Rejection`` (the first rule it fails, in the order listed in ``REASONS``). ``Rejection.coin`` is the
source's own coin id and ``Rejection.field`` the offending field.

Comparisons are relative (no absolute epsilons), so a consistent price of 1e-12 or a market cap of
1e13 passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

from cryptoviz.models import Rejection, SourceQuote

PRICE_MISSING = "price_missing"
PRICE_NOT_FINITE = "price_not_finite"
PRICE_NOT_POSITIVE = "price_not_positive"
MARKET_CAP_NOT_FINITE = "market_cap_not_finite"
MARKET_CAP_NEGATIVE = "market_cap_negative"
VOLUME_NOT_FINITE = "volume_not_finite"
VOLUME_NEGATIVE = "volume_negative"
SUPPLY_NOT_FINITE = "supply_not_finite"
SUPPLY_NEGATIVE = "supply_negative"
CHANGE_NOT_FINITE = "change_not_finite"
MARKET_CAP_MISMATCH = "market_cap_mismatch"
SOURCE_TIME_IN_FUTURE = "source_time_in_future"
STALE = "stale"

REASONS = (
    PRICE_MISSING, PRICE_NOT_FINITE, PRICE_NOT_POSITIVE,
    MARKET_CAP_NOT_FINITE, MARKET_CAP_NEGATIVE, VOLUME_NOT_FINITE, VOLUME_NEGATIVE,
    SUPPLY_NOT_FINITE, SUPPLY_NEGATIVE, CHANGE_NOT_FINITE,
    MARKET_CAP_MISMATCH, SOURCE_TIME_IN_FUTURE, STALE,
)

# Source clocks drift a little; a timestamp this far ahead of ours is still accepted.
CLOCK_SKEW_ALLOWANCE = 120.0  # seconds

_SUPPLY_FIELDS = ("circulating_supply", "total_supply", "max_supply")
_CHANGE_FIELDS = ("change_1h", "change_24h", "change_7d")


def quote_time(quote: SourceQuote) -> datetime:
    """The time a quote's value refers to: the source's own time, else when we received it."""
    return quote.last_updated if quote.last_updated is not None else quote.collected_at


def timestamp(value: datetime) -> float:
    """POSIX seconds; a naive datetime is taken as UTC (never as local time)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def validate_quotes(
    quotes: Iterable[SourceQuote],
    *,
    now: datetime,
    max_staleness: float,
    market_cap_tolerance: float,
) -> tuple[list[SourceQuote], list[Rejection]]:
    """Split ``quotes`` into (kept, rejected), preserving the input order in both lists.

    ``max_staleness`` is in seconds; ``market_cap_tolerance`` is the largest accepted relative
    difference between ``market_cap`` and ``price * circulating_supply``.
    """
    now_ts = timestamp(now)
    kept: list[SourceQuote] = []
    rejected: list[Rejection] = []
    keep = kept.append
    inf = math.inf
    skew = CLOCK_SKEW_ALLOWANCE
    tolerance = market_cap_tolerance
    for quote in quotes:
        # Fast path: one pass of plain comparisons that holds exactly when _check finds nothing (a NaN
        # fails every comparison); any doubt goes to _check, which names the first broken rule.
        price = quote.price
        cap = quote.market_cap
        volume = quote.volume_24h
        circulating = quote.circulating_supply
        total = quote.total_supply
        maximum = quote.max_supply
        change_1h = quote.change_1h
        change_24h = quote.change_24h
        change_7d = quote.change_7d
        if (type(price) is float and 0.0 < price < inf
                and (cap is None or (type(cap) is float and 0.0 <= cap < inf))
                and (volume is None or (type(volume) is float and 0.0 <= volume < inf))
                and (circulating is None or (type(circulating) is float and 0.0 <= circulating < inf))
                and (total is None or (type(total) is float and 0.0 <= total < inf))
                and (maximum is None or (type(maximum) is float and 0.0 <= maximum < inf))
                and (change_1h is None or (type(change_1h) is float and -inf < change_1h < inf))
                and (change_24h is None or (type(change_24h) is float and -inf < change_24h < inf))
                and (change_7d is None or (type(change_7d) is float and -inf < change_7d < inf))):
            if cap is not None and circulating is not None and cap > 0 and circulating > 0:
                implied = price * circulating
                mismatch = not implied < inf or abs(cap - implied) > tolerance * (cap if cap > implied else implied)
            else:
                mismatch = False
            if not mismatch:
                when = quote.last_updated
                if when is None:
                    when = quote.collected_at
                age = now_ts - (when.timestamp() if when.tzinfo is not None else timestamp(when))
                if not (-age > skew or age > max_staleness):
                    keep(quote)
                    continue
        problem = _check(quote, now_ts, max_staleness, tolerance)
        if problem is None:
            keep(quote)
        else:
            rejected.append(problem)
    return kept, rejected


def _reject(quote: SourceQuote, field: str, reason: str, detail: str) -> Rejection:
    return Rejection(source=quote.source, coin=quote.source_id, field=field, reason=reason, detail=detail)


def _check(quote: SourceQuote, now_ts: float, max_staleness: float, tolerance: float) -> Rejection | None:
    isfinite = math.isfinite
    price = quote.price
    if price is None:
        return _reject(quote, "price", PRICE_MISSING, "no price")
    if not isfinite(price):
        return _reject(quote, "price", PRICE_NOT_FINITE, f"price {price!r} is not a finite number")
    if price <= 0:
        return _reject(quote, "price", PRICE_NOT_POSITIVE, f"price {price!r} is not > 0")

    cap = quote.market_cap
    if cap is not None:
        if not isfinite(cap):
            return _reject(quote, "market_cap", MARKET_CAP_NOT_FINITE,
                           f"market_cap {cap!r} is not a finite number")
        if cap < 0:
            return _reject(quote, "market_cap", MARKET_CAP_NEGATIVE, f"market_cap {cap!r} is < 0")
    volume = quote.volume_24h
    if volume is not None:
        if not isfinite(volume):
            return _reject(quote, "volume_24h", VOLUME_NOT_FINITE,
                           f"volume_24h {volume!r} is not a finite number")
        if volume < 0:
            return _reject(quote, "volume_24h", VOLUME_NEGATIVE, f"volume_24h {volume!r} is < 0")
    for name, value in zip(_SUPPLY_FIELDS, (quote.circulating_supply, quote.total_supply, quote.max_supply),
                           strict=True):
        if value is not None:
            if not isfinite(value):
                return _reject(quote, name, SUPPLY_NOT_FINITE, f"{name} {value!r} is not a finite number")
            if value < 0:
                return _reject(quote, name, SUPPLY_NEGATIVE, f"{name} {value!r} is < 0")
    for name, value in zip(_CHANGE_FIELDS, (quote.change_1h, quote.change_24h, quote.change_7d), strict=True):
        if value is not None and not isfinite(value):
            return _reject(quote, name, CHANGE_NOT_FINITE, f"{name} {value!r} is not a finite number")

    circulating = quote.circulating_supply
    if cap is not None and circulating is not None and cap > 0 and circulating > 0:
        implied = price * circulating
        larger = cap if cap > implied else implied
        # implied may overflow to inf for absurd inputs: that is a mismatch too.
        if not isfinite(implied) or abs(cap - implied) > tolerance * larger:
            relative = abs(cap - implied) / larger if isfinite(implied) else math.inf
            return _reject(
                quote, "market_cap", MARKET_CAP_MISMATCH,
                f"market_cap {cap!r} vs price * circulating_supply {implied!r} "
                f"(relative difference {relative:.4g} > tolerance {tolerance:g})",
            )

    field = "last_updated" if quote.last_updated is not None else "collected_at"
    when = quote_time(quote)
    age = now_ts - timestamp(when)
    if -age > CLOCK_SKEW_ALLOWANCE:
        return _reject(quote, field, SOURCE_TIME_IN_FUTURE,
                       f"{field} {when.isoformat()} is {-age:.0f} s ahead of now "
                       f"(allowance {CLOCK_SKEW_ALLOWANCE:g} s)")
    if age > max_staleness:
        return _reject(quote, field, STALE,
                       f"{field} {when.isoformat()} is {age:.0f} s old (max_staleness {max_staleness:g} s)")
    return None
