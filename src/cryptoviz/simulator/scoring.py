"""The reconciliation measured against ground truth: a scenario's cycles run through validation and
reconciliation as the collector runs them (previous prices and last outliers carried from one cycle to
the next), every snapshot compared with the true price of the coin it stands for.

Figures per scenario (``Score``):
* ``worst_error``: the largest |price - truth| / truth over its snapshots;
* ``coverage``: the share of snapshots whose [price_low, price_high] holds the truth (None: no interval);
* ``honest_range_violations``: snapshots of 3+ fresh quotes, manipulated ones holding less than half the
  fresh weight, whose price is outside the range of the honest fresh quotes' prices;
* ``merges``: distinct sets of true coins merged into one snapshot;
* ``flaps``: a source excluded as an outlier again within ``FLAP_WINDOW`` cycles of being re-admitted;
* ``unverified``, ``stale`` (quotes rejected or dropped as stale), ``ghosts`` (snapshots of a coin that
  no longer exists);
* ``followed_real_move``: for a scenario with a real move, whether the consensus is within
  ``FOLLOW_TOLERANCE`` of the truth at most one cycle after every quote of the coin shows the move.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptoviz.reconcile import BASELINE, INTERVAL, OUTLIER, ConsensusMemory, Rule, reconcile, remember
from cryptoviz.simulator.truth import Scenario, run_scenario
from cryptoviz.sources.registry import namespaces
from cryptoviz.validate import STALE, timestamp, validate_quotes

MAX_STALENESS = 900.0
TOLERANCE = 0.05
MARKET_CAP_TOLERANCE = 0.1
TRUST: Mapping[str, float] = {"coinmarketcap": 0.9, "coinbase": 0.9, "binance": 0.85, "kraken": 0.85,
                              "coingecko": 0.8, "coinpaprika": 0.75, "coinmarketcap-html": 0.7,
                              "coingecko-html": 0.6}  # the registry's defaults
FLAP_WINDOW = 5
FOLLOW_TOLERANCE = 0.01
SHOWS_MOVE = 0.02  # a quote within this of the truth shows a real move


@dataclass(slots=True)
class Score:
    scenario: str
    rule: str
    snapshots: int = 0
    worst_error: float = 0.0
    covered: int = 0
    intervals: int = 0
    honest_range_violations: int = 0
    merges: int = 0
    flaps: int = 0
    unverified: int = 0
    stale: int = 0
    ghosts: int = 0
    followed_real_move: bool | None = None
    cycles_to_follow: int | None = None  # from the first cycle every quote shows the move
    cycles_after_move: int | None = None  # from the move itself (the sources' own lag included)
    pairs: list[tuple[float, float]] = field(default_factory=list)  # (confidence, error) of each snapshot

    @property
    def coverage(self) -> float | None:
        return self.covered / self.intervals if self.intervals else None

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["pairs"]
        out["coverage"] = self.coverage
        out["confidence_error_correlation"] = spearman(self.pairs)
        return out


def score(scenario: Scenario, rule: Rule = INTERVAL) -> Score:
    """Run ``scenario`` through validation and reconciliation with ``rule`` and measure it."""
    result = Score(scenario.name, rule)
    spaces = namespaces()
    previous: dict[str, float] = {}
    memory = ConsensusMemory()
    outlier_since: dict[tuple[str, str], list[tuple[int, bool]]] = {}
    merged: set[frozenset[str]] = set()
    shown_at: int | None = None
    for cycle in run_scenario(scenario):
        kept, rejected = validate_quotes(cycle.quotes, now=cycle.at, max_staleness=MAX_STALENESS,
                                         market_cap_tolerance=MARKET_CAP_TOLERANCE)
        result.stale += sum(1 for r in rejected if r.reason == STALE)
        snapshots = reconcile(kept, observed_at=cycle.at, trust=TRUST, max_staleness=MAX_STALENESS,
                              disagreement_tolerance=TOLERANCE, previous=previous, namespaces=spaces,
                              memory=memory, rule=rule)
        previous.update((s.coin_id, s.price) for s in snapshots)
        memory = remember(snapshots)
        by_key = {(q.source, q.source_id): q for q in kept}
        now = timestamp(cycle.at)
        for s in snapshots:
            coins = {cycle.coin_of[(v.source, v.source_id)] for v in s.sources}
            if len(coins) > 1:
                merged.add(frozenset(coins))
                continue
            coin = coins.pop()
            truth = cycle.truth.get(coin)
            if truth is None:
                result.ghosts += 1
                continue
            result.snapshots += 1
            error = abs(s.price - truth) / truth
            result.worst_error = max(result.worst_error, error)
            result.pairs.append((s.confidence, error))
            if s.price_low is not None and s.price_high is not None:
                result.intervals += 1
                result.covered += s.price_low <= truth <= s.price_high
            result.unverified += s.unverified
            result.stale += sum(1 for v in s.sources if v.dropped_reason == STALE)
            for v in s.sources:
                if v.dropped_reason != STALE:
                    outlier_since.setdefault((coin, v.source), []).append((cycle.index, v.dropped_reason == OUTLIER))
            fresh = [by_key[(v.source, v.source_id)] for v in s.sources if v.dropped_reason != STALE]
            if len(fresh) >= 3 and _violates(s.price, fresh, cycle.dishonest, now):
                result.honest_range_violations += 1
            if scenario.real_move_at is not None and cycle.index >= scenario.real_move_at and coin == _moved(scenario):
                if shown_at is None and all(abs(q.price - truth) <= SHOWS_MOVE * truth for q in fresh if q.price):
                    shown_at = cycle.index
                if result.cycles_after_move is None and error <= FOLLOW_TOLERANCE:
                    result.cycles_after_move = cycle.index - scenario.real_move_at
                if shown_at is not None and result.cycles_to_follow is None and error <= FOLLOW_TOLERANCE:
                    result.cycles_to_follow = cycle.index - shown_at
    result.merges = len(merged)
    result.flaps = sum(_flaps(seq) for seq in outlier_since.values())
    if scenario.real_move_at is not None:
        result.followed_real_move = result.cycles_to_follow is not None and result.cycles_to_follow <= 1
    return result


def _moved(scenario: Scenario) -> str:
    """The coin of the scenario's real move."""
    return next(c.coin_id for c in scenario.coins if c.jumps)


def _weight(trust: float, age: float) -> float:
    return trust * (1.0 if age <= 0 else max(0.05, 1.0 - age / MAX_STALENESS))


def _violates(price: float, fresh: list[Any], dishonest: set[tuple[str, str]], now: float) -> bool:
    """Whether ``price`` is outside the honest quotes' range while the manipulated ones hold less than half
    the weight (a violation of the robustness promise; False when the promise does not apply)."""
    bad = 0.0
    total = 0.0
    honest = []
    for q in fresh:
        w = _weight(TRUST.get(q.source, 0.5), now - timestamp(q.last_updated or q.collected_at))
        total += w
        if (q.source, q.source_id) in dishonest:
            bad += w
        else:
            honest.append(q.price)
    if not honest or bad >= total * 0.5:
        return False
    return not min(honest) <= price <= max(honest)


def _flaps(seq: list[tuple[int, bool]]) -> int:
    """Re-exclusions within FLAP_WINDOW cycles of a re-admission, in (cycle, excluded) order."""
    flaps = 0
    readmitted: int | None = None
    was = False
    for index, out in seq:
        if was and not out:
            readmitted = index
        elif out and not was and readmitted is not None and index - readmitted <= FLAP_WINDOW:
            flaps += 1
        was = out
    return flaps


def spearman(pairs: Iterable[tuple[float, float]]) -> float | None:
    """Spearman rank correlation of (confidence, error): negative when confidence predicts a small error."""
    data = list(pairs)
    if len(data) < 3:
        return None
    cx = _ranks([c for c, _e in data])
    ex = _ranks([e for _c, e in data])
    n = len(data)
    mx = sum(cx) / n
    me = sum(ex) / n
    cov = sum((a - mx) * (b - me) for a, b in zip(cx, ex, strict=True))
    vx = sum((a - mx) ** 2 for a in cx)
    ve = sum((b - me) ** 2 for b in ex)
    return cov / math.sqrt(vx * ve) if vx > 0 and ve > 0 else None


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def summary(scores: list[Score]) -> dict[str, Any]:
    """The library's figures (see the module docstring), over the given scores of one rule."""
    intervals = sum(s.intervals for s in scores)
    moves = [s.followed_real_move for s in scores if s.followed_real_move is not None]
    return {
        "scenarios": len(scores),
        "snapshots": sum(s.snapshots for s in scores),
        "coverage": sum(s.covered for s in scores) / intervals if intervals else None,
        "worst_error": max((s.worst_error for s in scores), default=0.0),
        "honest_range_violations": sum(s.honest_range_violations for s in scores),
        "merges": sum(s.merges for s in scores),
        "flaps": sum(s.flaps for s in scores),
        "unverified": sum(s.unverified for s in scores),
        "stale": sum(s.stale for s in scores),
        "ghosts": sum(s.ghosts for s in scores),
        "followed_real_move_within_one_cycle": all(moves) if moves else None,
        "confidence_error_correlation": spearman(p for s in scores for p in s.pairs),
    }


RULES: tuple[Rule, ...] = (INTERVAL, BASELINE)
