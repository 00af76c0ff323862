"""Retention and upkeep: how long each kind of row is kept, and the job that enforces it.

=====================================  ==========================  =======================================
rows                                   kept (setting)               removed how
=====================================  ==========================  =======================================
raw history, source quotes             ``CRYPTOVIZ_RETENTION_RAW``  PostgreSQL: whole day partitions dropped
                                       (30 days)                    (and old rows of the default partition);
                                                                    SQLite: deleted in chunks
5-minute candles                       ``CRYPTOVIZ_RETENTION_5M``   deleted in chunks
                                       (1 year)
1-hour and 1-day candles               forever
=====================================  ==========================  =======================================

Each limit can be disabled (``off``). :func:`upkeep` also creates the coming days' partitions. It runs
at start-up and hourly in ``cryptoviz run`` / ``consume`` (:class:`UpkeepThread`), each step in a short
transaction of its own, never inside the writer's; ``cryptoviz db prune [--dry-run]`` runs it by hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from cryptoviz.config import Settings
from cryptoviz.errors import StoreError
from cryptoviz.store import partitions
from cryptoviz.store.engine import redact
from cryptoviz.store.tables import candles_5m, currency_data_history, source_quotes
from cryptoviz.timeutil import utc_now

logger = logging.getLogger(__name__)

CHUNK = 10_000  # rows a delete statement removes at most: short transactions, bounded locks
UPKEEP_EVERY = 3600.0


@dataclass(slots=True)
class PruneReport:
    """What a prune removed (or, dry, would remove): rows and whole partitions per table."""

    dry_run: bool
    cutoffs: dict[str, datetime | None] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, list[str]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def cutoffs(settings: Settings, now: datetime) -> dict[str, datetime | None]:
    raw = None if settings.retention_raw is None else now - timedelta(seconds=settings.retention_raw)
    five = None if settings.retention_5m is None else now - timedelta(seconds=settings.retention_5m)
    return {currency_data_history.name: raw, source_quotes.name: raw, candles_5m.name: five}


_TIME_COLUMN = {currency_data_history.name: currency_data_history.c.observed_at,
                source_quotes.name: source_quotes.c.observed_at, candles_5m.name: candles_5m.c.bucket}


def upkeep(engine: sa.Engine, settings: Settings, *, now: datetime | None = None, dry_run: bool = False,
           chunk: int = CHUNK) -> PruneReport:
    """Create the coming days' partitions (PostgreSQL) and remove what retention lets go.

    Raises ``StoreError`` naming the step and the table when the database refuses.
    """
    now = now or utc_now()
    report = PruneReport(dry_run=dry_run, cutoffs=cutoffs(settings, now))
    where = redact(str(engine.url))
    postgres = engine.dialect.name == "postgresql"
    try:
        if postgres and not dry_run:
            with engine.begin() as conn:
                if partitions.is_partitioned(conn, currency_data_history.name):
                    partitions.lock(conn)
                    report.created = partitions.ensure_days(conn, partitions.ahead(now))
        for name, cutoff in report.cutoffs.items():
            if cutoff is None:
                continue
            if postgres and name in partitions.PARTITIONED and _dropped_partitions(engine, name, cutoff, report):
                # Whole days go with their partitions; the default partition's old rows are deleted.
                rows = _delete_older(engine, name, cutoff, dry_run, chunk, only=partitions.default_name(name))
            else:
                rows = _delete_older(engine, name, cutoff, dry_run, chunk)
            report.rows[name] = report.rows.get(name, 0) + rows
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(f"upkeep of {where} failed: {reason}") from exc
    return report


def _dropped_partitions(engine: sa.Engine, table: str, cutoff: datetime, report: PruneReport) -> bool:
    """Drop (dry: count) the day partitions of ``table`` older than ``cutoff``; False if not partitioned."""
    with engine.begin() as conn:
        if not partitions.is_partitioned(conn, table):
            return False
        gone = partitions.expired(conn, table, cutoff)
        if gone:
            counted = " + ".join(f"(SELECT count(*) FROM {p.name})" for p in gone)
            rows = int(conn.execute(sa.text(f"SELECT {counted}")).scalar_one())
            report.rows[table] = report.rows.get(table, 0) + rows
        report.partitions[table] = [p.name for p in gone]
        if report.dry_run or not gone:
            return True
        partitions.lock(conn)
        for p in gone:
            partitions.drop(conn, p)
    logger.info("retention: dropped %d partition(s) of %s older than %s", len(gone), table,
                cutoff.isoformat(timespec="seconds"))
    return True


def _delete_older(engine: sa.Engine, name: str, cutoff: datetime, dry_run: bool, chunk: int, *,
                  only: str | None = None) -> int:
    """Rows of ``name`` (or of its partition ``only``) older than ``cutoff``, deleted ``chunk`` at a time."""
    column = _TIME_COLUMN[name]
    whole = column.table
    table: sa.TableClause = whole if only is None else sa.table(only, *(sa.column(c.name) for c in whole.c))
    time = table.c[column.name]
    key = [table.c[c.name] for c in column.table.primary_key.columns]
    if dry_run:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(time < cutoff)).scalar_one())
    deleted = 0
    while True:
        victims = sa.select(*key).where(time < cutoff).limit(chunk)
        with engine.begin() as conn:
            n = conn.execute(sa.delete(table).where(sa.tuple_(*key).in_(victims))).rowcount or 0
        deleted += n
        if n < chunk:
            return deleted


class UpkeepThread(threading.Thread):
    """Runs :func:`upkeep` now and every ``every`` seconds until ``stop`` is set; a failure is logged and
    tried again next time (collecting and storing go on)."""

    def __init__(self, engine: sa.Engine, settings: Settings, stop: threading.Event, *,
                 every: float = UPKEEP_EVERY, job: Callable[..., PruneReport] = upkeep) -> None:
        super().__init__(name="upkeep", daemon=True)
        self._engine, self._settings, self._halt, self._every, self._job = engine, settings, stop, every, job
        self.runs = 0

    def run(self) -> None:
        while True:
            try:
                report = self._job(self._engine, self._settings)
                self.runs += 1
                if report.total_rows or report.created:
                    logger.info("upkeep: %d old row(s) removed, %d partition(s) created", report.total_rows,
                                len(report.created))
            except StoreError as exc:
                logger.warning("%s; trying again in %.0fs", exc, self._every)
            if self._halt.wait(self._every):
                return
