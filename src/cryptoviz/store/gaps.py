"""Gaps in the history: per coin, the time ranges without data (read side).

While CryptoViz runs, every coin gets a history row at least every ``CRYPTOVIZ_HISTORY_HEARTBEAT`` seconds
(:mod:`cryptoviz.history_gate`). So when two consecutive observations of a coin are further apart than
twice that (:func:`default_min_length`), the pipeline missed the coin in between, or was not running (an
outage shows as the same gap in every coin). The time before a coin's first observation (it was not
collected yet) and after its last one (nothing was written since) is not a gap.

The observations are read from the 5-minute candles: a candle's ``open_at`` and ``close_at`` are the times
of the first and last history row of its bucket, so the silence between two consecutive candles of a coin
is exactly the silence between two consecutive history rows whenever it is longer than 5 minutes (rows in
one bucket are never further apart). That reads a fifth of the rows or fewer, covers the past older than
raw retention (the candles outlive the rows), and counts the 5-minute points a backfill wrote. Only a
``min_length`` under 5 minutes needs the raw rows themselves (and then finds nothing older than them).

A gap that a backfill filled at a coarser grain (every 1-hour, or every 1-day, bucket between its two
observations has a candle) is filled as well as the source allows and is not reported.

One statement does the search on SQLite and PostgreSQL: ``LAG`` over each coin's candles in the window, in
the order of the primary key (coin, bucket), keeping the long silences and each coin's first candle; then
one index probe per coin finds its last observation before the window, so a gap that began earlier is
found too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cryptoviz.config import Settings
from cryptoviz.store.candles import TIER_BY_NAME
from cryptoviz.store.tables import candles_5m, currencies, currency_data_history
from cryptoviz.timeutil import utc

FILLED_TIERS = ("1h", "1d")  # a gap every bucket of which (of one of these tiers) has a candle is filled
CANDLE_SECONDS = 300  # the 5-minute candles: silences longer than this are seen in them
_EPSILON = 0.001  # seconds: a silence of exactly ``min_length`` is not longer (SQLite keeps milliseconds here)


@dataclass(frozen=True, slots=True)
class Gap:
    """A time range without data for one coin: from its last observation before to its first one after."""

    coin: str
    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start


def default_min_length(settings: Settings) -> timedelta:
    """Twice the history heartbeat: the shortest silence that cannot be a quiet coin."""
    return timedelta(seconds=2 * settings.history_heartbeat)


def find_gaps(engine: sa.Engine, *, since: datetime, until: datetime | None = None, min_length: timedelta,
              limit: int = 20, coins: Sequence[str] | None = None) -> list[Gap]:
    """The ``limit`` longest gaps longer than ``min_length`` that end within [since, until], longest first.

    ``until`` defaults to now; ``coins`` restricts the search to those coin ids. A gap may start before
    ``since`` (it is reported whole). Works on SQLite and PostgreSQL.
    """
    since, until = utc(since), utc(until) if until is not None else datetime.now(UTC)
    if limit <= 0 or until <= since:
        return []
    raw = min_length < timedelta(seconds=CANDLE_SECONDS)
    with engine.connect() as conn:
        query = _silences(conn.dialect.name, since, until, min_length, coins, raw=raw)
        candidates: list[Gap] = []
        firsts: dict[str, datetime] = {}
        for coin, previous, at in conn.execute(query):
            if previous is None:
                firsts[coin] = utc(at)
            elif utc(at) >= since:
                candidates.append(Gap(coin, utc(previous), utc(at)))
        for coin, last in _last_before(conn, firsts, since, raw=raw):
            first = firsts[coin]
            if first >= since and first - last > min_length:
                candidates.append(Gap(coin, last, first))
        candidates.sort(key=lambda g: (-g.length, g.coin, g.end))
        found: list[Gap] = []
        for gap in candidates:
            if not _filled(conn, gap):
                found.append(gap)
                if len(found) == limit:
                    break
    return found


def _longer(dialect: str, previous: sa.ColumnElement[Any], at: sa.ColumnElement[Any],
            length: timedelta) -> sa.ColumnElement[bool]:
    """``at - previous > length``, comparing times (no arithmetic on every row's both sides)."""
    if dialect == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff'; strftime's %f gives 'SS.SSS'
        seconds = length.total_seconds() + _EPSILON
        return at > sa.func.strftime("%Y-%m-%d %H:%M:%f", previous, f"+{seconds:.3f} seconds")
    return at > previous + sa.literal(length, sa.Interval())


def _silences(dialect: str, since: datetime, until: datetime, min_length: timedelta, coins: Sequence[str] | None,
              *, raw: bool) -> sa.Select[Any]:
    """(coin, previous, at): every silence longer than ``min_length`` ending at ``at`` in the window, and
    each coin's first observation in it (``previous`` null)."""
    if raw:
        h = currency_data_history.c
        key, order, first, last = h.currency_id, h.observed_at, h.observed_at, h.observed_at
        where = [h.observed_at >= since, h.observed_at <= until]
    else:
        c5 = candles_5m.c
        key, order, first, last = c5.currency_id, c5.bucket, c5.open_at, c5.close_at
        where = [c5.bucket >= since - timedelta(seconds=CANDLE_SECONDS), c5.bucket <= until]
    if coins is not None:
        where.append(key.in_(list(coins)))
    previous = sa.func.lag(last, type_=last.type).over(partition_by=key, order_by=order)
    ordered = sa.select(key.label("coin"), first.label("at"), previous.label("previous")).where(*where).subquery()
    o = ordered.c
    return sa.select(o.coin, o.previous, o.at).where(
        sa.or_(o.previous.is_(None), _longer(dialect, o.previous, o.at, min_length)))


def _last_before(conn: sa.Connection, coins: Iterable[str], since: datetime, *, raw: bool
                 ) -> Iterable[tuple[str, datetime]]:
    """Each stored coin's last observation before the window: one index probe per coin."""
    cur = currencies.c
    if raw:
        h = currency_data_history.alias("before")
        last = (sa.select(sa.func.max(h.c.observed_at))
                .where(h.c.currency_id == cur.id, h.c.observed_at < since).scalar_subquery())
    else:
        c5 = candles_5m.alias("before")
        last = (sa.select(c5.c.close_at).where(c5.c.currency_id == cur.id,
                                               c5.c.bucket < since - timedelta(seconds=CANDLE_SECONDS))
                .order_by(c5.c.bucket.desc()).limit(1).scalar_subquery())
    wanted = sorted(coins)
    for start in range(0, len(wanted), 500):
        for coin, at in conn.execute(sa.select(cur.id, last).where(cur.id.in_(wanted[start:start + 500]))):
            if at is not None:
                yield coin, utc(at)


def _filled(conn: sa.Connection, gap: Gap) -> bool:
    """Whether a backfill filled ``gap`` at a coarser grain: some tier of :data:`FILLED_TIERS` has a candle
    in every one of its buckets that lies wholly inside the gap (and there is at least one)."""
    start, end = gap.start.timestamp(), gap.end.timestamp()
    for name in FILLED_TIERS:
        tier = TIER_BY_NAME[name]
        first = math.floor(start / tier.seconds) * tier.seconds + tier.seconds  # after the observation's bucket
        last = math.floor(end / tier.seconds) * tier.seconds - tier.seconds
        if first > last:
            continue
        t = tier.table.c
        held = conn.execute(sa.select(sa.func.count()).select_from(tier.table).where(
            t.currency_id == gap.coin, t.bucket >= datetime.fromtimestamp(first, UTC),
            t.bucket <= datetime.fromtimestamp(last, UTC))).scalar_one()
        if held >= (last - first) // tier.seconds + 1:
            return True
    return False


def format_length(length: timedelta) -> str:
    """A gap's length for people: ``25m``, ``3h05m``, ``2d04h``."""
    minutes = int(length.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 24 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes // 1440}d{minutes % 1440 // 60:02d}h"
