"""``python -m benchmarks.run [--smoke] [--only SECTIONS]``: every benchmark, one JSON object on stdout.

The full run (``make bench``) needs the local Kafka and PostgreSQL (``CRYPTOVIZ_DATABASE_URL``,
``CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS``; ``.services/env`` is read when they are unset) and takes about
13 minutes (the live section, on SQLite, 2.5 of them); ``--smoke`` runs the same code on tiny sizes in about a
minute. Progress goes to stderr.
The full run's result is also written to ``benchmarks/results.json`` (``--out``). Keys are flat and dotted; see
``benchmarks/README.md`` for what each figure means and its baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Services, progress

SECTIONS = ("reconcile", "embedded", "sink", "latency", "memory", "history", "live")
NEED_SERVICES = frozenset({"sink", "latency", "memory", "history"})

FULL: dict[str, Any] = {
    "sink_snapshots": 200_000, "coins": 10_000,
    "reconcile_coins": 10_000, "reconcile_runs": 7,
    "latency_rate": 1_000.0, "latency_seconds": 15.0,
    "memory_backlog": 1_000_000, "memory_idle_seconds": 8.0,
    "embedded_snapshots": 50_000,
    "history": {"coins": 250, "raw_days": 30, "days": 365, "baseline_days": 7, "reps": 20},
    "live": {"clients": 500, "rate": 2_000.0, "pairs": 500, "seconds": 60.0, "baseline_seconds": 30.0,
             "warmup": 10.0, "api_rate": 100.0},
}
SMOKE: dict[str, Any] = {
    "sink_snapshots": 2_000, "coins": 200,
    "reconcile_coins": 300, "reconcile_runs": 2,
    "latency_rate": 200.0, "latency_seconds": 2.0,
    "memory_backlog": 3_000, "memory_idle_seconds": 3.0,
    "embedded_snapshots": 1_000,
    "history": {"coins": 10, "raw_days": 3, "days": 30, "baseline_days": 3, "reps": 3, "min_reps": 3,
                "baseline_min_reps": 2, "budget": 0.5, "baseline_budget": 0.5},
    "live": {"clients": 50, "rate": 200.0, "pairs": 60, "seconds": 6.0, "baseline_seconds": 4.0, "warmup": 3.0,
             "api_rate": 100.0},
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI): same code paths, about a minute")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma list of sections to run (default: all of {','.join(SECTIONS)})")
    p.add_argument("--out", default=None,
                   help="where to write the JSON too (default benchmarks/results.json; with --smoke "
                        "nowhere unless given; '-' for nowhere)")
    p.add_argument("--batch-size", type=int, default=5_000,
                   help="writer batch size: records per transaction at most (default 5000)")
    p.add_argument("--batch-timeout", type=float, default=0.05,
                   help="writer batch timeout in seconds: a batch is written when full or this old (default 0.05)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return args


def _clean(value: Any) -> Any:
    """Readable numbers: rates as integers, the rest with 3 significant decimals."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if abs(value) >= 1_000:
            return round(value)
        return round(value, 3)
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    size = SMOKE if args.smoke else FULL
    services = Services.from_env() if NEED_SERVICES & set(args.sections) else None
    bs, bt = args.batch_size, args.batch_timeout
    jobs: dict[str, Callable[[], dict[str, Any]]] = {}
    if "reconcile" in args.sections:
        from benchmarks import reconcile_bench

        jobs["reconcile"] = lambda: reconcile_bench.run(size["reconcile_coins"], size["reconcile_runs"])
    if "embedded" in args.sections:
        from benchmarks import embedded

        jobs["embedded"] = lambda: embedded.run(size["embedded_snapshots"], size["coins"], bs, bt)
    if "live" in args.sections:  # SQLite and the simulator: no service needed
        from benchmarks import live

        jobs["live"] = lambda: live.run(live.Sizes(**size["live"]))
    if services is not None:
        svc = services
        if "sink" in args.sections:
            from benchmarks import sink

            jobs["sink"] = lambda: sink.run(svc, size["sink_snapshots"], size["coins"], bs, bt)
        if "latency" in args.sections:
            from benchmarks import latency

            jobs["latency"] = lambda: latency.run(svc, size["latency_rate"], size["latency_seconds"],
                                                  size["coins"], bs, bt)
        if "memory" in args.sections:
            from benchmarks import memory

            jobs["memory"] = lambda: memory.run(svc, size["memory_backlog"], size["coins"], bs, bt,
                                                idle_seconds=size["memory_idle_seconds"])
        if "history" in args.sections:
            from benchmarks import history

            jobs["history"] = lambda: history.run(svc, history.Sizes(**size["history"]))
    from benchmarks.machine import describe

    results: dict[str, Any] = {"mode": "smoke" if args.smoke else "full"}
    failed = []
    started = time.monotonic()
    for name in SECTIONS:
        if name not in jobs:
            continue
        try:
            results.update(jobs[name]())
        except Exception as exc:  # noqa: BLE001 - report every section, fail at the end
            failed.append(name)
            progress(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
            results[f"{name}.error"] = f"{type(exc).__name__}: {exc}"
    results["bench.seconds"] = time.monotonic() - started
    results.update(describe(services))
    cleaned = {k: _clean(v) for k, v in results.items()}
    text = json.dumps(cleaned, indent=2)
    out = args.out or ("-" if args.smoke else str(ROOT / "benchmarks" / "results.json"))
    if out != "-":
        Path(out).write_text(text + "\n", encoding="utf-8")
        progress(f"written to {out}")
    print(text, flush=True)
    if failed:
        progress(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
