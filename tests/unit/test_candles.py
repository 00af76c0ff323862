"""Candles of the tiers, as pure functions: folding any split of the rows gives the candles of all the rows
(the band of the intervals and the unverified count included), whatever the order."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoviz.store.candles import TIERS, Candle, Point, aggregate, merge
from tests.factories import T0

PRICES = st.floats(min_value=1.0, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def points(draw: st.DrawFn) -> list[Point]:
    seconds = draw(st.lists(st.integers(0, 3 * 86_400), min_size=1, max_size=40, unique=True))
    out = []
    for s in seconds:
        price = draw(PRICES)
        band = draw(st.none() | st.tuples(st.floats(0.5, 1.0), st.floats(1.0, 1.5)))
        out.append(Point(draw(st.sampled_from(["alpha", "beta"])), T0 + timedelta(seconds=s), price,
                         sources=draw(st.sampled_from(["coingecko", "coingecko,kraken"])),
                         price_low=None if band is None else price * band[0],
                         price_high=None if band is None else price * band[1], unverified=draw(st.booleans())))
    return out


def folded(batches: list[list[Point]], seconds: int) -> dict[tuple[str, object], Candle]:
    """What the writer keeps: each batch aggregated, then merged into what is stored."""
    stored: dict[tuple[str, object], Candle] = {}
    for batch in batches:
        for key, candle in aggregate(batch, seconds).items():
            stored[key] = merge(stored[key], candle) if key in stored else candle
    return stored


@settings(max_examples=150, deadline=None)
@given(points(), st.randoms(use_true_random=False))
def test_any_split_and_order_of_the_rows_gives_the_recomputed_candles(rows: list[Point], rng: random.Random) -> None:
    shuffled = list(rows)
    rng.shuffle(shuffled)
    cut = sorted(rng.sample(range(len(shuffled) + 1), k=min(3, len(shuffled) + 1)))
    batches = [shuffled[a:b] for a, b in zip([0, *cut], [*cut, len(shuffled)], strict=True) if shuffled[a:b]]
    for tier in TIERS:
        expected = aggregate(rows, tier.seconds)
        assert folded(batches, tier.seconds) == expected, tier.name
        for candle in expected.values():
            inside = [p for p in rows if p.coin == candle.coin and candle.open_at <= p.at <= candle.close_at]
            lows = [p.price_low for p in inside if p.price_low is not None]
            highs = [p.price_high for p in inside if p.price_high is not None]
            assert candle.price_low == (min(lows) if lows else None)
            assert candle.price_high == (max(highs) if highs else None)
            assert candle.unverified_n == sum(p.unverified for p in inside)


def test_a_backfilled_point_counts_no_unverified_row() -> None:
    point = Point("alpha", T0, 10.0, price_low=9.0, price_high=11.0, unverified=True)
    [live] = aggregate([point], 300).values()
    [backfilled] = aggregate([point], 300, backfill=True).values()
    assert (live.unverified_n, live.price_low, live.price_high) == (1, 9.0, 11.0)
    assert backfilled.unverified_n == 0 and backfilled.n_backfill == 1
