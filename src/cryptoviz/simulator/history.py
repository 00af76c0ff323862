"""The simulated market's past, for the history routes (CoinGecko's ``market_chart``, CoinMarketCap's
historical quotes).

Before the market starts (time ``A``), a coin's log price is a Brownian bridge pinned at the reference
prices the live routes quote their changes against (the price 1 h, 24 h, 7 d ... 1 y before ``A``) and at
its start price at ``A``, then refined level by level: day boundaries between those anchors, hours between
the day knots, 5-minute marks between the hour knots. Each segment's bridge is drawn from the seed, the
coin and the segment alone, so a moment has one price whatever granularity is asked, in whatever order:
the daily, hourly and 5-minutely series agree where they meet, and the past ends exactly at the price the
live routes serve at the start (and at their "24 h ago" price 24 h earlier). Before the oldest anchor the
walk goes on backwards a day at a time.

After ``A`` the market records its prices as it moves (:class:`Samples`); a moment then has the price of
the last sample at or before it, so the part of a chart already served never changes.
"""

from __future__ import annotations

import bisect
import math
import random
from array import array
from collections.abc import Mapping, Sequence

PERIOD_SECONDS: dict[str, float] = {
    "1h": 3600.0, "24h": 86_400.0, "7d": 7 * 86_400.0, "14d": 14 * 86_400.0, "30d": 30 * 86_400.0,
    "60d": 60 * 86_400.0, "90d": 90 * 86_400.0, "200d": 200 * 86_400.0, "1y": 365 * 86_400.0,
}
LEVEL_STEPS = (86_400, 3600, 300)  # the grids refined in turn: days, hours, 5 minutes
SAMPLE_EVERY = 60.0  # seconds of wall time between two recorded samples of the live market

Knot = tuple[float, float]  # (unix seconds, log price)


def grid(start: float, end: float, step: int) -> list[float]:
    """The multiples of ``step`` seconds (epoch-aligned) within [start, end]."""
    first = math.ceil(start / step) * step
    return [float(t) for t in range(int(first), int(end) + 1, step)] if first <= end else []


def _bridge(rng: random.Random, a: Knot, b: Knot, times: Sequence[float], variance: float) -> list[float]:
    """Log prices at ``times`` (strictly between ``a`` and ``b``) of a Brownian bridge from ``a`` to ``b``."""
    walk: list[float] = []
    level, previous = 0.0, a[0]
    for t in times:
        level += rng.gauss(0.0, math.sqrt(variance * (t - previous)))
        walk.append(level)
        previous = t
    end = level + rng.gauss(0.0, math.sqrt(variance * max(b[0] - previous, 0.0)))
    span = b[0] - a[0]
    out = []
    for t, w in zip(times, walk, strict=True):
        f = (t - a[0]) / span
        out.append(a[1] + (b[1] - a[1]) * f + w - f * end)
    return out


def _enclosing(knots: list[Knot], lo: float, hi: float) -> list[Knot]:
    """The knots from the last one at or before ``lo`` to the first one at or after ``hi``."""
    times = [t for t, _ in knots]
    first = max(0, bisect.bisect_right(times, lo) - 1)
    last = min(len(knots), bisect.bisect_left(times, hi) + 1)
    return knots[first:last]


class CoinPast:
    """One coin's log price at any moment up to the market's start (see the module docstring)."""

    def __init__(self, seed: int, coin: str, start: float, price: float, references: Mapping[str, float], *,
                 stable: bool = False) -> None:
        self._key = f"{seed}/past/{coin}"
        daily = 0.0006 if stable else random.Random(f"{self._key}/sigma").uniform(0.025, 0.06)
        self._variance = daily * daily / 86_400  # per second
        self._daily = daily
        anchors = {start - PERIOD_SECONDS[p]: math.log(ref) for p, ref in references.items()
                   if p in PERIOD_SECONDS and ref > 0}
        anchors[start] = math.log(price)
        self._anchors: list[Knot] = sorted(anchors.items())
        self.start = start

    def _extended(self, lo: float) -> list[Knot]:
        """The anchors, with the walk continued backwards a day at a time to reach ``lo``."""
        anchors = self._anchors
        first_t, first_l = anchors[0]
        if lo >= first_t:
            return anchors
        before: list[Knot] = []
        level = first_l
        for k in range(1, math.ceil((first_t - lo) / 86_400) + 1):
            level -= random.Random(f"{self._key}/before/{k}").gauss(0.0, self._daily)
            before.append((first_t - k * 86_400, level))
        return [*reversed(before), *anchors]

    def _knots(self, depth: int, lo: float, hi: float) -> list[Knot]:
        """The knots of the first ``depth`` levels enclosing [lo, hi]."""
        if depth == 0:
            return _enclosing(self._extended(lo), lo, hi)
        parent = self._knots(depth - 1, lo, hi)
        step = LEVEL_STEPS[depth - 1]
        out: list[Knot] = []
        for a, b in zip(parent, parent[1:], strict=False):
            out.append(a)
            inside = [t for t in grid(a[0], b[0], step) if a[0] < t < b[0]]
            if inside:
                rng = random.Random(f"{self._key}/{depth}/{a[0]:.0f}/{b[0]:.0f}")
                out.extend(zip(inside, _bridge(rng, a, b, inside, self._variance), strict=True))
        out.append(parent[-1])
        return _enclosing(out, lo, hi)

    def log_prices(self, times: Sequence[float], step: int = 300) -> list[float]:
        """Log prices at ``times`` (sorted, each at most the start). Multiples of ``step`` (a level's grid:
        a day, an hour, 5 minutes) and the anchors are knots, refined no finer than that level; any other
        moment is bridged between the knots around it."""
        if not times:
            return []
        depth = next((d + 1 for d, s in enumerate(LEVEL_STEPS) if s <= step), len(LEVEL_STEPS))
        knots = self._knots(depth, min(times), max(times))
        stamps = [t for t, _ in knots]
        out = []
        for t in times:
            i = bisect.bisect_left(stamps, t)
            if i < len(stamps) and stamps[i] == t:
                out.append(knots[i][1])
                continue
            a, b = knots[max(i - 1, 0)], knots[min(i, len(knots) - 1)]
            if a[0] >= b[0]:
                out.append(a[1])
                continue
            rng = random.Random(f"{self._key}/point/{t:.3f}")
            out.append(_bridge(rng, a, b, [t], self._variance)[0])
        return out


class Samples:
    """The live market's prices over time: (time, every coin's price) every ``SAMPLE_EVERY`` seconds."""

    def __init__(self, start: float, prices: Sequence[float]) -> None:
        self.times: list[float] = [start]
        self._prices: list[array[float]] = [array("d", prices)]

    def record(self, at: float, prices: Sequence[float]) -> None:
        if at - self.times[-1] >= SAMPLE_EVERY:
            self.times.append(at)
            self._prices.append(array("d", prices))

    def price(self, index: int, at: float) -> float:
        """Coin number ``index``'s price at ``at`` (at or after the first sample)."""
        return self._prices[max(bisect.bisect_right(self.times, at) - 1, 0)][index]


def volume_at(seed: int, coin: str, base_log_volume: float, at: float) -> float:
    """A coin's 24 h volume at a past moment: its usual level, give or take."""
    return math.exp(base_log_volume + random.Random(f"{seed}/volume/{coin}/{at:.0f}").gauss(0.0, 0.15))
