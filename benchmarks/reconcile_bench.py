"""Reconciliation throughput on one core: quotes/s for 3 sources x N coins (one cycle of ``TOP_N=all``), and
for 4 sources x N coins (the 4th, coinpaprika, joined to the others by name and symbol only).

Beside each, the floor of this interpreter on this machine: the time to do nothing but build the output
records (one ``SourceValue`` per quote, one ``CoinSnapshot`` per coin) and read each quote's timestamp,
which any implementation of ``reconcile`` in Python has to pay.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import progress
from benchmarks.data import SOURCES, SOURCES_4, T0, TRUST, quotes
from cryptoviz.models import CoinSnapshot, SourceQuote, SourceValue
from cryptoviz.reconcile import reconcile
from cryptoviz.validate import validate_quotes

MAX_STALENESS = 900.0


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def _floor(kept: list[SourceQuote], coins: int) -> Callable[[], object]:
    by_coin: dict[str, list[SourceQuote]] = {}
    for q in kept:
        by_coin.setdefault(q.name, []).append(q)
    groups = list(by_coin.values())

    def build() -> list[CoinSnapshot]:
        out = []
        for group in groups:
            q = group[0]
            sources = tuple([SourceValue(r.source, r.source_id, r.price or 1.0, r.market_cap, r.volume_24h,
                                         r.last_updated) for r in group])
            for r in group:
                (r.last_updated or r.collected_at).timestamp()
            out.append(CoinSnapshot(q.source_id, q.symbol, q.name, q.slug, q.rank, q.price or 1.0, q.market_cap,
                                    q.volume_24h, q.change_1h, q.change_24h, q.change_7d, q.circulating_supply,
                                    q.total_supply, q.max_supply, 0.5, T0, q.currency, None, None, sources))
        return out

    return build


def _measure(coins: int, runs: int, sources: tuple[str, ...]) -> dict[str, float]:
    """Best and median quotes/s of ``reconcile`` (with and without validation) and of the floor."""
    raw = quotes(coins, sources=sources)
    progress(f"reconcile: {len(raw):,} quotes ({len(sources)} sources x {coins:,} coins), best of {runs} runs")
    kept, _rejected = validate_quotes(raw, now=T0, max_staleness=MAX_STALENESS, market_cap_tolerance=0.1)
    snapshots = reconcile(kept, observed_at=T0, trust=TRUST, max_staleness=MAX_STALENESS)
    if len(snapshots) != coins:
        raise RuntimeError(f"reconcile: {len(snapshots)} snapshots for {coins} coins ({len(sources)} sources)")

    def only_reconcile() -> object:
        return reconcile(kept, observed_at=T0, trust=TRUST, max_staleness=MAX_STALENESS)

    def with_validation() -> object:
        ok, _ = validate_quotes(raw, now=T0, max_staleness=MAX_STALENESS, market_cap_tolerance=0.1)
        return reconcile(ok, observed_at=T0, trust=TRUST, max_staleness=MAX_STALENESS)

    rec = _timed(only_reconcile, runs)
    both = _timed(with_validation, runs)
    val = _timed(lambda: validate_quotes(raw, now=T0, max_staleness=MAX_STALENESS, market_cap_tolerance=0.1),
                 runs)
    floor = _timed(_floor(kept, coins), runs)
    n = len(kept)
    return {
        "quotes_per_s": n / min(rec),
        "median_quotes_per_s": n / statistics.median(rec),
        "with_validation_quotes_per_s": len(raw) / min(both),
        "validate_quotes_per_s": len(raw) / min(val),
        "floor_quotes_per_s": n / min(floor),
        "quotes": n,
    }


def run(coins: int, runs: int) -> dict[str, Any]:
    three = _measure(coins, runs, SOURCES)
    four = _measure(coins, runs, SOURCES_4)
    out: dict[str, Any] = {f"reconcile.{key}": value for key, value in three.items()}
    out.update({f"reconcile.{key}_4src": value for key, value in four.items()})
    out.update({"reconcile.coins": coins, "reconcile.runs": runs, "reconcile.target_quotes_per_s": 200_000})
    for label, figures in (("3 sources", three), ("4 sources", four)):
        progress(f"reconcile, {label}: {figures['quotes_per_s']:,.0f} quotes/s (median "
                 f"{figures['median_quotes_per_s']:,.0f}; validate + reconcile "
                 f"{figures['with_validation_quotes_per_s']:,.0f}/s; floor {figures['floor_quotes_per_s']:,.0f}/s)")
    return out
