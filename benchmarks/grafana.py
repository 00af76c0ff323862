"""What Grafana does to a panel's SQL before PostgreSQL sees it, to run the dashboards' queries outside Grafana.

The frontend replaces template and global variables (``$coin``, ``$__interval``, ``$__range_s``...), the
backend expands the macros (``$__timeFilter``...) exactly as Grafana 11's PostgreSQL data source does
(pkg/tsdb/grafana-postgresql-datasource/macros.go), and ``$__interval`` comes from the time range and the
panel's width or ``maxDataPoints`` as Grafana computes it (``rangeutil.calculateInterval``).
``tests/integration/test_grafana_panels.py`` runs every panel through this; ``benchmarks/history.py`` times
them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# Frontend template syntaxes: $name, ${name}, ${name:format}, [[name]]
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]")
# Backend macro call, as in macros.go: the arguments end at the first ')'
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


def interval_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text.strip().strip("'"))
    if not match:
        raise ValueError(f"error parsing interval {text}")
    return float(match[1]) * _UNITS[match[2]]


def _go_number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _rfc3339(at: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: no trailing zeros in the fraction, 'Z'."""
    text = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def _unix_nano(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime


def interpolate_variables(sql: str, variables: Mapping[str, str], time_range: TimeRange, interval: str) -> str:
    """The frontend step: template and global variables. ``$__name`` that is no variable is a macro: kept."""
    ms = int(interval_seconds(interval) * 1000)
    globals_ = {
        "__interval": interval, "__interval_ms": str(ms),
        "__from": str(int(time_range.start.timestamp() * 1000)), "__to": str(int(time_range.end.timestamp() * 1000)),
        "__range_s": str(int((time_range.end - time_range.start).total_seconds())),
        "__range_ms": str(int((time_range.end - time_range.start).total_seconds() * 1000)),
    }

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in globals_:
            return globals_[name]
        if name.startswith("__"):
            return match[0]
        if name not in variables:
            raise KeyError(f"template variable ${name} has no value")
        # single-value variables go in as they are, single quotes doubled (postgres datasource)
        return variables[name].replace("'", "''")

    return _VARIABLE.sub(replace, sql)


def expand_macros(sql: str, time_range: TimeRange) -> str:
    """The backend step, as Grafana 11's PostgreSQL macro engine (no TimescaleDB)."""
    start, end = time_range.start.astimezone(UTC), time_range.end.astimezone(UTC)

    def group(args: list[str], name: str) -> str:
        if len(args) < 2:
            raise ValueError(f"macro {name} needs time column and interval and optional fill value")
        n = _go_number(interval_seconds(args[1]))
        if len(args) == 3 and not re.fullmatch(r"NULL|previous|-?\d+(\.\d+)?", args[2]):
            raise ValueError(f"invalid fill value {args[2]}")
        return f"floor(extract(epoch from {args[0]})/{n})*{n}"

    def evaluate(name: str, args: list[str]) -> str:
        needs_column = {"__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter", "__unixEpochNanoFilter"}
        if name in needs_column and not args[0]:
            raise ValueError(f"missing time column argument for macro {name}")
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{_rfc3339(start)}' AND '{_rfc3339(end)}'"
        if name == "__timeFrom":
            return f"'{_rfc3339(start)}'"
        if name == "__timeTo":
            return f"'{_rfc3339(end)}'"
        if name == "__timeGroup":
            return group(args, name)
        if name == "__timeGroupAlias":
            return group(args, name) + ' AS "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        if name == "__unixEpochNanoFilter":
            return f"{args[0]} >= {_unix_nano(start)} AND {args[0]} <= {_unix_nano(end)}"
        if name == "__unixEpochNanoFrom":
            return str(_unix_nano(start))
        if name == "__unixEpochNanoTo":
            return str(_unix_nano(end))
        if name in {"__unixEpochGroup", "__unixEpochGroupAlias"}:
            if len(args) < 2:
                raise ValueError(f"macro {name} needs time column and interval and optional fill value")
            n = _go_number(interval_seconds(args[1]))
            return f"floor(({args[0]})/{n})*{n}" + (' AS "time"' if name.endswith("Alias") else "")
        raise ValueError(f"unknown macro {name!r}")

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if name == "__timeGroup":
            # Grafana: a ',' right after the (first identical) call means the pre-5.3 form with AS "time"
            at = sql.find(match[0]) + len(match[0])
            if at < len(sql) and sql[at] == ",":
                name = "__timeGroupAlias"
        return evaluate(name, [a.strip() for a in match[2].split(",")])

    return _MACRO.sub(replace, sql)


def grafana_sql(sql: str, *, variables: Mapping[str, str], time_range: TimeRange, interval: str) -> str:
    return expand_macros(interpolate_variables(sql, variables, time_range, interval), time_range)


# --- $__interval ---------------------------------------------------------------------------------------

# Grafana's rangeutil.roundInterval: (below this many ms, the interval in ms)
_ROUNDED = ((15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000), (3_500, 2_000),
            (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000), (45_000, 30_000),
            (90_000, 60_000), (210_000, 120_000), (450_000, 300_000), (750_000, 600_000), (1_050_000, 900_000),
            (1_500_000, 1_200_000), (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000),
            (16_200_000, 10_800_000), (32_400_000, 21_600_000), (86_400_000, 43_200_000),
            (604_800_000, 86_400_000), (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000))
DASHBOARD_WIDTH_PX = 1800  # a panel of the full 24-column width on a 1920-pixel screen


def _interval_text(ms: int) -> str:
    for unit, size in (("y", 31_536_000_000), ("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000),
                       ("m", 60_000), ("s", 1_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def panel_interval(panel: Mapping[str, Any], time_range: TimeRange, width_px: int = DASHBOARD_WIDTH_PX) -> str:
    """``$__interval`` of ``panel`` over ``time_range``: the range over ``maxDataPoints`` (else the panel's
    width in pixels), rounded as Grafana rounds it, at least the panel's minimum ``interval``."""
    points = panel.get("maxDataPoints") or max(1, round(panel.get("gridPos", {}).get("w", 24) / 24 * width_px))
    raw = (time_range.end - time_range.start).total_seconds() * 1000 / int(points)
    ms = next((value for below, value in _ROUNDED if raw < below), 31_536_000_000)
    minimum = panel.get("interval")
    if minimum and interval_seconds(str(minimum)) * 1000 > ms:
        ms = int(interval_seconds(str(minimum)) * 1000)
    return _interval_text(ms)


# --- The dashboards ------------------------------------------------------------------------------------


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too (rows themselves are no panels)."""
    for panel in items:
        if panel.get("type") != "row":
            yield panel
        yield from panels(panel.get("panels", []))


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """File stem -> dashboard JSON."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def variable_defaults(board: Mapping[str, Any]) -> dict[str, str]:
    """Each template variable's current (default) value."""
    return {v["name"]: str(v.get("current", {}).get("value", "")) for v in board["templating"]["list"]}
