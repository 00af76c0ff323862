"""One cycle (fetch -> parse -> validate -> reconcile -> publish), the scheduler, and the writer loop."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import sqlalchemy as sa

from cryptoviz import metrics
from cryptoviz.bus.base import Publisher
from cryptoviz.config import Settings
from cryptoviz.errors import CryptoVizError, ParseError, SourceError, StoreError
from cryptoviz.models import CoinSnapshot, Rejection, SourceQuote
from cryptoviz.reconcile import reconcile
from cryptoviz.sources.base import RawPage, Source
from cryptoviz.sources.registry import parse_page
from cryptoviz.store.queries import known_coin_ids, previous_prices
from cryptoviz.store.runs import RunReport, SourceReport, record_run
from cryptoviz.validate import validate_quotes

logger = logging.getLogger(__name__)

PageSink = Callable[[RawPage, datetime], None]


def cycle_time(now: datetime | None = None) -> datetime:
    """A cycle's observed_at: UTC, whole seconds (the history key, and recorded file names)."""
    return (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)


@dataclass(slots=True)
class SourceOutcome:
    source: str
    pages: list[RawPage]
    error: SourceError | None = None
    seconds: float = 0.0
    breaker: str = "closed"


def fetch_source(source: Source) -> SourceOutcome:
    """Fetch one source; whatever goes wrong stays inside this source's outcome."""
    started = time.monotonic()
    outcome = SourceOutcome(source.name, [])
    try:
        outcome.pages = source.fetch()
    except SourceError as exc:
        outcome.error = exc
    except Exception as exc:  # noqa: BLE001 - one broken source must never stop the others
        logger.exception("%s: unexpected error while fetching", source.name)
        outcome.error = SourceError(source.name, f"unexpected {type(exc).__name__}: {exc}")
    outcome.seconds = time.monotonic() - started
    outcome.breaker = str(getattr(source, "breaker_state", "closed"))
    return outcome


def keep_known_ids(snapshots: list[CoinSnapshot], known: Mapping[str, str]) -> list[CoinSnapshot]:
    """Keep a coin under its usual id when the source that names it (CoinGecko) missed this cycle.

    Without this, a coin whose CoinGecko item was rejected once would be stored under its
    CoinMarketCap slug for that cycle: a second ``currencies`` row and a gap in its history.
    """
    if not known:
        return snapshots
    taken = {s.coin_id for s in snapshots}
    out = []
    for s in snapshots:
        canonical = known.get(s.coinmarketcap_id or "") if s.coingecko_id is None else None
        if canonical and canonical != s.coin_id and canonical not in taken:
            taken.add(canonical)
            s = replace(s, coin_id=canonical, coingecko_id=canonical)
        out.append(s)
    return out


def process(outcomes: Sequence[SourceOutcome], *, observed_at: datetime, settings: Settings,
            previous: Mapping[str, float] | None = None,
            known_ids: Mapping[str, str] | None = None) -> tuple[list[CoinSnapshot], RunReport]:
    """Parse, validate and reconcile one cycle's pages. Pure apart from logging."""
    run = RunReport(started_at=observed_at)
    valid: list[SourceQuote] = []
    for outcome in outcomes:
        report = SourceReport(outcome.source, pages=len(outcome.pages), seconds=outcome.seconds,
                              breaker=outcome.breaker)
        run.sources[outcome.source] = report
        quotes: list[SourceQuote] = []
        rejected: list[Rejection] = []
        errors: list[str] = [str(outcome.error)] if outcome.error else []
        for page in outcome.pages:
            try:
                result = parse_page(page, settings.vs_currency)
            except (SourceError, ParseError) as exc:
                errors.append(str(exc))
                continue
            quotes.extend(result.quotes)
            rejected.extend(result.rejected)
        # fetched = every item the source delivered, whether it parsed or not
        report.fetched = len(quotes) + len(rejected)
        kept, invalid = validate_quotes(quotes, now=observed_at, max_staleness=settings.max_staleness,
                                        market_cap_tolerance=settings.market_cap_tolerance)
        rejected.extend(invalid)
        report.rejected = len(rejected)
        for r in rejected:
            report.reasons[r.reason] = report.reasons.get(r.reason, 0) + 1
        if errors:
            report.error = "; ".join(errors)[:1000]
            run.errors.append(report.error)
        run.rejections.extend(rejected)
        valid.extend(kept)
        if rejected:
            logger.warning("%s: %d item(s) rejected, e.g. %s", outcome.source, len(rejected), rejected[0])
    snapshots = reconcile(valid, observed_at=observed_at, trust=settings.trust_of,
                          max_staleness=settings.max_staleness,
                          disagreement_tolerance=settings.disagreement_tolerance, previous=previous)
    snapshots = keep_known_ids(snapshots, known_ids or {})
    for s in snapshots:
        for used in s.sources_used:
            run.sources[used].used += 1
    run.coins = len(snapshots)
    failed = [r for r in run.sources.values() if r.error]
    run.status = "ok" if not failed else ("failed" if len(failed) == len(run.sources) else "partial")
    return snapshots, run


class Collector:
    """Runs cycles: fetch every source concurrently, process, publish, record the run."""

    def __init__(self, settings: Settings, sources: Sequence[Source], publisher: Publisher,
                 engine: sa.Engine | None, *, page_sink: PageSink | None = None) -> None:
        self.settings = settings
        self.sources = list(sources)
        self.publisher = publisher
        self.engine = engine
        self.page_sink = page_sink
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.sources)), thread_name_prefix="source")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _known(self) -> tuple[dict[str, float], dict[str, str]]:
        """Previous consensus prices and known coin ids; empty when the database cannot say."""
        if self.engine is None:
            return {}, {}
        try:
            return previous_prices(self.engine), known_coin_ids(self.engine)
        except StoreError as exc:
            logger.warning("previous consensus unavailable (%s): disagreements are settled without it", exc)
            return {}, {}

    def run_cycle(self) -> RunReport:
        observed_at = cycle_time()
        outcomes = list(self._pool.map(fetch_source, self.sources))
        if self.page_sink is not None:
            for outcome in outcomes:
                for page in outcome.pages:
                    self.page_sink(page, observed_at)
        return self.publish(outcomes, observed_at)

    def publish(self, outcomes: Sequence[SourceOutcome], observed_at: datetime) -> RunReport:
        previous, known_ids = self._known()
        snapshots, run = process(outcomes, observed_at=observed_at, settings=self.settings,
                                 previous=previous, known_ids=known_ids)
        if snapshots:
            self.publisher.publish(snapshots)
            run.published = len(snapshots)
        run.finished_at = datetime.now(UTC)
        metrics.observe_run(run)
        if self.engine is not None:
            try:
                record_run(self.engine, run)
            except StoreError as exc:
                logger.error("cycle done but not recorded in pipeline_runs: %s", exc)
        log_cycle(run)
        return run


def log_cycle(run: RunReport) -> None:
    parts = [f"{name} {r.fetched - r.rejected}/{r.fetched}" + (" ERROR" if r.error else "")
             for name, r in run.sources.items()]
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    logger.info("cycle %s: %d coins published in %.1fs (%s)", run.status, run.published, seconds,
                ", ".join(parts) or "no sources")
    for name, r in run.sources.items():
        if r.error:
            logger.warning("%s: %s", name, r.error)


def all_unreachable(run: RunReport) -> bool:
    return bool(run.sources) and all(r.error and r.fetched == 0 for r in run.sources.values())


class Scheduler:
    """Runs ``cycle`` every ``interval`` seconds; cycles never overlap; backs off while nothing answers."""

    def __init__(self, cycle: Callable[[], RunReport], interval: float, stop: threading.Event, *,
                 duration: float | None = None, max_cycles: int | None = None) -> None:
        self.cycle = cycle
        self.interval = interval
        self.stop = stop
        self.deadline = None if duration is None else time.monotonic() + duration
        self.max_cycles = max_cycles
        self.cycles = 0
        self.skipped = 0
        self._failures = 0

    def _time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def run(self) -> None:
        next_due = time.monotonic()
        while not self.stop.is_set() and self._time_left() > 0:
            if self.max_cycles is not None and self.cycles >= self.max_cycles:
                return
            started = time.monotonic()
            try:
                run = self.cycle()
            except CryptoVizError as exc:
                logger.error("cycle failed: %s", exc)
                run = None
            self.cycles += 1
            finished = time.monotonic()
            next_due += self.interval
            if finished > next_due:
                missed = int((finished - next_due) // self.interval) + 1
                self.skipped += missed
                logger.warning("cycle took %.1fs, longer than the %.0fs interval: skipping %d cycle(s)",
                               finished - started, self.interval, missed)
                next_due += missed * self.interval
            if run is not None and all_unreachable(run):
                self._failures += 1
                backoff = min(5.0 * 2 ** (self._failures - 1), max(self.interval, 300.0))
                backoff *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
                logger.error("no source is reachable (no network?): retrying in %.0fs. "
                             "To see CryptoViz work offline, run `make demo`.", backoff)
                next_due = time.monotonic() + backoff
            else:
                self._failures = 0
            wait = min(next_due - time.monotonic(), self._time_left())
            if wait > 0:
                self.stop.wait(wait)
