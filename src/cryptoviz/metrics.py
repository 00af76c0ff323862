"""Prometheus metrics of the pipeline, on a dedicated registry served by ``GET /metrics``.

The pipeline updates them in-process (:func:`observe_run` after each cycle, :func:`observe_stored`
after each committed batch); the API refreshes the database-derived gauges on each scrape
(:func:`set_database_state`), so a ``cryptoviz serve`` process that collects nothing still reports
what the database holds.

Label values are source names and rejection reason codes only: never a URL, a message or a key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cryptoviz.store.runs import RunReport

__all__ = [
    "CONTENT_TYPE_LATEST", "REGISTRY", "observe_run", "observe_stored", "render", "set_bus_lag",
    "set_database_state", "set_dlq_messages",
]

REGISTRY = CollectorRegistry(auto_describe=True)

QUOTES_FETCHED = Counter(
    "cryptoviz_quotes_fetched", "Items delivered by each source (parsed or not).", ["source"],
    registry=REGISTRY)
QUOTES_REJECTED = Counter(
    "cryptoviz_quotes_rejected", "Items rejected, per source and reason code.", ["source", "reason"],
    registry=REGISTRY)
CYCLE_DURATION = Histogram(
    "cryptoviz_cycle_duration_seconds", "Duration of one collection cycle (fetch to publish).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300), registry=REGISTRY)
CYCLES = Counter("cryptoviz_cycles", "Cycles run, per status (ok, partial, failed, skipped).", ["status"],
                 registry=REGISTRY)
SNAPSHOTS_STORED = Counter("cryptoviz_snapshots_stored", "Snapshots committed to the database by this process.",
                           registry=REGISTRY)
BUS_LAG = Gauge("cryptoviz_bus_lag", "Messages published but not yet consumed by the writer.", registry=REGISTRY)
DLQ_MESSAGES = Gauge("cryptoviz_dlq_messages", "Messages in the dead-letter queue.", registry=REGISTRY)
SOURCE_UP = Gauge("cryptoviz_source_up", "1 when the source answered without error in the last cycle, else 0.",
                  ["source"], registry=REGISTRY)
SOURCE_LAYOUT_CHANGED = Gauge(
    "cryptoviz_source_layout_changed", "1 when a scraped source's pages yielded no coins or far fewer than its "
    "last fetch (layout drift; the pages are kept for a bug report), else 0.", ["source"], registry=REGISTRY)
SOURCE_STRATEGY_FALLBACKS = Counter(
    "cryptoviz_source_strategy_fallbacks", "Fetches of a scraped source read by a fallback extraction strategy "
    "(an earlier one found nothing: the site is drifting), per strategy.", ["source", "strategy"],
    registry=REGISTRY)
STREAM_UPDATES = Counter("cryptoviz_stream_updates", "Coins published by live updates (exchange feeds), and of "
                         "them those that made a history row.", ["kind"], registry=REGISTRY)
FEED_CONNECTED = Gauge("cryptoviz_feed_connected", "1 while a push source's connection is open.", ["source"],
                       registry=REGISTRY)
FEED_MESSAGE_AGE = Gauge("cryptoviz_feed_last_message_age_seconds", "Seconds since a push source's last frame "
                         "(heartbeats included), at the last cycle.", ["source"], registry=REGISTRY)
FEED_RECONNECTS = Gauge("cryptoviz_feed_reconnects", "Connections a push source opened again since start.",
                        ["source"], registry=REGISTRY)
FEED_GAPS = Gauge("cryptoviz_feed_gaps", "Sequence gaps a push source saw since start.", ["source"],
                  registry=REGISTRY)
FEED_STALLS = Gauge("cryptoviz_feed_stalls", "Connections a push source gave up for silence since start.",
                    ["source"], registry=REGISTRY)
# Read from the database on each scrape.
DATABASE_UP = Gauge("cryptoviz_database_up", "1 when the last scrape could read the database.", registry=REGISTRY)
DATABASE_ROWS = Gauge("cryptoviz_database_rows", "Rows per table, read from the database on each scrape.",
                      ["table"], registry=REGISTRY)
LAST_OBSERVATION = Gauge("cryptoviz_last_observation_timestamp_seconds",
                         "Unix time of the newest stored observation (currency_data.observed_at).",
                         registry=REGISTRY)
LAST_RUN = Gauge("cryptoviz_last_run_timestamp_seconds", "Unix time of the last recorded pipeline run.",
                 registry=REGISTRY)

_LABEL = re.compile(r"[^a-z0-9_.-]")


def _label(value: str) -> str:
    """A safe, short label value: lower case, a small alphabet, at most 64 characters."""
    return _LABEL.sub("_", value.strip().lower())[:64] or "unknown"


def observe_run(run: RunReport) -> None:
    """Update the per-cycle metrics from one finished cycle (call once per cycle)."""
    for name, report in run.sources.items():
        source = _label(name)
        QUOTES_FETCHED.labels(source=source).inc(max(0, report.fetched))
        counted = 0
        for reason, n in report.reasons.items():
            if n > 0:
                QUOTES_REJECTED.labels(source=source, reason=_label(reason)).inc(n)
                counted += n
        if report.rejected > counted:
            QUOTES_REJECTED.labels(source=source, reason="unknown").inc(report.rejected - counted)
        SOURCE_UP.labels(source=source).set(0 if report.error else 1)
        if report.feed is not None:
            _observe_feed(source, report.feed, run.finished_at or run.started_at)
        if report.strategy is not None:
            SOURCE_LAYOUT_CHANGED.labels(source=source).set(1 if report.layout else 0)
            if report.fell_back:
                SOURCE_STRATEGY_FALLBACKS.labels(source=source, strategy=_label(report.strategy)).inc()
        elif report.layout:
            SOURCE_LAYOUT_CHANGED.labels(source=source).set(1)
    CYCLES.labels(status=_label(run.status)).inc()
    if run.finished_at is not None:
        CYCLE_DURATION.observe(max(0.0, (run.finished_at - run.started_at).total_seconds()))


def observe_stream(published: int, recorded: int) -> None:
    """Count one live update's coins (``stream_tick``)."""
    if published:
        STREAM_UPDATES.labels(kind="published").inc(published)
    if recorded:
        STREAM_UPDATES.labels(kind="recorded").inc(recorded)


def _observe_feed(source: str, feed: Mapping[str, Any], now: datetime) -> None:
    FEED_CONNECTED.labels(source=source).set(1 if feed.get("connected") else 0)
    for gauge, key in ((FEED_RECONNECTS, "reconnects"), (FEED_GAPS, "gaps"), (FEED_STALLS, "stalls")):
        gauge.labels(source=source).set(float(feed.get(key) or 0))
    last = feed.get("last_message_at")
    if isinstance(last, str):
        FEED_MESSAGE_AGE.labels(source=source).set(max(0.0, (now - datetime.fromisoformat(last)).total_seconds()))


def observe_stored(n: int) -> None:
    """Count ``n`` snapshots committed to the database (the writer's ``on_write`` callback)."""
    if n > 0:
        SNAPSHOTS_STORED.inc(n)


def set_bus_lag(n: int) -> None:
    BUS_LAG.set(max(0, n))


def set_dlq_messages(n: int) -> None:
    DLQ_MESSAGES.set(max(0, n))


def set_database_state(*, up: bool, rows: Mapping[str, int] | None = None,
                       last_observation: datetime | None = None, last_run: datetime | None = None,
                       sources_up: Mapping[str, bool] | None = None, dlq_messages: int | None = None) -> None:
    """Refresh the gauges read from the database (called by the API on each scrape)."""
    DATABASE_UP.set(1 if up else 0)
    for table, n in (rows or {}).items():
        DATABASE_ROWS.labels(table=_label(table)).set(n)
    if last_observation is not None:
        LAST_OBSERVATION.set(last_observation.timestamp())
    if last_run is not None:
        LAST_RUN.set(last_run.timestamp())
    for name, up_now in (sources_up or {}).items():
        SOURCE_UP.labels(source=_label(name)).set(1 if up_now else 0)
    if dlq_messages is not None:
        set_dlq_messages(dlq_messages)


def render() -> bytes:
    """The registry in the Prometheus text format (``CONTENT_TYPE_LATEST``)."""
    return generate_latest(REGISTRY)
