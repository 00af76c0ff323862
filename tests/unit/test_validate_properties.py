"""``validate_quotes`` (a fast path of plain comparisons, then the rule-by-rule check) against the reference
rules in ``tests/reference_validate.py``, over generated quotes: missing market caps and supplies, zero,
negative, NaN and infinite values, huge and tiny ones, integers where floats are expected, naive and
offset timestamps at the staleness and clock-skew boundaries.

The fast path keeps a quote without looking at the rules one by one, so a weakened comparison in it (``<=``
for ``<``) only shows on a quote whose other fields do not send it to the slow check anyway: the strategies
below leave fields out as often as they set them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cryptoviz import validate as v
from cryptoviz.models import SourceQuote
from cryptoviz.validate import validate_quotes
from tests.properties import property_settings
from tests.reference_validate import first_broken_rule

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PROPERTY = property_settings(600)

SPECIAL = [0.0, -0.0, -1.0, -1e-300, 5e-324, 1e-300, 1e-12, 1.0, 1e13, 1e300, 1.7976931348623157e308,
           math.nan, math.inf, -math.inf]
NUMBERS = st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(min_value=1e-9, max_value=1e12), st.integers(min_value=-3, max_value=10**6))
AMOUNT = st.one_of(st.none(), st.none(), NUMBERS)
PRICE = st.one_of(st.none(), st.sampled_from(SPECIAL), st.floats(min_value=1e-12, max_value=1e6),
                  st.floats(), st.integers(min_value=-2, max_value=100))
TOLERANCE = st.sampled_from([0.0, 1e-9, 0.01, 0.1, 0.5])
MAX_STALENESS = st.sampled_from([0.0, 60.0, 900.0, 86400.0])
# Offsets (seconds after NOW) around both boundaries for every max_staleness above.
OFFSETS = st.one_of(
    st.sampled_from([0.0, 119.0, 120.0, 120.000001, 121.0, 1e6, -1e-6, -60.0, -60.000001, -900.0, -900.000001,
                     -86400.0, -86401.0, -1e8]),
    st.floats(min_value=-2e5, max_value=400.0),
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)), None])


@st.composite
def times(draw: st.DrawFn) -> datetime:
    offset = timedelta(seconds=draw(OFFSETS))
    zone = draw(ZONES)
    at = NOW + offset
    return at.replace(tzinfo=None) if zone is None else at.astimezone(zone)


@st.composite
def quotes(draw: st.DrawFn) -> SourceQuote:
    price = draw(PRICE)
    supply = draw(AMOUNT)
    consistent = (isinstance(price, float | int) and isinstance(supply, float | int) and price > 0 and supply > 0
                  and draw(st.booleans()))
    if consistent:
        # Near price * supply, inside or just outside the tolerance.
        cap: Any = price * supply * draw(st.sampled_from([1.0, 1.0 + 1e-12, 0.99, 1.01, 1.1, 0.9, 1.5, 2.0]))
    else:
        cap = draw(AMOUNT)
    last_updated = draw(st.one_of(st.none(), times()))
    return SourceQuote(
        source=draw(st.sampled_from(["coingecko", "coinmarketcap"])), source_id=draw(st.sampled_from(["bitcoin", "1"])),
        symbol="BTC", name="Bitcoin", slug=None, rank=None, price=price, market_cap=cap, volume_24h=draw(AMOUNT),
        change_1h=draw(AMOUNT), change_24h=draw(AMOUNT), change_7d=draw(AMOUNT), circulating_supply=supply,
        total_supply=draw(AMOUNT), max_supply=draw(AMOUNT), last_updated=last_updated, collected_at=draw(times()),
        currency="usd",
    )


def plain(**fields: Any) -> SourceQuote:
    """A quote with nothing but a price and the given fields, fresh."""
    values: dict[str, Any] = {
        "source": "coingecko", "source_id": "bitcoin", "symbol": "BTC", "name": "Bitcoin", "slug": None,
        "rank": None, "price": 1.0, "market_cap": None, "volume_24h": None, "change_1h": None, "change_24h": None,
        "change_7d": None, "circulating_supply": None, "total_supply": None, "max_supply": None,
        "last_updated": None, "collected_at": NOW, "currency": "usd",
    }
    values.update(fields)
    return SourceQuote(**values)


@contextmanager
def counting_slow_checks() -> Iterator[list[SourceQuote]]:
    """Notes each quote that reaches the rule-by-rule check (which still runs: nothing is replaced)."""
    seen: list[SourceQuote] = []
    slow = v._check

    def noting(quote: SourceQuote, *args: Any) -> Any:
        seen.append(quote)
        return slow(quote, *args)

    v._check = noting
    try:
        yield seen
    finally:
        v._check = slow


def floats_only(quote: SourceQuote) -> bool:
    """Every number a float or None: what the fast path is written for (anything else goes to the check)."""
    return all(value is None or type(value) is float for value in (
        quote.price, quote.market_cap, quote.volume_24h, quote.circulating_supply, quote.total_supply,
        quote.max_supply, quote.change_1h, quote.change_24h, quote.change_7d))


def verdict(quote: SourceQuote, max_staleness: float, tolerance: float) -> tuple[str, str] | None:
    """The (reason, field) ``validate_quotes`` gives one quote, None when kept. A quote of floats that is
    kept must be kept by the fast path alone: only a rejection (or an unusual type) may reach the check."""
    with counting_slow_checks() as slow:
        kept, rejected = validate_quotes([quote], now=NOW, max_staleness=max_staleness,
                                         market_cap_tolerance=tolerance)
    assert len(kept) + len(rejected) == 1
    if kept:
        assert kept[0] is quote
        if floats_only(quote):
            assert slow == [], "a plausible quote of floats left the fast path"
        return None
    assert slow == [quote]
    r = rejected[0]
    assert (r.source, r.coin) == (quote.source, quote.source_id)
    assert r.reason in v.REASONS and (r.field in r.detail or r.detail == "no price")
    return r.reason, r.field


@PROPERTY
@given(quotes(), MAX_STALENESS, TOLERANCE)
@example(plain(price=0.0), 900.0, 0.1)  # no cap, no supply: only the price rule can reject it
@example(plain(price=-1.0), 900.0, 0.1)
@example(plain(price=-0.0, circulating_supply=5.0), 900.0, 0.1)
@example(plain(price=math.nan, market_cap=1.0), 900.0, 0.1)
@example(plain(market_cap=-0.0, volume_24h=0.0, circulating_supply=0.0), 900.0, 0.0)
@example(plain(price=1e300, circulating_supply=1e300, market_cap=1e300), 900.0, 0.5)
def test_one_quote_gets_the_verdict_of_the_reference_rules(quote: SourceQuote, max_staleness: float,
                                                           tolerance: float) -> None:
    expected = first_broken_rule(quote, now=NOW, max_staleness=max_staleness, tolerance=tolerance)
    assert verdict(quote, max_staleness, tolerance) == expected


@PROPERTY
@given(st.lists(quotes(), max_size=8), MAX_STALENESS, TOLERANCE)
def test_a_batch_is_split_in_input_order(batch: list[SourceQuote], max_staleness: float, tolerance: float) -> None:
    kept, rejected = validate_quotes(batch, now=NOW, max_staleness=max_staleness, market_cap_tolerance=tolerance)
    verdicts = [first_broken_rule(q, now=NOW, max_staleness=max_staleness, tolerance=tolerance) for q in batch]
    assert kept == [q for q, found in zip(batch, verdicts, strict=True) if found is None]
    assert [(r.reason, r.field) for r in rejected] == [found for found in verdicts if found is not None]


# --- each rule of the fast path at its edge, with every other field absent ------------------------------

EDGES = [
    pytest.param({"price": 0.0}, (v.PRICE_NOT_POSITIVE, "price"), id="zero-price"),
    pytest.param({"price": -0.0}, (v.PRICE_NOT_POSITIVE, "price"), id="minus-zero-price"),
    pytest.param({"price": 5e-324}, None, id="smallest-price"),
    pytest.param({"price": 1.7976931348623157e308}, None, id="largest-price"),
    pytest.param({"price": math.inf}, (v.PRICE_NOT_FINITE, "price"), id="infinite-price"),
    pytest.param({"price": 3}, None, id="integer-price"),
    pytest.param({"price": 0}, (v.PRICE_NOT_POSITIVE, "price"), id="integer-zero-price"),
    pytest.param({"market_cap": 0.0}, None, id="zero-cap"),
    pytest.param({"market_cap": -1e-300}, (v.MARKET_CAP_NEGATIVE, "market_cap"), id="tiny-negative-cap"),
    pytest.param({"market_cap": math.inf}, (v.MARKET_CAP_NOT_FINITE, "market_cap"), id="infinite-cap"),
    pytest.param({"volume_24h": 0.0}, None, id="zero-volume"),
    pytest.param({"volume_24h": -1e-300}, (v.VOLUME_NEGATIVE, "volume_24h"), id="negative-volume"),
    pytest.param({"volume_24h": math.nan}, (v.VOLUME_NOT_FINITE, "volume_24h"), id="nan-volume"),
    pytest.param({"circulating_supply": 0.0}, None, id="zero-circulating"),
    pytest.param({"circulating_supply": math.inf}, (v.SUPPLY_NOT_FINITE, "circulating_supply"), id="inf-circ"),
    pytest.param({"total_supply": -1.0}, (v.SUPPLY_NEGATIVE, "total_supply"), id="negative-total"),
    pytest.param({"total_supply": 0.0}, None, id="zero-total"),
    pytest.param({"max_supply": -1.0}, (v.SUPPLY_NEGATIVE, "max_supply"), id="negative-max"),
    pytest.param({"max_supply": math.inf}, (v.SUPPLY_NOT_FINITE, "max_supply"), id="inf-max"),
    pytest.param({"max_supply": 0.0}, None, id="zero-max"),
    pytest.param({"change_1h": -1e308}, None, id="huge-negative-change"),
    pytest.param({"change_1h": -math.inf}, (v.CHANGE_NOT_FINITE, "change_1h"), id="minus-inf-change-1h"),
    pytest.param({"change_24h": math.inf}, (v.CHANGE_NOT_FINITE, "change_24h"), id="inf-change-24h"),
    pytest.param({"change_7d": math.nan}, (v.CHANGE_NOT_FINITE, "change_7d"), id="nan-change-7d"),
    pytest.param({"change_7d": -1e308}, None, id="huge-negative-change-7d"),
    # The market cap check: relative to the larger of the two, only when both are positive.
    pytest.param({"market_cap": 110.0, "circulating_supply": 100.0}, None, id="cap-10pct-above-of-larger"),
    pytest.param({"market_cap": 112.0, "circulating_supply": 100.0}, (v.MARKET_CAP_MISMATCH, "market_cap"),
                 id="cap-12pct-above"),
    pytest.param({"market_cap": 89.0, "circulating_supply": 100.0}, (v.MARKET_CAP_MISMATCH, "market_cap"),
                 id="cap-11pct-below"),
    pytest.param({"market_cap": 91.0, "circulating_supply": 100.0}, None, id="cap-9pct-below"),
    pytest.param({"market_cap": 0.0, "circulating_supply": 100.0}, None, id="zero-cap-is-no-cap"),
    pytest.param({"market_cap": 5.0, "circulating_supply": 0.0}, None, id="zero-supply-is-no-supply"),
    pytest.param({"price": 1e300, "market_cap": 1e300, "circulating_supply": 1e300},
                 (v.MARKET_CAP_MISMATCH, "market_cap"), id="implied-overflows"),
    # Times: the source's own time when there is one, else when it was received.
    pytest.param({"last_updated": NOW - timedelta(seconds=900)}, None, id="exactly-max-staleness"),
    pytest.param({"last_updated": NOW - timedelta(seconds=900, microseconds=1)}, (v.STALE, "last_updated"),
                 id="just-stale"),
    pytest.param({"last_updated": NOW + timedelta(seconds=120)}, None, id="exactly-the-skew-allowance"),
    pytest.param({"last_updated": NOW + timedelta(seconds=120, microseconds=1)},
                 (v.SOURCE_TIME_IN_FUTURE, "last_updated"), id="just-too-far-ahead"),
    # An integer price takes the rule-by-rule check: the same time boundaries hold there.
    pytest.param({"price": 3, "last_updated": NOW + timedelta(seconds=120)}, None, id="check-skew-allowance"),
    pytest.param({"price": 3, "last_updated": NOW + timedelta(seconds=120, microseconds=1)},
                 (v.SOURCE_TIME_IN_FUTURE, "last_updated"), id="check-too-far-ahead"),
    pytest.param({"price": 3, "last_updated": NOW - timedelta(seconds=900)}, None, id="check-max-staleness"),
    pytest.param({"price": 3, "last_updated": NOW - timedelta(seconds=900, microseconds=1)},
                 (v.STALE, "last_updated"), id="check-just-stale"),
    pytest.param({"collected_at": NOW - timedelta(seconds=901)}, (v.STALE, "collected_at"), id="stale-collected"),
    pytest.param({"collected_at": NOW + timedelta(seconds=121)}, (v.SOURCE_TIME_IN_FUTURE, "collected_at"),
                 id="future-collected"),
    pytest.param({"collected_at": NOW - timedelta(seconds=10_000), "last_updated": NOW}, None,
                 id="last-updated-wins-over-collected"),
    pytest.param({"last_updated": (NOW - timedelta(seconds=901)).replace(tzinfo=None)}, (v.STALE, "last_updated"),
                 id="naive-is-utc-stale"),
    pytest.param({"last_updated": (NOW - timedelta(seconds=899)).replace(tzinfo=None)}, None, id="naive-is-utc"),
    pytest.param({"collected_at": (NOW + timedelta(seconds=121)).replace(tzinfo=None)},
                 (v.SOURCE_TIME_IN_FUTURE, "collected_at"), id="naive-collected-in-future"),
    pytest.param({"last_updated": (NOW - timedelta(seconds=901)).astimezone(timezone(timedelta(hours=9)))},
                 (v.STALE, "last_updated"), id="offset-zone-stale"),
]


NOT_FINITE = {"price": v.PRICE_NOT_FINITE, "market_cap": v.MARKET_CAP_NOT_FINITE, "volume_24h": v.VOLUME_NOT_FINITE,
              "circulating_supply": v.SUPPLY_NOT_FINITE, "total_supply": v.SUPPLY_NOT_FINITE,
              "max_supply": v.SUPPLY_NOT_FINITE, "change_1h": v.CHANGE_NOT_FINITE, "change_24h": v.CHANGE_NOT_FINITE,
              "change_7d": v.CHANGE_NOT_FINITE}
# Every number, NaN and both infinities, alone in an otherwise plausible quote: each bound of the fast path.
EDGES += [pytest.param({name: bad}, (reason, name), id=f"{name}-{bad}")
          for name, reason in NOT_FINITE.items() for bad in (math.nan, math.inf, -math.inf)]


@pytest.mark.parametrize(("quote", "past"), [
    pytest.param(plain(market_cap=200.0, circulating_supply=100.0), 201.0, id="cap-larger"),
    pytest.param(plain(price=2.0, market_cap=100.0, circulating_supply=100.0), 99.0, id="implied-larger"),
])
def test_a_difference_of_exactly_the_tolerance_is_kept(quote: SourceQuote, past: float) -> None:
    """Relative to the larger of the two, tolerance 0.5: kept at exactly 0.5, by the fast path."""
    assert first_broken_rule(quote, now=NOW, max_staleness=900.0, tolerance=0.5) is None
    assert verdict(quote, 900.0, 0.5) is None
    assert verdict(replace(quote, market_cap=past), 900.0, 0.5) == (v.MARKET_CAP_MISMATCH, "market_cap")


@pytest.mark.parametrize(("fields", "expected"), EDGES)
def test_each_rule_at_its_edge(fields: dict[str, Any], expected: tuple[str, str] | None) -> None:
    quote = plain(**fields)
    assert first_broken_rule(quote, now=NOW, max_staleness=900.0, tolerance=0.1) == expected
    assert verdict(quote, 900.0, 0.1) == expected


def test_rules_apply_in_the_documented_order() -> None:
    """With every field broken, the first rule of REASONS names the field; fixing it reveals the next one."""
    fields: dict[str, Any] = {
        "price": -1.0, "market_cap": -1.0, "volume_24h": math.nan, "circulating_supply": -1.0,
        "total_supply": math.inf, "max_supply": -2.0, "change_1h": math.inf, "change_24h": math.nan,
        "change_7d": -math.inf, "last_updated": NOW + timedelta(hours=1),
    }
    steps: list[tuple[tuple[str, str] | None, str, Any]] = [
        ((v.PRICE_NOT_POSITIVE, "price"), "price", 2.0),
        ((v.MARKET_CAP_NEGATIVE, "market_cap"), "market_cap", 3.0),  # 3 vs 2 x 1: a mismatch, found later
        ((v.VOLUME_NOT_FINITE, "volume_24h"), "volume_24h", 1.0),
        ((v.SUPPLY_NEGATIVE, "circulating_supply"), "circulating_supply", 1.0),
        ((v.SUPPLY_NOT_FINITE, "total_supply"), "total_supply", 1.0),
        ((v.SUPPLY_NEGATIVE, "max_supply"), "max_supply", 1.0),
        ((v.CHANGE_NOT_FINITE, "change_1h"), "change_1h", 0.5),
        ((v.CHANGE_NOT_FINITE, "change_24h"), "change_24h", 0.5),
        ((v.CHANGE_NOT_FINITE, "change_7d"), "change_7d", 0.5),
        ((v.MARKET_CAP_MISMATCH, "market_cap"), "market_cap", 2.0),
        ((v.SOURCE_TIME_IN_FUTURE, "last_updated"), "last_updated", NOW - timedelta(hours=1)),
        ((v.STALE, "last_updated"), "last_updated", NOW),
    ]
    for expected, name, fix in steps:
        assert verdict(plain(**fields), 900.0, 0.1) == expected
        fields[name] = fix
    assert verdict(plain(**fields), 900.0, 0.1) is None


def test_rejection_details_quote_the_offending_values() -> None:
    _, rejected = validate_quotes(
        [plain(price=-2.5), plain(market_cap=-7.0), plain(market_cap=250.0, circulating_supply=100.0),
         plain(last_updated=NOW - timedelta(seconds=1000)), plain(last_updated=NOW + timedelta(seconds=600)),
         plain(price=None), plain(market_cap=50.0, circulating_supply=100.0),
         plain(price=1e300, market_cap=1e10, circulating_supply=1e300)],
        now=NOW, max_staleness=900.0, market_cap_tolerance=0.1)
    details = [r.detail for r in rejected]
    assert details[0] == "price -2.5 is not > 0"
    assert details[1] == "market_cap -7.0 is < 0"
    assert details[2] == ("market_cap 250.0 vs price * circulating_supply 100.0 "
                          "(relative difference 0.6 > tolerance 0.1)")
    assert details[3] == "last_updated 2025-01-01T11:43:20+00:00 is 1000 s old (max_staleness 900 s)"
    assert details[4] == "last_updated 2025-01-01T12:10:00+00:00 is 600 s ahead of now (allowance 120 s)"
    assert details[5] == "no price"
    assert details[6] == ("market_cap 50.0 vs price * circulating_supply 100.0 "
                          "(relative difference 0.5 > tolerance 0.1)")  # relative to the larger of the two
    assert details[7] == ("market_cap 10000000000.0 vs price * circulating_supply inf "
                          "(relative difference inf > tolerance 0.1)")
    assert str(rejected[0]) == "coingecko: coin 'bitcoin', field 'price': price_not_positive: price -2.5 is not > 0"


def test_the_skew_allowance_is_two_minutes() -> None:
    assert v.CLOCK_SKEW_ALLOWANCE == 120.0
    assert v.REASONS.index(v.MARKET_CAP_MISMATCH) < v.REASONS.index(v.SOURCE_TIME_IN_FUTURE) < v.REASONS.index(v.STALE)


def test_the_slow_check_compares_with_the_larger_of_cap_and_implied_cap() -> None:
    """An integer price skips the fast path; the check alone must apply the tolerance to the larger value."""
    within = plain(price=1, circulating_supply=100.0, market_cap=90.5)  # 9.5 off: 9.5 % of 100, 10.5 % of 90.5
    assert verdict(within, 900.0, 0.095) is None
    beyond = plain(price=1, circulating_supply=100.0, market_cap=90.4)
    assert verdict(beyond, 900.0, 0.095) == (v.MARKET_CAP_MISMATCH, "market_cap")


def test_a_naive_time_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's zone must not move a naive timestamp (here 5 h 30 ahead of UTC)."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    try:
        naive = NOW.replace(tzinfo=None)
        assert v.timestamp(naive) == NOW.timestamp()
        assert verdict(plain(last_updated=naive - timedelta(seconds=899)), 900.0, 0.1) is None
        assert verdict(plain(last_updated=naive - timedelta(seconds=901)), 900.0, 0.1) == (v.STALE, "last_updated")
        assert verdict(plain(collected_at=naive + timedelta(seconds=119)), 900.0, 0.1) is None
        assert verdict(plain(collected_at=naive + timedelta(seconds=121)), 900.0, 0.1) == (
            v.SOURCE_TIME_IN_FUTURE, "collected_at")
    finally:
        monkeypatch.undo()
        time.tzset()
