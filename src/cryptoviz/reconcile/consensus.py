"""One coin's consensus and confidence (the rules: see the package docstring).

This runs once per coin, for every coin: it lets C code (``sorted``, ``max``, ``sum``) do the loops it
can, and skips work whose outcome is already known (the outlier test when every price is within
tolerance, the search for a field the heaviest quote has).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from cryptoviz.models import CoinSnapshot, SourceQuote, SourceValue
from cryptoviz.reconcile.identity import CoinId
from cryptoviz.reconcile.rows import Row
from cryptoviz.validate import STALE

OUTLIER = "outlier"
DISAGREEMENT = "disagreement"

MAD_SCALE = 1.4826  # makes the MAD a consistent estimator of the standard deviation
MAD_CUTOFF = 3.5
HALF_SLACK = 1e-12  # a cumulative weight this close (relative to the total) to half of it is half

# Row fields (see rows.Row)
_TRUST = itemgetter(2)
_WEIGHT = itemgetter(3)
_PRICE, _MARKET_CAP, _VOLUME = 4, 5, 6
_BY_PRICE, _BY_MARKET_CAP, _BY_VOLUME = itemgetter(_PRICE), itemgetter(_MARKET_CAP), itemgetter(_VOLUME)
# The fields taken from the heaviest quote that has them, in CoinSnapshot order.
_TAKEN_NAMES = ("change_1h", "change_24h", "change_7d", "circulating_supply", "total_supply", "max_supply")
_TAKEN = attrgetter(*_TAKEN_NAMES)
_TAKEN_ONE = tuple(map(attrgetter, _TAKEN_NAMES))

T = TypeVar("T")


def coin_snapshot(
    rows: list[Row],
    ids: CoinId,
    observed_at: datetime,
    tol: float,
    previous: Mapping[str, float] | None,
) -> CoinSnapshot | None:
    """The snapshot of one coin (``rows`` sorted by source name), None when all its quotes are stale."""
    coin_id, slug, coingecko_id, coinmarketcap_id = ids
    dropped: dict[str, str] = {}
    fresh = rows
    for row in rows:
        if row[3] < 0.0:
            fresh = [r for r in rows if r[3] >= 0.0]
            if not fresh:
                return None
            dropped = dict.fromkeys([r[0] for r in rows if r[3] < 0.0], STALE)
            break

    by_price = sorted(fresh, key=_BY_PRICE)  # ties in source order
    candidates = fresh
    if len(by_price) >= 3 and by_price[-1][4] - by_price[0][4] > tol * by_price[0][4]:
        # (else |p - median| <= max - min <= tol * min <= tol * median: no price can be an outlier)
        by_price = _without_outliers(by_price, tol, dropped)
        if len(by_price) < len(fresh):
            candidates = [row for row in fresh if row[0] not in dropped]
    used = candidates
    if len(candidates) > 1:
        lo = by_price[0][4]
        hi = by_price[-1][4]
        spread = (hi - lo) / hi
        if len(candidates) == 2 and spread > tol and previous:
            used = _settle(candidates, previous.get(coin_id), dropped)
            if len(used) == 1:
                by_price = used

    # One pass over the used quotes, in source order (the order of the float operations): the total weight,
    # the heaviest and the most trusted (the first on a tie), and the confidence terms.
    total = 0.0
    miss = 1.0  # prod(1 - t): the chance that every used source is wrong
    heaviest = trusted = used[0]
    for row in used:
        total += row[3]
        miss *= 1.0 - row[2]
        if row[3] > heaviest[3]:
            heaviest = row
        if row[2] > trusted[2]:
            trusted = row
    t_max = trusted[2]
    if len(candidates) == 1:
        confidence = t_max
    elif spread <= tol:
        combined = 1.0 - miss
        confidence = combined if tol == 0 else t_max + (combined - t_max) * (1.0 - spread / tol)
    else:
        confidence = t_max * tol / spread
    confidence = 0.0 if confidence < 0.0 else 1.0 if confidence > 1.0 else confidence
    if len(candidates) < len(fresh):
        # An outlier is a source that disagreed: only the agreeing share of the fresh sources vouches.
        confidence *= len(candidates) / len(fresh)

    price = weighted_median(by_price, _PRICE, total)
    market_cap = _field_median(used, _BY_MARKET_CAP, _MARKET_CAP, total)
    volume = _field_median(used, _BY_VOLUME, _VOLUME, total)

    top = heaviest[1]
    symbol = top.symbol
    name = top.name
    taken = _TAKEN(top)
    if None in taken or not (symbol and name):
        symbol, name, taken = _from_heavier(used, symbol, name, taken)
    change_1h, change_24h, change_7d, circulating, total_supply, max_supply = taken
    rank = trusted[1].rank
    if rank is None:
        for row in sorted(used, key=_TRUST, reverse=True):  # a stable sort: ties in source order
            if (rank := row[1].rank) is not None:
                break

    return CoinSnapshot(
        coin_id, symbol, name, slug, rank, price, market_cap, volume, change_1h, change_24h, change_7d, circulating,
        total_supply, max_supply, confidence, observed_at, top.currency, coingecko_id, coinmarketcap_id,
        tuple([SourceValue(source, source_id, p, cap, vol, updated, (reason := dropped.get(source)) is None, reason)
               for source, _q, _t, _w, p, cap, vol, source_id, updated, _ts in rows]),
    )


def _from_heavier(used: list[Row], symbol: str, name: str, taken: tuple[float | None, ...]
                  ) -> tuple[str, str, tuple[float | None, ...]]:
    """The heaviest quote's symbol, name and taken fields, with what it lacks (None; empty for symbol and
    name) from the heaviest other quote that has it."""
    filled = list(taken)
    k = -1
    for _missing in range(filled.count(None)):
        k = filled.index(None, k + 1)
        filled[k] = _heaviest_with(used, _TAKEN_ONE[k])
    return (symbol or _heaviest_with(used, _symbol) or "", name or _heaviest_with(used, _name) or "",
            tuple(filled))


def _heaviest_with(used: list[Row], get: Callable[[SourceQuote], T | None]) -> T | None:
    """``get`` of the heaviest used quote for which it is not None (ties: the first in source order)."""
    found = None
    heaviest = -1.0
    for row in used:
        value = get(row[1])
        if value is not None and row[3] > heaviest:
            found = value
            heaviest = row[3]
    return found


def _symbol(q: SourceQuote) -> str | None:
    return q.symbol or None


def _name(q: SourceQuote) -> str | None:
    return q.name or None


def _without_outliers(by_price: list[Row], tol: float, dropped: dict[str, str]) -> list[Row]:
    """``by_price`` (3+ rows sorted by price) without its outliers, which are noted in ``dropped``."""
    prices = [row[4] for row in by_price]
    median = _median(prices)
    mad = _median(sorted([abs(p - median) for p in prices]))
    limit = max(MAD_CUTOFF * MAD_SCALE * mad, tol * median)
    kept = []
    for row in by_price:
        if abs(row[4] - median) > limit:
            dropped[row[0]] = OUTLIER
        else:
            kept.append(row)
    return kept


def _settle(pair: list[Row], previous: float | None, dropped: dict[str, str]) -> list[Row]:
    """Of two disagreeing quotes, the one nearer the previous price; both on a tie or without one."""
    if previous is None or not 0.0 < previous < math.inf:
        return pair
    a, b = pair
    da = abs(a[4] - previous)
    db = abs(b[4] - previous)
    if da == db:
        return pair
    near, far = (a, b) if da < db else (b, a)
    dropped[far[0]] = DISAGREEMENT
    return [near]


def _field_median(used: list[Row], get: itemgetter[float | None], field: int, total: float) -> float | None:
    """Weighted median of ``row[field]`` (``get``) over the used quotes that have it."""
    if None in map(get, used):
        used = [row for row in used if row[field] is not None]
        if not used:
            return None
        total = sum(map(_WEIGHT, used))
    return weighted_median(sorted(used, key=get), field, total)


def weighted_median(ordered: Sequence[tuple[Any, ...]], field: int, total: float) -> float:
    """Weighted median of ``row[field]`` over non-empty ``ordered`` (sorted by it; ties in source order),
    weight = ``row[3]``, ``total`` = the weights summed in source order.

    The value at which the cumulative weight (in that order) first reaches half the total; when it
    reaches exactly half (within a relative 1e-12), the midpoint of that value and the next one with a
    weight. Zero weights count for nothing; all zero: equal weights (the plain median).
    """
    if len(ordered) == 1:
        return ordered[0][field]  # type: ignore[no-any-return]
    if not total > 0.0:
        return _median([row[field] for row in ordered])
    half = total * 0.5
    slack = total * HALF_SLACK
    low = half - slack  # > 0: the first row to reach it has a weight
    cumulative = 0.0
    for i, row in enumerate(ordered):
        cumulative += row[3]
        if cumulative >= low:
            if cumulative <= half + slack:
                for after in ordered[i + 1:]:
                    if after[3] > 0.0:
                        return _midpoint(row[field], after[field])
            return row[field]  # type: ignore[no-any-return]
    return ordered[-1][field]  # type: ignore[no-any-return]


def _median(values: list[float]) -> float:
    """Median of an already sorted, non-empty list."""
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else _midpoint(values[mid - 1], values[mid])


def _midpoint(a: float, b: float) -> float:
    """Midpoint of a <= b that never leaves [a, b] (no overflow, no rounding past an end)."""
    m = a + (b - a) * 0.5
    return a if m < a else b if m > b else m


