"""The consensus's weighted median against a sort-and-accumulate reference in exact arithmetic.

The rule: sort the values (ties in source order), accumulate their weights; the median is the first value
at which the cumulative weight reaches half the total. When it reaches exactly half (within 1e-12 of the
total, for the float sums) the median is the midpoint of that value and the next one that has a weight:
four sources of equal trust at 100, 101, 102 and 103 give 101.5, not 101. Zero weights count for nothing;
all weights zero: the plain median.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

# The function under test, imported in this one place: point it at its new home if it moves.
from cryptoviz.reconcile.consensus import weighted_median as _weighted_median
from tests.properties import property_settings

PROPERTY = property_settings(1500)
SLACK = Fraction(1, 10**12)


def median_of(pairs: list[tuple[float, float]]) -> float:
    """``pairs`` (value, weight) in source order, as the consensus hands them over: rows sorted by value
    (a stable sort keeps source order on ties), weight at index 3, the total summed in source order."""
    rows = sorted([(f"source-{i}", None, 1.0, w, v) for i, (v, w) in enumerate(pairs)], key=lambda r: r[4])
    return _weighted_median(rows, 4, sum(w for _v, w in pairs))


def exact_midpoint(a: float, b: float) -> Fraction:
    return (Fraction(a) + Fraction(b)) / 2


def reference(pairs: list[tuple[float, float]]) -> Fraction:
    """Sort, drop zero weights (all zero: weigh everything alike), accumulate exactly."""
    ordered = sorted(pairs, key=lambda vw: vw[0])
    weighted = [(v, Fraction(w)) for v, w in ordered if w > 0] or [(v, Fraction(1)) for v, _w in ordered]
    if len(ordered) == 1:
        return Fraction(ordered[0][0])
    total = sum(w for _v, w in weighted)
    half = total / 2
    cumulative = Fraction(0)
    for i, (v, w) in enumerate(weighted):
        cumulative += w
        if cumulative >= half - SLACK * total:
            if cumulative <= half + SLACK * total and i + 1 < len(weighted):
                return exact_midpoint(v, weighted[i + 1][0])
            return Fraction(v)
    raise AssertionError("unreachable: the cumulative weight reaches the total")


# --- the cases the rule is about ----------------------------------------------------------------------

@pytest.mark.parametrize(("pairs", "expected"), [
    pytest.param([(100.0, 0.8), (101.0, 0.8), (102.0, 0.8), (103.0, 0.8)], 101.5, id="four-equal-exact-half"),
    pytest.param([(103.0, 0.8), (101.0, 0.8), (100.0, 0.8), (102.0, 0.8)], 101.5, id="four-equal-any-order"),
    pytest.param([(100.0, 0.7), (101.0, 0.7), (102.0, 0.7), (103.0, 0.7)], 101.5, id="four-equal-inexact-sums"),
    pytest.param([(100.0, 0.9), (102.0, 0.9)], 101.0, id="two-equal-midpoint"),
    pytest.param([(102.0, 0.1), (100.0, 0.1)], 101.0, id="two-equal-reversed"),
    pytest.param([(100.0, 0.9), (102.0, 0.5)], 100.0, id="two-heavier-low"),
    pytest.param([(100.0, 0.5), (102.0, 0.9)], 102.0, id="two-heavier-high"),
    pytest.param([(100.0, 1.0), (101.0, 1.0), (102.0, 1.0)], 101.0, id="three-equal"),
    pytest.param([(100.0, 0.2), (101.0, 0.2), (102.0, 0.9)], 102.0, id="heavy-top-wins"),
    pytest.param([(100.0, 0.4), (101.0, 0.3), (102.0, 0.2), (110.0, 0.2)], 101.0, id="unequal-crossing"),
    pytest.param([(100.0, 0.5), (101.0, 0.25), (102.0, 0.25)], 100.5, id="unequal-exact-half"),
    pytest.param([(100.0, 1.0), (101.0, 0.0), (102.0, 1.0)], 101.0, id="zero-weight-skipped-for-the-midpoint"),
    pytest.param([(100.0, 1.0), (101.0, 0.0), (104.0, 1.0), (105.0, 0.0)], 102.0, id="zero-weights-around"),
    pytest.param([(99.0, 0.0), (100.0, 1.0), (102.0, 1.0)], 101.0, id="zero-weight-first"),
    pytest.param([(100.0, 1.0), (102.0, 1.0), (120.0, 0.0)], 101.0, id="zero-weight-last-is-not-the-next"),
    pytest.param([(100.0, 0.0), (101.0, 0.0), (102.0, 0.0), (103.0, 0.0)], 101.5, id="all-zero-plain-even"),
    pytest.param([(100.0, 0.0), (107.0, 0.0), (101.0, 0.0)], 101.0, id="all-zero-plain-odd"),
    pytest.param([(100.0, 0.0)], 100.0, id="single-zero-weight"),
    pytest.param([(42.0, 0.3)], 42.0, id="single"),
    pytest.param([(1.0, 0.1), (2.0, 0.2), (3.0, 0.3)], 2.5, id="float-sum-within-slack-of-half"),
    pytest.param([(100.0, 1.0), (100.0, 1.0), (102.0, 1.0), (102.0, 1.0)], 101.0, id="ties"),
    pytest.param([(-5.0, 1.0), (-1.0, 1.0)], -3.0, id="negative"),
    pytest.param([(1.5e308, 1.0), (1.7e308, 1.0)], 1.6e308, id="huge-no-overflow"),
])
def test_weighted_median_cases(pairs: list[tuple[float, float]], expected: float) -> None:
    assert median_of(pairs) == expected
    assert reference(pairs) == Fraction(expected) or math.isclose(float(reference(pairs)), expected, rel_tol=1e-15)


def test_a_midpoint_between_neighbouring_floats_stays_between_them() -> None:
    assert median_of([(5e-324, 1.0), (1e-323, 1.0)]) in (5e-324, 1e-323)
    assert median_of([(1.0, 1.0), (math.nextafter(1.0, 2.0), 1.0)]) in (1.0, math.nextafter(1.0, 2.0))


def test_the_midpoint_is_taken_not_the_lower_value() -> None:
    """The exact-half case with equal trust: the cumulative weight after the second of four is half."""
    got = median_of([(100.0, 0.9), (101.0, 0.9), (102.0, 0.9), (103.0, 0.9)])
    assert got == 101.5 and got != 101.0


# --- against the reference over generated inputs ---------------------------------------------------------

TRUSTS = st.sampled_from([0.0, 0.05, 0.25, 0.5, 0.7, 0.8, 0.9, 1.0])
GRID = st.integers(-400, 400).map(lambda n: 100.0 + n / 4)  # exact midpoints: compare to the bit


@PROPERTY
# Weights from the trust grid, or any in [1e-300, 1]: never subnormal (see the note on the next test).
@given(st.lists(st.tuples(GRID, st.one_of(TRUSTS, st.floats(1e-300, 1.0))), min_size=1, max_size=9))
@example([(100.0, 5e-300), (100.0, 5e-300), (100.25, 5e-300)])
@example([(100.0, 0.5), (101.0, 0.5), (102.0, 0.5), (103.0, 0.5)])
@example([(100.0, 0.5), (101.0, 0.5)])
@example([(100.0, 0.0), (101.0, 0.0)])
def test_weighted_median_matches_sort_and_accumulate(pairs: list[tuple[float, float]]) -> None:
    assert median_of(pairs) == reference(pairs)


@PROPERTY
@given(st.lists(GRID, min_size=2, max_size=10).filter(lambda vs: len(vs) % 2 == 0), TRUSTS.filter(lambda t: t > 0))
def test_an_even_number_of_equal_weights_gives_the_middle_midpoint(values: list[float], trust: float) -> None:
    ordered = sorted(values)
    mid = len(ordered) // 2
    assert median_of([(v, trust) for v in values]) == (ordered[mid - 1] + ordered[mid]) / 2


@PROPERTY
# Weights zero or at least 1e-300: a total weight of 5e-324 (the smallest float) halves to 0, where the
# implementation takes a zero-weight value as reaching half; trust x freshness is never that small.
@given(st.lists(st.tuples(st.floats(-1e300, 1e300), st.one_of(st.just(0.0), st.floats(1e-300, 1e6))),
                min_size=1, max_size=7))
def test_weighted_median_of_any_floats_is_the_reference_within_rounding(pairs: list[tuple[float, float]]) -> None:
    got = median_of(pairs)
    values = sorted(v for v, _w in pairs)
    assert values[0] <= got <= values[-1]
    expected = float(reference(pairs))
    # A midpoint of values of opposite signs rounds b - a: within an ulp of the larger magnitude.
    assert abs(got - expected) <= math.ulp(max(abs(values[0]), abs(values[-1])))
