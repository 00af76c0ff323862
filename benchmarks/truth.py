"""The reconciliation against ground truth: every scenario of the library (cryptoviz.simulator.truth) run
through validation and reconciliation cycle after cycle, with the interval rule and with the baseline,
measured by cryptoviz.simulator.scoring. Prints a table and writes benchmarks/truth.json.

    python -m benchmarks.truth [--out PATH] [--only NAME,...]

Exits 1 when a target is missed (the targets are in the JSON, each with its figure and whether it holds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cryptoviz.reconcile import BASELINE, INTERVAL
from cryptoviz.simulator.scoring import Score, score, summary
from cryptoviz.simulator.truth import SCENARIOS, Scenario, scenario

OUT = Path(__file__).resolve().parent / "truth.json"
COVERAGE_TARGET = (0.90, 0.98)


def targets(figures: dict[str, Any], hysteresis_flaps: int) -> dict[str, dict[str, Any]]:
    """Each target of the interval rule: its figure and whether it holds."""
    coverage = figures["coverage"]
    low, high = COVERAGE_TARGET
    return {
        "coverage_within_90_98": {"figure": coverage, "ok": coverage is not None and low <= coverage <= high},
        "no_honest_range_violation": {"figure": figures["honest_range_violations"],
                                      "ok": figures["honest_range_violations"] == 0},
        "no_merge": {"figure": figures["merges"], "ok": figures["merges"] == 0},
        "no_flap_in_hysteresis_scenarios": {"figure": hysteresis_flaps, "ok": hysteresis_flaps == 0},
        "followed_real_move_within_one_cycle": {"figure": figures["followed_real_move_within_one_cycle"],
                                                "ok": figures["followed_real_move_within_one_cycle"] is True},
    }


def run(library: tuple[Scenario, ...]) -> dict[str, Any]:
    started = time.perf_counter()
    scores: dict[str, list[Score]] = {INTERVAL: [], BASELINE: []}
    for sc in library:
        for rule, out in scores.items():
            out.append(score(sc, rule))
    figures = summary(scores[INTERVAL])
    baseline = summary(scores[BASELINE])
    hysteresis = [s.name for s in library if s.hysteresis]
    flaps = {rule: sum(x.flaps for x in out if x.scenario in hysteresis) for rule, out in scores.items()}
    figures["hysteresis_flaps"] = flaps[INTERVAL]
    baseline["hysteresis_flaps"] = flaps[BASELINE]
    result: dict[str, Any] = {
        **figures,
        "baseline": baseline,
        "targets": targets(figures, flaps[INTERVAL]),
        "per_scenario": {
            sc.name: {"description": sc.description, "interval": interval.as_json(), "baseline": base.as_json()}
            for sc, interval, base in zip(library, scores[INTERVAL], scores[BASELINE], strict=True)
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    return result


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def table(result: dict[str, Any]) -> Table:
    t = Table(title="Reconciliation vs ground truth (interval rule | baseline)")
    for column in ("scenario", "worst err", "base err", "coverage", "flaps", "base flaps", "unverified", "stale",
                   "violations", "merges", "conf~err"):
        t.add_column(column, justify="left" if column == "scenario" else "right")
    for name, row in result["per_scenario"].items():
        new, old = row["interval"], row["baseline"]
        rho = new["confidence_error_correlation"]
        t.add_row(name, _pct(new["worst_error"]), _pct(old["worst_error"]), _pct(new["coverage"]), str(new["flaps"]),
                  str(old["flaps"]), str(new["unverified"]), str(new["stale"]),
                  f"{new['honest_range_violations']}|{old['honest_range_violations']}",
                  f"{new['merges']}|{old['merges']}", "-" if rho is None else f"{rho:+.2f}")
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.truth", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the JSON (default {OUT.name})")
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    args = parser.parse_args(argv)
    library = tuple(scenario(n) for n in args.only.split(",") if n) if args.only else SCENARIOS
    result = run(library)
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(table(result))
    base = result["baseline"]
    console.print(f"coverage {_pct(result['coverage'])} over {result['scenarios']} scenarios; "
                  f"honest-range violations {result['honest_range_violations']} (baseline "
                  f"{base['honest_range_violations']}); merges {result['merges']}; flaps {result['flaps']} "
                  f"(baseline {base['flaps']}); confidence~error rank correlation "
                  f"{result['confidence_error_correlation']:+.2f} "
                  f"(baseline {base['confidence_error_correlation']:+.2f}); {result['seconds']} s")
    missed = [name for name, t in result["targets"].items() if not t["ok"]]
    args.out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")
    if missed:
        console.print(f"[red]targets missed: {', '.join(missed)}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
