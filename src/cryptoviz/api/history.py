"""History of one coin from the tier that fits the range and the step.

=======================================================  =====================================================
request                                                  answer
=======================================================  =====================================================
no interval, range <= 2 days, raw rows complete there    raw points (at most ``MAX_POINTS``; more: as below)
no interval, otherwise                                   candles of the smallest step of :data:`STEPS` giving at
                                                         most ``max_candles`` candles, read as below
interval under 5 min (or no multiple of 5 min), raw      candles aggregated from the raw rows (at most
rows complete and at most ``MAX_POINTS`` of them         ``MAX_POINTS`` rows read, ``MAX_CANDLES`` candles made)
interval a multiple of 5 min                             the coarsest tier whose bucket divides the interval
                                                         (5 min only where its candles reach back), merged in
                                                         SQL when the interval is no tier's size
any of these over more than ``MAX_TIER_ROWS`` rows       a coarser step, from the finest tier that keeps the
                                                         rows under that (``note`` says so)
=======================================================  =====================================================

"Raw rows complete" means the range holds no data the raw rows lack: nothing older than the coin's oldest
raw row (retention removed it, or it was backfilled) and no backfilled candle. The range is measured from
the coin's first observation, so "all time" of a young coin is short. A valid range never fails.

Per-source lines come from the raw source quotes (downsampled to the step) when the answer is read from the
raw rows, else from each candle's ``source_close`` (each source's own price at its last observation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa

from cryptoviz.api import queries
from cryptoviz.api.schemas import CandleOut, GapOut, HistoryOut, TierName
from cryptoviz.store.candles import TIERS, Tier

MAX_POINTS = 50_000  # raw rows in one answer, or read to aggregate one
MAX_CANDLES = 10_000  # candles aggregated from raw rows in one answer
MAX_TIER_ROWS = 5_000  # candle rows read (per coin) to answer one request
MAX_SOURCE_QUOTES = 8_000  # raw source quotes in one answer: more are downsampled...
MAX_SOURCE_POINTS = 2_000  # ...to about this many per source
RAW_RANGE = timedelta(days=2)  # without an interval, raw points up to this range
DEFAULT_MAX_CANDLES = 1_000
POINT_COLUMNS = ["observed_at", "price", "market_cap", "volume_24h", "confidence", "price_low", "price_high",
                 "unverified", "price_at"]
# Automatic steps: the dashboard's candle sizes. Epoch-aligned: a week starts on a Thursday (1970-01-01).
STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
         172_800, 604_800)
FINEST = TIERS[0].seconds

Lines = dict[str, list[tuple[datetime, float, bool]]]  # source -> [(time, price, used), ...]


def label(seconds: int) -> str:
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def auto_step(span: float, max_candles: int, minimum: int = 1) -> int:
    """The smallest step of :data:`STEPS` (at least ``minimum``) giving at most ``max_candles`` over ``span``
    seconds; beyond a week, whole weeks."""
    for step in STEPS:
        if step >= minimum and span / step <= max_candles:
            return step
    return max(1, math.ceil(span / max_candles / 604_800)) * 604_800


def candle_tier(step: int, span: float, *, five_minutes: bool, max_rows: int = MAX_TIER_ROWS) -> tuple[Tier, int]:
    """The tier to read ``step``-second candles from over ``span`` seconds, and the step it gives: ``step``
    itself from the coarsest tier whose bucket divides it and that reads at most ``max_rows`` rows; else
    the smallest multiple of the finest tier that does. ``five_minutes``: the 5-minute candles cover the
    range."""
    usable = [t for t in TIERS if t.seconds != FINEST or five_minutes]
    for tier in reversed(usable):
        if tier.seconds <= step and step % tier.seconds == 0 and span / tier.seconds <= max_rows:
            return tier, step
    for tier in usable:
        if span / tier.seconds <= max_rows:
            return tier, math.ceil(step / tier.seconds) * tier.seconds
    coarsest = TIERS[-1]
    return coarsest, math.ceil(step / coarsest.seconds) * coarsest.seconds


@dataclass(frozen=True, slots=True)
class Request:
    coin: str
    start: datetime
    end: datetime
    interval: int | None  # seconds, as asked
    sources: bool
    max_candles: int = DEFAULT_MAX_CANDLES
    min_gap: float = 1200.0  # seconds without a row that make a gap whatever the step (store.gaps.default_min_length)


class _Reader:
    """Answers one request; remembers what it looked up."""

    def __init__(self, engine: sa.Engine, request: Request) -> None:
        self.engine, self.r = engine, request
        self.cover = queries.coverage(engine, request.coin)
        first = self.cover.first
        # Sized from the coin's first observation: "all time" of a young coin is a short range.
        self.begin = max(request.start, first) if first is not None and first < request.end else request.start
        self.span = max((request.end - self.begin).total_seconds(), 1.0)
        self._raw_ok: bool | None = None
        self._five_ok: bool | None = None

    def raw_ok(self) -> bool:
        """The raw rows hold everything of the range (nothing pruned or backfilled there)."""
        if self._raw_ok is None:
            since = self.cover.raw_from
            self._raw_ok = since is not None and not queries.has_data_before(
                self.engine, self.r.coin, self.begin, self.r.end, since, or_backfilled=True)
        return self._raw_ok

    def five_ok(self) -> bool:
        """The 5-minute candles reach back to the start of the range (retention keeps them a year)."""
        if self._five_ok is None:
            since = self.cover.five_from
            self._five_ok = since is not None and (self.begin >= since or not queries.has_data_before(
                self.engine, self.r.coin, self.begin, self.r.end, since))
        return self._five_ok

    def answer(self) -> HistoryOut:
        r = self.r
        if self.cover.first is None:  # nothing stored for this coin
            return self._out("raw", None, points=[] if r.interval is None else None,
                             candles=None if r.interval is None else [], lines={} if r.sources else None)
        if r.interval is None:
            if self.span <= RAW_RANGE.total_seconds() and self.raw_ok():
                points = queries.history_points(self.engine, r.coin, r.start, r.end, MAX_POINTS + 1)
                if len(points) <= MAX_POINTS:
                    return self._out("raw", None, points=points, lines=self._raw_lines(None) if r.sources else None)
                return self._candles(auto_step(self.span, r.max_candles, FINEST),
                                     f"more than {MAX_POINTS} raw points: candles instead")
            short = self.span <= RAW_RANGE.total_seconds()
            return self._candles(auto_step(self.span, r.max_candles, FINEST),
                                 "the raw rows do not cover the range" if short else None)
        step = r.interval
        if step < FINEST or step % FINEST:
            if self.raw_ok() and queries.count_history(self.engine, r.coin, self.begin, r.end,
                                                       MAX_POINTS + 1) <= MAX_POINTS:
                found = queries.history_candles(self.engine, r.coin, r.start, r.end, step, MAX_CANDLES + 1)
                if len(found) <= MAX_CANDLES:
                    return self._out("raw", step, candles=found, lines=self._raw_lines(step) if r.sources else None)
                return self._candles(math.ceil(self.span / MAX_CANDLES), f"more than {MAX_CANDLES} candles of "
                                     f"{label(step)}: a coarser step")
            reason = "the raw rows do not cover the range" if not self.raw_ok() else \
                f"more than {MAX_POINTS} raw rows in the range"
            return self._candles(step, f"{label(step)} candles need raw rows and {reason}")
        return self._candles(step, None)

    def _candles(self, step: int, note: str | None) -> HistoryOut:
        five = self.five_ok()
        tier, used = candle_tier(step, self.span, five_minutes=five)
        reasons = [] if note is None else [note]
        if used != step:
            if not five and candle_tier(step, self.span, five_minutes=True)[1] != used:
                reasons.append(f"{label(step)} candles need the 5m tier, which does not reach back to the start")
            else:
                reasons.append(f"{label(step)} candles over {self.span / 86_400:.3g} days would read more than "
                               f"{MAX_TIER_ROWS} rows")
        if reasons:
            note = "; ".join([*reasons, f"{label(used)} candles from the {tier.name} tier"])
        found = queries.tier_candles(self.engine, self.r.coin, self.r.start, self.r.end, tier, used)
        lines = _closes(found) if self.r.sources else None
        return self._out(tier.name, used, candles=found, lines=lines, note=note)

    def _raw_lines(self, step: int | None) -> Lines:
        r = self.r
        if step is None:
            lines = queries.source_lines(self.engine, r.coin, r.start, r.end, MAX_SOURCE_QUOTES + 1)
            if sum(len(v) for v in lines.values()) <= MAX_SOURCE_QUOTES:
                return lines
            step = auto_step(self.span, MAX_SOURCE_POINTS)
        return queries.source_lines(self.engine, r.coin, r.start, r.end, MAX_POINTS, step)

    def _gap_after(self, step: int | None) -> float:
        """Seconds between two points beyond which data is missing: 2.5 steps, never less than what makes a
        gap in the history (a quiet coin makes a history row only every heartbeat)."""
        return max(2.5 * (step or 0), self.r.min_gap)

    def _out(self, tier: str, step: int | None, *, points: list[queries.PointRow] | None = None,
             candles: Sequence[queries.Candle] | None = None,
             lines: Lines | None = None, note: str | None = None) -> HistoryOut:
        r = self.r
        after = self._gap_after(step)
        gaps: list[GapOut] = []
        if points is not None:
            gaps = _gaps([(p[0], p[0], p[0]) for p in points], after)
        elif candles is not None:
            gaps = _gaps([(c.time, c.open_at or c.time, c.close_at or c.time) for c in candles], after)
        return HistoryOut(
            coin=r.coin, start=r.start, end=r.end, interval=step, columns=POINT_COLUMNS, points=points,
            candles=None if candles is None else [_candle_out(c) for c in candles], sources=lines,
            tier=cast(TierName, tier), requested_interval=r.interval, note=note, gap_after=after, gaps=gaps)


def _candle_out(c: queries.Candle) -> CandleOut:
    return CandleOut(time=c.time, open=c.open, high=c.high, low=c.low, close=c.close, volume=c.volume, n=c.n,
                     n_backfill=c.n_backfill, backfilled=c.n_backfill > 0, confidence_min=c.confidence_min,
                     open_at=c.open_at, close_at=c.close_at, price_low=c.price_low, price_high=c.price_high,
                     unverified_n=c.unverified_n, unverified=c.unverified_n > 0)


def _closes(candles: Sequence[queries.Candle]) -> Lines:
    """Each source's line from the candles' per-source closes (at the time of each candle's last observation;
    used = the source is among the candle's sources)."""
    lines: Lines = {}
    for c in candles:
        used = set(c.sources.split(","))
        for source, price in sorted((c.source_close or {}).items()):
            if isinstance(price, int | float):
                lines.setdefault(source, []).append((c.close_at or c.time, float(price), source in used))
    return dict(sorted(lines.items()))


def _gaps(series: Sequence[tuple[datetime, datetime, datetime]], after: float) -> list[GapOut]:
    """Missing stretches of a series of (time, first observation, last observation): where two consecutive
    times are more than ``after`` seconds apart, from the last observation before to the first after."""
    return [GapOut(start=prev[2], end=cur[1]) for prev, cur in zip(series, series[1:], strict=False)
            if (cur[0] - prev[0]).total_seconds() > after]


def read(engine: sa.Engine, request: Request) -> HistoryOut:
    return _Reader(engine, request).answer()
