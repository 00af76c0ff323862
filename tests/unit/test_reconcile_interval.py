"""The interval rule: price interval, confidence, robustness, hysteresis, unverified pairs, price ages."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cryptoviz.models import CoinSnapshot, SourceQuote
from cryptoviz.reconcile import DISAGREEMENT, OUTLIER, ConsensusMemory, confidence_of, reconcile, remember
from cryptoviz.reconcile.precision import AGGREGATOR, EXCHANGE, PAGE, half_width, rounding
from cryptoviz.validate import STALE
from tests.unit.test_reconcile import MAX_STALENESS, NAMESPACES, NOW, TOL, TRUST, cg, cgh, cmc, cmch, q, run

SPREAD_SCALE = 1.96 * math.sqrt(math.pi / 2) * 1.2533


def only(quotes: list[SourceQuote], **kw: Any) -> CoinSnapshot:
    [snap] = run(quotes, **kw)
    return snap


def test_one_source_interval_is_its_own_precision() -> None:
    snap = only([cmc(100.0, age=30)])
    u = half_width(100.0, 30.0, AGGREGATOR)
    assert u == pytest.approx(1.96 * 100 * math.sqrt(0.001 ** 2 + 1.5e-4 ** 2 * 90))
    assert (snap.price, snap.price_low, snap.price_high) == (100.0, 100.0 - u, 100.0 + u)
    assert snap.confidence == pytest.approx(0.5 * TOL / (TOL + 2 * u / 100.0), rel=1e-12)
    assert snap.price_at == NOW - timedelta(seconds=30) and not snap.unverified


def test_a_page_adds_half_its_last_digit() -> None:
    assert rounding(1.23) == 0.005 and rounding(67_000.0) == 0.005
    assert rounding(0.5123) == pytest.approx(0.00005) and rounding(0.0001234) == pytest.approx(0.00000005)
    snap = only([cgh(1.23)])
    assert snap.price_high - 1.23 == pytest.approx(half_width(1.23, 0.0, PAGE))
    assert half_width(1.23, 0.0, PAGE) == pytest.approx(half_width(1.23, 0.0, AGGREGATOR) + 0.005)


def test_two_agreeing_sources_follow_the_documented_formula() -> None:
    snap = only([cg(100.0), cmc(101.0)])  # cmc weighs 0.9 against 0.8: price 101
    own = (0.8 * half_width(101.0, 0.0, AGGREGATOR) + 0.9 * half_width(101.0, 0.0, AGGREGATOR)) / 1.7
    distance = 0.8 * 1.0 / 1.7 * 2
    margin = math.sqrt((own ** 2 + (SPREAD_SCALE * distance) ** 2) / 2)
    assert snap.price == 101.0
    assert snap.price_low == pytest.approx(101.0 - margin, rel=1e-12)
    assert snap.price_high == pytest.approx(101.0 + margin, rel=1e-12)
    assert snap.confidence == pytest.approx(0.75 * TOL / (TOL + 2 * margin / 101.0), rel=1e-12)


def test_an_api_and_its_own_pages_are_one_independent_source() -> None:
    one = only([cg(100.0), cgh(100.0)])
    two = only([cg(100.0), cmc(100.0)])
    assert one.confidence < 0.5 < two.confidence
    assert confidence_of(0.0, 1, TOL) == 0.5 and confidence_of(0.0, 3, TOL) == 0.875
    assert confidence_of(TOL, 2, TOL) == 0.375 and confidence_of(0.0, 2, 0.0) == 0.75
    assert confidence_of(0.01, 2, 0.0) == 0.0


def test_two_sources_that_disagree_are_unverified_unless_the_previous_price_settles_it() -> None:
    snap = only([cg(100.0), cmc(120.0)])
    assert snap.unverified and snap.sources_used == ("coingecko", "coinmarketcap")
    assert snap.price_low <= 100.0 and snap.price_high >= 120.0  # the interval holds both
    settled = only([cg(100.0), cmc(120.0)], previous={"bitcoin": 101.0})
    assert not settled.unverified and settled.price == 100.0
    assert {v.source: v.dropped_reason for v in settled.sources} == {"coingecko": None, "coinmarketcap": DISAGREEMENT}
    # a previous price that was itself unverified settles nothing
    again = only([cg(100.0), cmc(120.0)], previous={"bitcoin": 120.0}, memory=remember([snap]))
    assert again.unverified and again.price == 120.0
    assert not only([cg(100.0), cmc(104.0)]).unverified  # within the tolerance


def test_the_collector_memory_comes_from_the_snapshots() -> None:
    snap = only([cg(100.0), cmc(100.2), cgh(100.1), cmch(180.0)])
    assert remember([snap]) == ConsensusMemory({"bitcoin": frozenset({"coinmarketcap-html"})}, frozenset())


PAPRIKA_TRUST = {**TRUST, "coinpaprika": 0.75}


def paprika(price: float) -> SourceQuote:
    return q("coinpaprika", "btc-bitcoin", price)


def test_an_excluded_source_comes_back_only_within_half_the_limit() -> None:
    honest = [cg(100.0), cmc(100.2), cgh(100.1)]
    memory = ConsensusMemory({"bitcoin": frozenset({"coinpaprika"})})

    def used(price: float, remembered: ConsensusMemory | None) -> bool:
        snap = only([*honest, paprika(price)], namespaces=NAMESPACES, trust=PAPRIKA_TRUST, memory=remembered)
        return "coinpaprika" in snap.sources_used

    # limit = 5 % of the price (100.1 or 100.2: a MAD of ~0.1 is below the floor)
    assert not used(106.0, None)
    assert used(104.0, None) and not used(104.0, memory)  # within the limit, not within half of it
    assert used(102.0, memory)  # back within half the limit
    # another coin's exclusion does not hold this one
    assert used(104.0, ConsensusMemory({"ethereum": frozenset({"coinpaprika"})}))


def test_no_flapping_around_the_limit() -> None:
    memory = ConsensusMemory()
    states = []
    for i in range(30):
        price = 100.0 * (1.05 + 0.012 * math.sin(i * 1.3))  # around the limit
        [snap] = run([cg(100.0), cmc(100.2), cgh(100.1), paprika(price)], namespaces=NAMESPACES,
                     trust=PAPRIKA_TRUST, memory=memory)
        memory = remember([snap])
        states.append("coinpaprika" in snap.sources_used)
    changes = sum(1 for a, b in zip(states, states[1:], strict=False) if a != b)
    assert changes <= 1


def test_staleness_is_the_age_of_the_price_not_of_the_answer() -> None:
    old = cmc(120.0, last_updated=NOW - timedelta(seconds=1000))  # received now, quoted 1000 s ago
    snap = only([cg(100.0, age=40), old])
    assert {v.source: v.dropped_reason for v in snap.sources} == {"coingecko": None, "coinmarketcap": STALE}
    assert snap.price_at == NOW - timedelta(seconds=40)
    # a page without a timestamp: its collection time; a clock ahead of ours: now
    assert only([cgh(100.0, last_updated=None, collected_at=NOW - timedelta(seconds=70))]).price_at == \
        NOW - timedelta(seconds=70)
    assert only([cg(100.0, age=-60)]).price_at == NOW
    assert only([cg(100.0, last_updated=(NOW - timedelta(seconds=5)).replace(tzinfo=None))]).price_at == \
        NOW - timedelta(seconds=5)


def test_an_older_quote_is_less_precise() -> None:
    assert half_width(100.0, 600.0, EXCHANGE) > half_width(100.0, 0.0, EXCHANGE)
    assert half_width(100.0, -30.0, EXCHANGE) == half_width(100.0, 0.0, EXCHANGE)  # a future time: age 0
    fresh = only([cg(100.0), cmc(100.0)])
    aged = only([cg(100.0, age=800), cmc(100.0, age=800)])
    assert aged.price_high - aged.price_low > fresh.price_high - fresh.price_low
    assert aged.confidence < fresh.confidence


# --- properties ------------------------------------------------------------------------------------

HONEST = ("coinmarketcap", "coingecko", "coinpaprika", "binance", "coinbase", "kraken", "coingecko-html",
          "coinmarketcap-html")
PROPERTY_NAMESPACES = {**NAMESPACES, "binance": NAMESPACES["coinpaprika"].__class__("binance"),
                       "coinbase": NAMESPACES["coinpaprika"].__class__("coinbase"),
                       "kraken": NAMESPACES["coinpaprika"].__class__("kraken")}


def quote_of(source: str, price: float, age: float) -> SourceQuote:
    sid = "1" if source.startswith("coinmarketcap") else "btc-bitcoin" if source == "coinpaprika" else "bitcoin"
    return q(source, sid, price, slug="bitcoin", age=age)


@st.composite
def attacked(draw: st.DrawFn) -> tuple[list[SourceQuote], set[str], dict[str, float]]:
    """3-8 fresh quotes of one coin, some manipulated by any factor, holding less than half the weight."""
    sources = draw(st.lists(st.sampled_from(HONEST), min_size=3, max_size=8, unique=True))
    trust = {s: draw(st.floats(0.05, 1.0)) for s in sources}
    ages = {s: draw(st.sampled_from([0.0, 30.0, 300.0, 600.0])) for s in sources}
    weight = {s: trust[s] * max(0.05, 1 - ages[s] / MAX_STALENESS) for s in sources}
    bad = set(draw(st.lists(st.sampled_from(sources), max_size=len(sources) - 1, unique=True)))
    assume(sum(weight[s] for s in bad) < 0.5 * sum(weight.values()) * (1 - 1e-9))
    base = draw(st.floats(1e-6, 1e6))
    factor = draw(st.one_of(st.floats(1.01, 1000.0), st.floats(0.001, 0.99)))
    quotes = []
    for s in sources:
        honest = base * (1 + draw(st.floats(-0.2, 0.2)))
        quotes.append(quote_of(s, honest * factor if s in bad else honest, ages[s]))
    return quotes, bad, trust


@settings(max_examples=400, deadline=None)
@given(case=attacked(), memory=st.booleans())
def test_manipulated_minority_cannot_leave_the_honest_range(
        case: tuple[list[SourceQuote], set[str], dict[str, float]], memory: bool) -> None:
    quotes, bad, trust = case
    remembered = ConsensusMemory({"bitcoin": frozenset(HONEST[:3])}) if memory else None
    [snap] = reconcile(quotes, observed_at=NOW, trust=trust, max_staleness=MAX_STALENESS, memory=remembered,
                       namespaces=PROPERTY_NAMESPACES)
    honest = [x.price for x in quotes if x.source not in bad]
    assert min(honest) <= snap.price <= max(honest)  # type: ignore[type-var]
    assert snap.price_low is not None and snap.price_high is not None
    assert snap.price_low <= snap.price <= snap.price_high


@settings(max_examples=400, deadline=None)
@given(sources=st.lists(st.sampled_from(HONEST), min_size=1, max_size=8, unique=True), data=st.data(),
       k=st.floats(1.0, 50.0), tol=st.sampled_from([0.05, 0.01, 0.3]))
def test_more_disagreement_never_raises_confidence(sources: list[str], data: st.DataObject, k: float,
                                                   tol: float) -> None:
    """Spreading the quotes further apart around the consensus (x k) never raises the confidence, nor
    narrows the interval."""
    trust = {s: data.draw(st.floats(0.0, 1.0)) for s in sources}
    ages = {s: data.draw(st.sampled_from([0.0, 60.0, 600.0])) for s in sources}
    offsets = {s: data.draw(st.floats(-0.1, 0.1)) for s in sources}
    kw: dict[str, Any] = {"observed_at": NOW, "trust": trust, "max_staleness": MAX_STALENESS,
                          "disagreement_tolerance": tol, "namespaces": PROPERTY_NAMESPACES}
    [before] = reconcile([quote_of(s, 100.0 * (1 + offsets[s]), ages[s]) for s in sources], **kw)
    c = before.price
    spread = {s: c + k * (100.0 * (1 + offsets[s]) - c) for s in sources}
    assume(all(p > 0 for p in spread.values()))
    [after] = reconcile([quote_of(s, spread[s], ages[s]) for s in sources], **kw)
    assume(abs(after.price - c) <= 1e-9 * c)  # the spread is around the same price (to rounding)
    assert after.confidence <= before.confidence * (1 + 1e-9) + 1e-12
    assert after.price_high - after.price_low >= (before.price_high - before.price_low) * (1 - 1e-9)  # type: ignore[operator]


def test_outliers_and_disagreements_are_named() -> None:
    snap = only([cg(100.0), cmc(100.2), cgh(1000.0)])
    assert {v.source: v.dropped_reason for v in snap.sources}["coingecko-html"] == OUTLIER
