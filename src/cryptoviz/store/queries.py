"""Read side: what ``cryptoviz status`` and the API read back (the collector's reads: ``store.state``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cryptoviz.store.tables import (
    currencies,
    currency_data,
    currency_data_history,
    pipeline_runs,
    quote_rejections,
    source_quotes,
)
from cryptoviz.timeutil import utc


def row_counts(engine: sa.Engine) -> dict[str, int]:
    tables = (currencies, currency_data, currency_data_history, source_quotes,
              pipeline_runs, quote_rejections)
    with engine.connect() as conn:
        return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in tables}


def last_runs(engine: sa.Engine, limit: int = 1) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(pipeline_runs).order_by(pipeline_runs.c.id.desc()).limit(limit)
        ).mappings().all()
    return [{**row, "started_at": utc(row["started_at"]), "finished_at": utc(row["finished_at"])}
            for row in rows]


@dataclass(slots=True)
class SourceHealth:
    """One source over the window. The last-cycle fields (fetched to reasons) come from its newest run."""

    source: str
    up: bool = False  # the newest run got an answer without error
    last_ok: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failures_in_a_row: int = 0
    errors_in_window: int = 0
    runs_in_window: int = 0
    breaker: str = "closed"
    fetched: int = 0
    rejected: int = 0
    used: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    strategy: str | None = None  # scraped pages: the extraction strategy that read the last fetch
    fell_back: bool = False  # an earlier strategy found nothing first
    layout: str | None = None  # a layout-drift alarm in the newest run
    feed: dict[str, Any] | None = None  # a push source's connection at the newest run (FeedStatus.as_json)
    pairs: dict[str, Any] | None = None  # an exchange's pairs mapped / unmapped at the newest run

    def observe(self, report: Mapping[str, Any], at: datetime | None) -> None:
        """Account for one run's report of this source, ``at`` being the run's end (runs oldest first)."""
        self.runs_in_window += 1
        self.fetched = int(report.get("fetched") or 0)
        self.rejected = int(report.get("rejected") or 0)
        self.used = int(report.get("used") or 0)
        self.seconds = float(report.get("seconds") or 0.0)
        self.breaker = str(report.get("breaker") or "closed")
        self.reasons = {str(k): int(v) for k, v in (report.get("reasons") or {}).items()}
        self.strategy = report.get("strategy") or self.strategy
        self.fell_back = bool(report.get("fell_back"))
        self.layout = report.get("layout")
        self.feed = report.get("feed") or None
        self.pairs = report.get("pairs") or self.pairs
        self.up = not report.get("error")
        if self.up:
            self.last_ok = at
            self.failures_in_a_row = 0
        else:
            self.last_error, self.last_error_at = str(report["error"]), at
            self.failures_in_a_row += 1
            self.errors_in_window += 1


@dataclass(frozen=True, slots=True)
class SourcesHealth:
    runs: int  # recorded runs found in the window (at most the ``runs`` asked for)
    last_run: dict[str, Any] | None  # the newest ``pipeline_runs`` row, as ``last_runs`` reads it
    sources: list[SourceHealth]  # sorted by name


def source_health(engine: sa.Engine, runs: int) -> SourcesHealth:
    """Each source's health over the last ``runs`` recorded cycles, and the newest cycle itself."""
    recent = last_runs(engine, runs)
    health: dict[str, SourceHealth] = {}
    for run in reversed(recent):
        at = run["finished_at"] or run["started_at"]
        for name, report in (run["sources"] or {}).items():
            health.setdefault(name, SourceHealth(name)).observe(report, at)
    return SourcesHealth(runs=len(recent), last_run=recent[0] if recent else None,
                         sources=[health[k] for k in sorted(health)])
