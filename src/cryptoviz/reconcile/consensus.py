"""One coin's consensus, interval and confidence (the rules: see the package docstring).

This runs once per coin, for every coin: it lets C code (``sorted``, ``max``, ``sum``) do the loops it
can, and skips work whose outcome is already known (the outlier test when every price is within
tolerance, the search for a field the heaviest quote has).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, TypeVar

from cryptoviz.models import CoinSnapshot, SourceQuote, SourceValue
from cryptoviz.reconcile.identity import CoinId
from cryptoviz.reconcile.memory import DISAGREEMENT, OUTLIER, ConsensusMemory
from cryptoviz.reconcile.precision import DRIFT, Z95, rounding
from cryptoviz.reconcile.rows import Row
from cryptoviz.validate import STALE

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

# mean absolute deviation -> standard deviation (normal errors), x the standard error of a median (1.2533/sqrt(n))
SPREAD_SCALE = math.sqrt(math.pi / 2) * 1.2533
_DISTANCE = itemgetter(4)

T = TypeVar("T")


DRIFT2 = DRIFT * DRIFT

# What the consensus reads of a source: (noise^2, latency, rounded, independent group) (see precision).
SourceFact = tuple[float, float, bool, str]


class SourceFacts(NamedTuple):
    """What the consensus needs to know of the sources besides their quotes."""

    known: dict[str, SourceFact]  # source -> its facts, filled by ``learn``
    learn: Callable[[str], SourceFact]  # looks a source up, notes it in ``known`` and returns it
    observed_ts: float  # the POSIX time ages are measured against


def coin_snapshot(
    rows: list[Row],
    ids: CoinId,
    observed_at: datetime,
    tol: float,
    previous: Mapping[str, float] | None,
    memory: ConsensusMemory,
    sources: SourceFacts,
) -> CoinSnapshot | None:
    """The snapshot of one coin (``rows`` sorted by source name), None when all its quotes are stale.

    ``memory``: what the previous cycle left (hysteresis, see ``memory``); ``sources``: each source's
    precision and independent group (see ``SourceFacts``).
    """
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
    total = 0.0
    for row in fresh:
        total += row[3]
    used = fresh
    unverified = False
    limit = math.inf
    price = weighted_median(by_price, _PRICE, total)
    if len(fresh) >= 3:
        held = memory.excluded.get(coin_id)
        if by_price[-1][4] - by_price[0][4] > tol * by_price[0][4] or held:
            # (else |p - center| <= max - min <= tol * min <= tol * center: no price can be an outlier)
            limit = _outlier_limit(fresh, price, total, tol)
            used = _without_outliers(fresh, price, limit, held, dropped)
    elif len(fresh) == 2 and by_price[1][4] - by_price[0][4] > tol * by_price[1][4]:
        settles = previous.get(coin_id) if previous and coin_id not in memory.unverified else None
        used = _settle(fresh, settles, dropped)
        if len(used) == 1:
            price = used[0][4]
        else:
            unverified = True

    # The interval reads every fresh quote (in source order: the order of the float operations), so that
    # dropping one never narrows it: their own half-widths at the consensus price (``half_width``, inlined:
    # this runs for every quote), weighted, and their disagreement, the weighted mean distance to the price
    # (an outlier's clipped to the limit).
    known = sources.known
    learn = sources.learn
    now = sources.observed_ts
    scaled = Z95 * price
    page_digit = -1.0  # rounding(price), once needed
    total = 0.0
    own = 0.0
    distance = 0.0
    voices: set[str] = set()
    for row in fresh:
        noise2, latency, rounded, group = known.get(row[0]) or learn(row[0])
        age = now - row[9]
        u = scaled * math.sqrt(noise2 + DRIFT2 * (latency + (age if age > 0.0 else 0.0)))
        if rounded:
            if page_digit < 0.0:
                page_digit = rounding(price)
            u += page_digit
        w = row[3]
        total += w
        own += w * u
        d = abs(row[4] - price)
        distance += w * (d if d < limit else limit)
        voices.add(group)
    # The used quotes, in source order: the heaviest and the most trusted (the first on a tie), the newest
    # time, the independent groups.
    heaviest = trusted = newest = used[0]
    if used is fresh:
        groups = voices
        used_total = total
    else:
        groups = set()
        used_total = 0.0
    for row in used:
        if row[3] > heaviest[3]:
            heaviest = row
        if row[2] > trusted[2]:
            trusted = row
        if row[9] > newest[9]:
            newest = row
        if used is not fresh:
            used_total += row[3]
            groups.add(known[row[0]][3])
    n = len(fresh)
    if total > 0.0:
        own /= total
        distance = distance / total * (n / (n - 1)) if n > 1 else 0.0
    else:  # no weight at all: every quote counts the same
        own = 0.0
        distance = 0.0
        for row in fresh:
            noise2, latency, rounded, _group = known[row[0]]
            age = now - row[9]
            u = scaled * math.sqrt(noise2 + DRIFT2 * (latency + (age if age > 0.0 else 0.0)))
            own += u + rounding(price) if rounded else u
            d = abs(row[4] - price)
            distance += d if d < limit else limit
        own /= n
        distance = distance / n * (n / (n - 1)) if n > 1 else 0.0
    spread = Z95 * SPREAD_SCALE * distance
    margin = math.sqrt((own * own + spread * spread) / len(voices))
    low = price - margin
    high = price + margin
    if unverified:  # two prices, nothing says which: the interval holds both
        low = min(low, by_price[0][4])
        high = max(high, by_price[-1][4])
    confidence = confidence_of((high - low) / price, len(groups), tol)

    market_cap = _field_median(used, _BY_MARKET_CAP, _MARKET_CAP, used_total)
    volume = _field_median(used, _BY_VOLUME, _VOLUME, used_total)

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
    if newest[9] > now:
        price_at = observed_at if observed_at.tzinfo is not None else observed_at.replace(tzinfo=UTC)
    else:
        price_at = newest[8] or newest[1].collected_at
        if price_at.tzinfo is None:
            price_at = price_at.replace(tzinfo=UTC)

    return CoinSnapshot(
        coin_id, symbol, name, slug, rank, price, market_cap, volume, change_1h, change_24h, change_7d, circulating,
        total_supply, max_supply, confidence, observed_at, top.currency, coingecko_id, coinmarketcap_id,
        tuple([SourceValue(source, source_id, p, cap, vol, updated, (reason := dropped.get(source)) is None, reason)
               for source, _q, _t, _w, p, cap, vol, source_id, updated, _ts in rows]),
        True, low, high, unverified, price_at,
    )


def confidence_of(width: float, independent: int, tol: float) -> float:
    """(1 - 2^-n) x tol / (tol + width): n independent sources, ``width`` the interval's relative width.

    One source alone is worth 1/2, two 3/4, three 7/8...; an interval as wide as the tolerance halves it.
    With a tolerance of 0 only an exact agreement (width 0) keeps any confidence.
    """
    support = 1.0 - 0.5 ** independent
    if tol > 0.0:
        return support * (tol / (tol + width))
    return support if width == 0.0 else 0.0


def _outlier_limit(fresh: list[Row], center: float, total: float, tol: float) -> float:
    """max(3.5 x 1.4826 x weighted MAD, tol x center): the weighted MAD is the weighted median of the
    distances to the center, with the quotes' weights."""
    # ``fresh`` is in source order: ties of distance stay in source order (the order of the cumulative sum)
    deviations = sorted([(None, None, None, row[3], abs(row[4] - center)) for row in fresh], key=_DISTANCE)
    mad = weighted_median(deviations, 4, total)
    spread = MAD_CUTOFF * MAD_SCALE * mad
    floor = tol * center
    return spread if spread > floor else floor


def _without_outliers(fresh: list[Row], center: float, limit: float, held: Collection[str] | None,
                      dropped: dict[str, str]) -> list[Row]:
    """The fresh quotes within ``limit`` of ``center`` (a ``held`` source: within half of it); the others are
    noted in ``dropped`` as outliers."""
    kept = []
    half = limit * 0.5
    for row in fresh:
        distance = abs(row[4] - center)
        if distance > limit or (held and distance > half and row[0] in held):
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


