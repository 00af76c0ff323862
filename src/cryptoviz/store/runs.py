"""``pipeline_runs`` and ``quote_rejections``: what each cycle did, for status and dashboards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cryptoviz.errors import StoreError
from cryptoviz.models import Rejection
from cryptoviz.sources.base import RawPage
from cryptoviz.store.tables import pipeline_runs, quote_rejections
from cryptoviz.timeutil import utc

# A storm of malformed items must not flood the table: keep this many rejections per source per cycle.
MAX_REJECTIONS_KEPT = 200


@dataclass(slots=True)
class SourceReport:
    source: str
    fetched: int = 0
    rejected: int = 0
    used: int = 0
    pages: int = 0
    seconds: float = 0.0
    error: str | None = None
    breaker: str = "closed"
    reasons: dict[str, int] = field(default_factory=dict)
    reused: int = 0  # quotes of an earlier fetch used again (the source was not due this cycle)
    # Scraped pages: the extraction strategy that read them, whether an earlier strategy failed first, and
    # a layout-drift alarm ("layout_changed: ..." when a page yielded nothing or far fewer coins than before).
    strategy: str | None = None
    fell_back: bool = False
    layout: str | None = None
    # Exchanges: pairs mapped to coins and the ones that were not (cryptoviz.pairs.MappingReport.as_json), and
    # a push source's connection (cryptoviz.sources.base.FeedStatus.as_json).
    pairs: dict[str, Any] | None = None
    feed: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"fetched": self.fetched, "rejected": self.rejected, "used": self.used, "pages": self.pages,
                "seconds": round(self.seconds, 3), "error": self.error, "breaker": self.breaker,
                "reasons": dict(self.reasons), "reused": self.reused, "strategy": self.strategy,
                "fell_back": self.fell_back, "layout": self.layout, "pairs": self.pairs, "feed": self.feed}


@dataclass(slots=True)
class RunReport:
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "ok"
    sources: dict[str, SourceReport] = field(default_factory=dict)
    published: int = 0
    recorded: int = 0  # of the published, those that make a history row (write on change)
    coins: int = 0
    errors: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # Pages whose layout no strategy could read, or that held far fewer coins than before: (page, reason),
    # to be kept for a bug report (not stored in pipeline_runs).
    suspect_pages: list[tuple[RawPage, str]] = field(default_factory=list)
    # (source, source id) of the push quotes that arrived in this pass: the coins a live update publishes.
    fresh: set[tuple[str, str]] = field(default_factory=set)

    @property
    def fetched(self) -> int:
        return sum(r.fetched for r in self.sources.values())

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self.sources.values())


def record_run(engine: sa.Engine, run: RunReport) -> int:
    """Insert the run and up to MAX_REJECTIONS_KEPT rejections per source; return the run id."""
    try:
        with engine.begin() as conn:
            run_id = conn.execute(
                pipeline_runs.insert().returning(pipeline_runs.c.id),
                {"started_at": utc(run.started_at),
                 "finished_at": utc(run.finished_at) if run.finished_at else None,
                 "status": run.status, "fetched": run.fetched, "rejected": run.rejected,
                 "published": run.published, "recorded": run.recorded,
                 "sources": {name: r.as_json() for name, r in run.sources.items()},
                 "errors": list(run.errors)},
            ).scalar_one()
            rows = _rejection_rows(run_id, run.finished_at or run.started_at, run.rejections)
            if rows:
                conn.execute(quote_rejections.insert(), rows)
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"recording the pipeline run failed: {exc.orig}") from exc
    return int(run_id)


def _rejection_rows(run_id: int, at: datetime, rejections: Sequence[Rejection]) -> list[dict[str, Any]]:
    kept: dict[str, int] = {}
    rows = []
    for r in rejections:
        if kept.get(r.source, 0) >= MAX_REJECTIONS_KEPT:
            continue
        kept[r.source] = kept.get(r.source, 0) + 1
        rows.append({"run_id": run_id, "rejected_at": utc(at), "source": r.source, "coin": r.coin[:200],
                     "field": r.field[:64], "reason": r.reason[:64], "detail": r.detail[:2000]})
    return rows
