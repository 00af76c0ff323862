"""A reference implementation of the per-quote validation rules, for the tests to compare ``validate_quotes`` with.

Written to be read, not to be fast: the rules of ``cryptoviz.validate`` one after the other, in the order of
``REASONS``, sharing no code with the module (only the reason names). Returns the first broken rule as
(reason, field), or None when the quote is kept.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from cryptoviz import validate as v
from cryptoviz.models import SourceQuote

SKEW = 120.0  # seconds a source's clock may run ahead of ours


def posix(when: datetime) -> float:
    """Seconds since the epoch; a naive time is UTC."""
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def first_broken_rule(quote: SourceQuote, *, now: datetime, max_staleness: float,
                      tolerance: float) -> tuple[str, str] | None:
    price = quote.price
    if price is None:
        return v.PRICE_MISSING, "price"
    if math.isnan(price) or math.isinf(price):
        return v.PRICE_NOT_FINITE, "price"
    if not price > 0:
        return v.PRICE_NOT_POSITIVE, "price"

    # Non-negative amounts, in field order: first "is it a number", then "is it >= 0".
    amounts = [("market_cap", quote.market_cap, v.MARKET_CAP_NOT_FINITE, v.MARKET_CAP_NEGATIVE),
               ("volume_24h", quote.volume_24h, v.VOLUME_NOT_FINITE, v.VOLUME_NEGATIVE),
               ("circulating_supply", quote.circulating_supply, v.SUPPLY_NOT_FINITE, v.SUPPLY_NEGATIVE),
               ("total_supply", quote.total_supply, v.SUPPLY_NOT_FINITE, v.SUPPLY_NEGATIVE),
               ("max_supply", quote.max_supply, v.SUPPLY_NOT_FINITE, v.SUPPLY_NEGATIVE)]
    for name, value, not_finite, negative in amounts:
        if value is None:
            continue
        if math.isnan(value) or math.isinf(value):
            return not_finite, name
        if value < 0:
            return negative, name
    for name, value in (("change_1h", quote.change_1h), ("change_24h", quote.change_24h),
                        ("change_7d", quote.change_7d)):
        if value is not None and (math.isnan(value) or math.isinf(value)):
            return v.CHANGE_NOT_FINITE, name

    cap, supply = quote.market_cap, quote.circulating_supply
    if cap is not None and supply is not None and cap > 0 and supply > 0:
        implied = price * supply
        if math.isinf(implied) or abs(cap - implied) > tolerance * max(cap, implied):
            return v.MARKET_CAP_MISMATCH, "market_cap"

    if quote.last_updated is not None:
        field, when = "last_updated", quote.last_updated
    else:
        field, when = "collected_at", quote.collected_at
    age = posix(now) - posix(when)
    if age < -SKEW:
        return v.SOURCE_TIME_IN_FUTURE, field
    if age > max_staleness:
        return v.STALE, field
    return None
