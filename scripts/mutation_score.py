"""Print the mutation score per module and overall from the results ``mutmut run`` left under ``mutants/``.

Score = killed / (all mutants - skipped): a mutant that survived, had no test reaching it, or gave a
suspicious result counts against it; a timeout counts as killed (the mutant made a test hang).
``--max-surviving 10`` exits 1 when more than 10 % of the mutants survive. A module whose mutants were not run
(``make mutate`` runs those named in ``MUTATE``) is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          37: "killed"}
LABELS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}


def status(code: int | None) -> str:
    return KILLED.get(code, LABELS.get(code, "suspicious")) if code is not None else "not checked"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-surviving", type=float, default=None, help="fail above this percentage")
    parser.add_argument("--list", action="store_true", help="name every mutant that was not killed")
    args = parser.parse_args()

    modules = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    total = Counter[str]()
    rows = []
    survivors: list[tuple[str, str]] = []
    for module in modules:
        meta = Path("mutants") / f"{module}.meta"
        if not meta.exists():
            print(f"mutation score: no results for {module} ({meta} is missing); run `make mutate`", file=sys.stderr)
            return 1
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes and all(code is None for code in codes.values()):
            print(f"{module}: not run (make mutate MUTATE=... picks the modules)")
            continue
        counts = Counter(status(code) for code in codes.values())
        survivors += [(name, status(code)) for name, code in sorted(codes.items())
                      if status(code) not in ("killed", "timeout", "skipped")]
        total.update(counts)
        rows.append((module, counts))
    rows.append(("overall", total))

    print(f"{'module':<38} {'mutants':>7} {'killed':>7} {'timeout':>7} {'survived':>8} {'no test':>7} {'score':>7}")
    worst = 0.0
    for name, counts in rows:
        counted = sum(counts.values()) - counts["skipped"]
        caught = counts["killed"] + counts["timeout"]
        score = 100.0 * caught / counted if counted else 100.0
        print(f"{name:<38} {counted:>7} {counts['killed']:>7} {counts['timeout']:>7} {counts['survived']:>8} "
              f"{counts['no tests']:>7} {score:>6.1f}%")
        if name == "overall":
            worst = 100.0 - score
    if args.list:
        for name, state in survivors:
            print(f"  {state:<12} {name}")
    if args.max_surviving is not None and worst > args.max_surviving:
        print(f"mutation score: {worst:.1f} % of the mutants survive (limit {args.max_surviving:g} %); "
              "`.venv/bin/mutmut show NAME` shows one, `--list` names them all", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
