"""The reconciliation against the simulator's ground truth: a few scenarios of the library, the targets of
``make truth`` asserted on them, and each rule checked against the true prices."""

from __future__ import annotations

import math

import pytest
from benchmarks import truth as bench

from cryptoviz.reconcile import BASELINE, INTERVAL, OUTLIER, ConsensusMemory, reconcile, remember
from cryptoviz.simulator import scoring
from cryptoviz.simulator.truth import (
    PAGES,
    SCALE,
    SCENARIOS,
    SOURCES,
    CoinTruth,
    Fault,
    Scenario,
    page_price,
    run_scenario,
    scenario,
)
from cryptoviz.sources.registry import namespaces
from cryptoviz.validate import validate_quotes

SMOKE = ("calm", "collusion_by_count", "hysteresis_hover", "regime_change", "symbol_collision",
         "two_sources_disagree", "all_stale")


def test_the_library_is_complete_and_deterministic() -> None:
    assert len(SCENARIOS) >= 20
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    first = list(run_scenario(scenario("flash_crash")))
    again = list(run_scenario(scenario("flash_crash")))
    assert [c.quotes for c in first] == [c.quotes for c in again]
    with pytest.raises(KeyError, match="unknown scenario 'nope'; known: calm"):
        scenario("nope")


def test_sources_report_truth_with_their_own_noise_lag_and_rounding() -> None:
    cycles = list(run_scenario(scenario("calm")))
    for cycle in cycles[5:]:
        for q in cycle.quotes:
            true = cycle.truth[cycle.coin_of[(q.source, q.source_id)]]
            assert q.price is not None and abs(q.price - true) / true < 0.02
            if q.source in PAGES:  # pages print cents from 1 up, 4 significant digits below
                assert q.last_updated is None
                assert q.price == page_price(q.source, q.price)
            else:
                assert q.last_updated is not None and q.last_updated <= cycle.at
    assert page_price("coingecko-html", 1.23456) == 1.23 and page_price("coinmarketcap-html", 0.0123456) == 0.01235
    assert SOURCES["binance"].cadence < SOURCES["coingecko"].cadence


def test_smoke_targets_on_a_few_scenarios() -> None:
    result = bench.run(tuple(scenario(n) for n in SMOKE))
    assert result["scenarios"] == len(SMOKE)
    assert 0.85 <= result["coverage"] <= 1.0
    assert result["honest_range_violations"] == 0
    assert result["merges"] == 0
    assert result["hysteresis_flaps"] == 0
    assert result["followed_real_move_within_one_cycle"] is True
    # the baseline is measured in the same run, and the scenarios tell the rules apart
    assert result["baseline"]["honest_range_violations"] > 0
    assert result["baseline"]["hysteresis_flaps"] > 0
    assert result["baseline"]["coverage"] is None
    assert set(result["per_scenario"]) == set(SMOKE)


def test_the_committed_library_figures_meet_the_targets() -> None:
    import json

    stored = json.loads(bench.OUT.read_text(encoding="utf-8"))
    assert stored["scenarios"] == len(SCENARIOS)
    assert all(t["ok"] for t in stored["targets"].values())
    for key in ("coverage", "honest_range_violations", "merges", "flaps", "followed_real_move_within_one_cycle"):
        assert key in stored and key in stored["baseline"]


def figures(name: str, rule: str = INTERVAL) -> scoring.Score:
    return scoring.score(scenario(name), rule)  # type: ignore[arg-type]


def test_outlier_rule_drops_the_bent_source_and_keeps_the_truth() -> None:
    sc = scenario("single_outlier")
    memory = ConsensusMemory()
    for cycle in run_scenario(sc):
        kept, _ = validate_quotes(cycle.quotes, now=cycle.at, max_staleness=900.0, market_cap_tolerance=0.1)
        snapshots = reconcile(kept, observed_at=cycle.at, trust=scoring.TRUST, max_staleness=900.0,
                              memory=memory, namespaces=namespaces())
        memory = remember(snapshots)
        [eth] = [s for s in snapshots if s.coin_id == "ethereum"]
        assert {v.source: v.dropped_reason for v in eth.sources}["coinpaprika"] == OUTLIER
        assert abs(eth.price - cycle.truth["ethereum"]) / cycle.truth["ethereum"] < 0.01
    assert figures("single_outlier").worst_error < 0.01


@pytest.mark.parametrize("name", ["attack_huge", "two_colluding", "collusion_by_count", "decimal_shift",
                                  "wrong_unit", "flash_crash"])
def test_manipulated_minorities_do_not_move_the_consensus(name: str) -> None:
    result = figures(name)
    assert result.honest_range_violations == 0
    assert result.worst_error < 0.01


def test_the_baseline_follows_a_majority_by_count() -> None:
    result = figures("collusion_by_count", BASELINE)
    assert result.honest_range_violations > 0 and result.worst_error > 0.1


def test_hysteresis_keeps_a_wobbling_source_out() -> None:
    assert figures("hysteresis_hover").flaps == 0
    assert figures("hysteresis_hover", BASELINE).flaps > 0


def test_two_disagreeing_sources_stay_unverified_and_the_interval_holds_the_truth() -> None:
    result = figures("two_sources_disagree")
    assert result.unverified == result.snapshots > 0
    assert result.coverage == 1.0


def test_stale_quotes_age_out_by_their_own_time() -> None:
    sc = scenario("all_stale")
    result = figures("all_stale")
    assert result.stale > 0
    last_fresh = 10 + math.ceil(900 / 60) + 1  # sources stop at cycle 10; their quotes live 900 s
    for cycle in run_scenario(sc):
        kept, _ = validate_quotes(cycle.quotes, now=cycle.at, max_staleness=900.0, market_cap_tolerance=0.1)
        snapshots = reconcile(kept, observed_at=cycle.at, trust=scoring.TRUST, max_staleness=900.0,
                              namespaces=namespaces())
        if cycle.index > last_fresh:
            assert snapshots == []
        for s in snapshots:
            assert s.price_at is not None and (cycle.at - s.price_at).total_seconds() <= 900.0


def test_a_real_move_is_followed_within_one_cycle() -> None:
    for name in ("regime_change", "stablecoin_depeg"):
        result = figures(name)
        assert result.followed_real_move and result.cycles_to_follow is not None and result.cycles_to_follow <= 1


def test_coins_sharing_a_symbol_are_never_merged() -> None:
    assert figures("symbol_collision").merges == 0


def test_coverage_of_a_calm_market_is_near_nominal() -> None:
    coverage = figures("calm").coverage
    assert coverage is not None and 0.9 <= coverage <= 1.0


def test_a_custom_scenario_runs() -> None:
    coin = CoinTruth("foo", "42", "FOO", "Foo", 2.5, exchanges=False)
    sc = Scenario("custom", "one coin, one bent source", (coin,), sources=("coingecko", "coinmarketcap", "coinpaprika"),
                  faults=(Fault(SCALE, "coinpaprika", "foo", factor=2.0),), cycles=5)
    result = scoring.score(sc)
    assert result.snapshots == 5 and result.worst_error < 0.02
