"""One cycle (fetch -> parse -> validate -> reconcile -> publish) and the scheduler that repeats it.

Pull sources are fetched when due: every cycle, or every ``interval`` seconds for a slower source (a
rate-limited plan), whose last valid quotes are reused in the cycles between while they are fresh. Push
sources hand over the frames received since the last cycle; their latest quote per coin is kept. A
failed fetch drops what the source had: nothing of it is used until it answers again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from cryptoviz import metrics
from cryptoviz.bus.base import Publisher
from cryptoviz.config import Settings
from cryptoviz.errors import CryptoVizError, LayoutChangedError, ParseError, SourceError, StoreError
from cryptoviz.history_gate import HistoryGate
from cryptoviz.models import CoinSnapshot, Rejection, SourceQuote
from cryptoviz.pairs import PairMapper
from cryptoviz.reconcile import ConsensusMemory, reconcile, remember
from cryptoviz.sources.base import PullSource, PushSource, RawPage, Source
from cryptoviz.sources.failed_pages import keep_failed_page
from cryptoviz.sources.registry import exchanges, parse_page, push_sources
from cryptoviz.sources.registry import namespaces as registry_namespaces
from cryptoviz.sources.spec import IdNamespace
from cryptoviz.store.runs import RunReport, SourceReport
from cryptoviz.store.state import KnownIds, MarketState, NoState, RunLog
from cryptoviz.timeutil import utc_now
from cryptoviz.validate import quote_time, timestamp, validate_quotes

logger = logging.getLogger(__name__)

PageSink = Callable[[RawPage, datetime], None]
# A scraped source reading fewer than this share of its last fetch's coins is flagged as layout drift.
DRIFT_SHARE = 0.5


def cycle_time(now: datetime | None = None) -> datetime:
    """A cycle's observed_at: UTC, whole seconds (the history key, and recorded file names)."""
    return (now or utc_now()).astimezone(UTC).replace(microsecond=0)


@dataclass(slots=True)
class SourceOutcome:
    """What one source delivered this cycle: a pull source's pages, or a push source's frames."""

    source: str
    pages: list[RawPage]
    error: SourceError | None = None
    seconds: float = 0.0
    breaker: str = "closed"
    push: bool = False


def _outcome(source: Source, take: Callable[[], list[RawPage]], *, push: bool) -> SourceOutcome:
    """What ``take()`` gives; whatever goes wrong stays inside this source's outcome."""
    started = time.monotonic()
    outcome = SourceOutcome(source.name, [], push=push)
    try:
        outcome.pages = take()
    except SourceError as exc:
        outcome.error = exc
    except Exception as exc:  # noqa: BLE001 - one broken source must never stop the others
        logger.exception("%s: unexpected error while %s", source.name, "taking frames" if push else "fetching")
        outcome.error = SourceError(source.name, f"unexpected {type(exc).__name__}: {exc}")
    outcome.seconds = time.monotonic() - started
    outcome.breaker = str(getattr(source, "breaker_state", "closed"))
    return outcome


def fetch_source(source: PullSource) -> SourceOutcome:
    """Fetch one pull source."""
    return _outcome(source, source.fetch, push=False)


def take_frames(source: PushSource) -> SourceOutcome:
    """The frames a push source received since the last cycle."""
    return _outcome(source, source.take_frames, push=True)


# --- what each source has to offer between fetches ------------------------------------------------------


@dataclass(slots=True)
class QuoteBooks:
    """Per source, the valid quotes it offers until its next fetch: a pull source's whole last listing, a
    push source's latest quote per (currency, coin). Quotes older than ``max_staleness`` are let go."""

    books: dict[str, dict[tuple[str, str], SourceQuote]] = field(default_factory=dict)

    def replace(self, source: str, quotes: Sequence[SourceQuote]) -> None:
        self.books[source] = {}
        self.update(source, quotes)

    def update(self, source: str, quotes: Sequence[SourceQuote]) -> None:
        book = self.books.setdefault(source, {})
        for q in quotes:
            key = (q.currency, q.source_id)
            held = book.get(key)
            if held is None or timestamp(quote_time(q)) >= timestamp(quote_time(held)):
                book[key] = q

    def drop(self, source: str) -> None:
        self.books.pop(source, None)

    def fresh(self, source: str, observed_at: datetime, max_staleness: float) -> list[SourceQuote]:
        """The source's quotes no older than ``max_staleness`` at ``observed_at`` (older ones are dropped)."""
        book = self.books.get(source)
        if not book:
            return []
        now = timestamp(observed_at)
        old = [key for key, q in book.items() if now - timestamp(quote_time(q)) > max_staleness]
        for key in old:
            del book[key]
        return list(book.values())


# --- one cycle, pure apart from logging ---------------------------------------------------------------


def keep_known_ids(snapshots: list[CoinSnapshot], known: KnownIds,
                   namespaces: Mapping[str, IdNamespace] | None = None) -> list[CoinSnapshot]:
    """Keep a coin under its usual id when the source that names it (CoinGecko) missed this cycle.

    Without this, a coin whose CoinGecko item was rejected once would be stored under another source's
    slug for that cycle: a second ``currencies`` row and a gap in its history. ``known`` maps (source or
    id namespace, that source's id) to the stored coin id.
    """
    if not known:
        return snapshots
    spaces = registry_namespaces() if namespaces is None else namespaces
    canonical = {name for name, ns in spaces.items() if ns.canonical}
    taken = {s.coin_id for s in snapshots}
    out = []
    for s in snapshots:
        if not any(v.source in canonical for v in s.sources):
            usual = _known_id(s, known, spaces)
            if usual and usual != s.coin_id and usual not in taken:
                taken.add(usual)
                s = replace(s, coin_id=usual)
        out.append(s)
    return out


def _known_id(s: CoinSnapshot, known: KnownIds, spaces: Mapping[str, IdNamespace]) -> str | None:
    for v in s.sources:
        found = known.get((v.source, v.source_id))
        if found is None and v.source in spaces:
            found = known.get((spaces[v.source].name, v.source_id))
        if found is not None:
            return found
    return None


def _parse_outcome(outcome: SourceOutcome, report: SourceReport, observed_at: datetime, settings: Settings,
                   suspects: list[tuple[RawPage, str]]) -> tuple[list[SourceQuote], list[Rejection], list[str]]:
    """(valid quotes, rejections, errors) of one source's pages or frames; a page no layout strategy
    could read goes to ``suspects``."""
    quotes: list[SourceQuote] = []
    rejected: list[Rejection] = []
    errors: list[str] = [str(outcome.error)] if outcome.error else []
    for page in outcome.pages:
        try:
            result = parse_page(page, settings.vs_currency)
        except LayoutChangedError as exc:
            errors.append(str(exc))
            report.layout = f"layout_changed: no coins found (tried {', '.join(exc.strategies_tried) or 'all'})"
            suspects.append((page, "layout-changed"))
            continue
        except (SourceError, ParseError) as exc:
            errors.append(str(exc))
            continue
        if result.strategy is not None:
            report.strategy = result.strategy
            report.fell_back = report.fell_back or bool(result.strategies_tried)
        quotes.extend(result.quotes)
        rejected.extend(result.rejected)
    top_n = settings.top_n
    if isinstance(top_n, int):
        # A source may answer with more coins than asked (CoinPaprika lists them all, a site's last page
        # runs past top_n): keep what was asked for. Unranked quotes (an exchange's) are kept.
        quotes = [q for q in quotes if q.rank is None or q.rank <= top_n]
    # fetched = every item the source delivered (up to top_n), whether it parsed or not
    report.fetched = len(quotes) + len(rejected)
    kept, invalid = validate_quotes(quotes, now=observed_at, max_staleness=settings.max_staleness,
                                    market_cap_tolerance=settings.market_cap_tolerance)
    rejected.extend(invalid)
    return kept, rejected, errors


def process(outcomes: Sequence[SourceOutcome], *, observed_at: datetime, settings: Settings,
            previous: Mapping[str, float] | None = None, known_ids: KnownIds | None = None,
            books: QuoteBooks | None = None, namespaces: Mapping[str, IdNamespace] | None = None,
            pairs: PairMapper | None = None, memory: ConsensusMemory | None = None,
            ) -> tuple[list[CoinSnapshot], RunReport]:
    """Parse, validate and reconcile one cycle. Pure apart from logging and ``books``.

    With ``books``, each source's valid quotes are kept there (a pull source's replace its last ones, a
    push source's update them; a failed source's are dropped) and every source with a book but no outcome
    this cycle contributes its fresh book quotes again (``reused`` in its report). With ``pairs``, exchange
    quotes are mapped to coins and converted to the vs currency before they are reconciled. ``memory``:
    what the previous reconciliation left for the next (``reconcile.remember``: its hysteresis).
    """
    spaces = registry_namespaces() if namespaces is None else namespaces
    run = RunReport(started_at=observed_at)
    valid: list[SourceQuote] = []
    for outcome in outcomes:
        report = SourceReport(outcome.source, pages=len(outcome.pages), seconds=outcome.seconds,
                              breaker=outcome.breaker)
        run.sources[outcome.source] = report
        kept, rejected, errors = _parse_outcome(outcome, report, observed_at, settings, run.suspect_pages)
        report.rejected = len(rejected)
        for r in rejected:
            report.reasons[r.reason] = report.reasons.get(r.reason, 0) + 1
        if not errors and not kept and not outcome.push:
            errors.append(_nothing_usable(outcome.source, report))
        if errors:
            report.error = "; ".join(errors)[:1000]
            run.errors.append(report.error)
        run.rejections.extend(rejected)
        if outcome.push:
            run.fresh.update((q.source, q.source_id) for q in kept)
        if books is not None:
            if outcome.push:
                books.update(outcome.source, kept)
                kept = books.fresh(outcome.source, observed_at, settings.max_staleness)
            elif outcome.error is None:
                books.replace(outcome.source, kept)
            else:
                books.drop(outcome.source)
        valid.extend(kept)
        if rejected:
            logger.warning("%s: %d item(s) rejected, e.g. %s", outcome.source, len(rejected), rejected[0])
    if books is not None:
        for source in sorted(set(books.books) - set(run.sources)):
            reused = books.fresh(source, observed_at, settings.max_staleness)
            if reused:
                run.sources[source] = SourceReport(source, reused=len(reused))
                valid.extend(reused)
    if pairs is not None:
        valid, mapping = pairs.map(valid)
        for source, mapped in mapping.items():
            run.sources.setdefault(source, SourceReport(source)).pairs = mapped.as_json()
    snapshots = reconcile(valid, observed_at=observed_at, trust=settings.trust_of,
                          max_staleness=settings.max_staleness,
                          disagreement_tolerance=settings.disagreement_tolerance, previous=previous,
                          namespaces=spaces, memory=memory)
    snapshots = keep_known_ids(snapshots, known_ids or {}, spaces)
    for s in snapshots:
        for used in s.sources_used:
            run.sources[used].used += 1
    run.coins = len(snapshots)
    failed = [r for r in run.sources.values() if r.error]
    run.status = "ok" if not failed else ("failed" if len(failed) == len(run.sources) else "partial")
    if run.sources and not snapshots:
        run.status = "failed"  # no source had anything usable: a cycle that stored nothing is not "ok"
    return snapshots, run


def _nothing_usable(source: str, report: SourceReport) -> str:
    """The error of a source that answered but gave not one usable quote (all rejected, stale or none)."""
    if not report.fetched:
        return f"{source}: no coin in the answer ({report.pages} page(s))"
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(report.reasons.items(), key=lambda kv: -kv[1])[:4])
    return (f"{source}: nothing usable: all {report.fetched} item(s) rejected ({reasons}); "
            "see quote_rejections for each one")


# --- the collector -------------------------------------------------------------------------------------


class Collector:
    """Runs cycles: fetch the due sources concurrently, take pushed frames, process, publish, record.

    ``intervals``: seconds between fetches per source (default: every cycle). ``state`` answers previous
    prices and known ids, ``runs`` keeps each cycle's report (both default to :class:`NoState`).
    """

    def __init__(self, settings: Settings, sources: Sequence[Source], publisher: Publisher, *,
                 state: MarketState | None = None, runs: RunLog | None = None,
                 page_sink: PageSink | None = None, intervals: Mapping[str, float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.sources = list(sources)
        self.publisher = publisher
        self.state: MarketState = state if state is not None else NoState()
        self.runs: RunLog = runs if runs is not None else NoState()
        self.page_sink = page_sink
        self.intervals = dict(intervals or {})
        self.books = QuoteBooks()
        names = {s.name for s in self.sources}
        pushed = {s.name for s in self.sources if isinstance(s, PushSource)} | (push_sources() & names)
        self.gate = HistoryGate(deviation=settings.history_deviation, heartbeat=settings.history_heartbeat,
                                volatile=frozenset(pushed))
        self.pairs = PairMapper(explicit=settings.symbol_map, vs_currency=settings.vs_currency,
                                exchanges=exchanges())
        # Live updates: with a stream thread (Pipeline), push frames are taken every stream_interval by
        # stream_tick() instead of by the cycle; the lock keeps a tick and a cycle from interleaving.
        self.streaming = False
        self._lock = threading.Lock()
        self._known_cache: tuple[dict[str, float], KnownIds] = ({}, {})
        self._memory = ConsensusMemory()  # what the last reconciliation left for the next (hysteresis)
        self._push_reports: dict[str, SourceReport] = {}
        self._clock = clock
        self._next_due: dict[str, float] = {}
        self._fetched: dict[str, int] = {}  # per scraped source: coins read at its last fetch
        self._namespaces = registry_namespaces()
        pulled = [s for s in self.sources if not isinstance(s, PushSource)]
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(pulled)), thread_name_prefix="source")
        self._started = False

    def start(self) -> None:
        """Open the push sources' connections."""
        for source in self.sources:
            if isinstance(source, PushSource):
                source.start()
        self._started = True

    def close(self) -> None:
        if self._started:
            for source in self.sources:
                if isinstance(source, PushSource):
                    try:
                        source.stop()
                    except Exception:  # noqa: BLE001 - stopping one feed must not keep the others open
                        logger.exception("%s: error while stopping", source.name)
            self._started = False
        self._pool.shutdown(wait=True, cancel_futures=True)

    def due(self) -> list[PullSource]:
        """The pull sources to fetch now; marks them fetched (a failure waits for the next due time too,
        so a rate-limited source is not asked again before its interval)."""
        now = self._clock()
        # Half a cycle of slack: a source due in 299.9 s goes with the cycle at 300 s, not the next one.
        slack = self.settings.interval / 2
        out: list[PullSource] = []
        for source in self.sources:
            if isinstance(source, PushSource):
                continue
            if now >= self._next_due.get(source.name, 0.0) - slack:
                self._next_due[source.name] = now + self.intervals.get(source.name, self.settings.interval)
                out.append(source)
        return out

    def run_cycle(self) -> RunReport:
        observed_at = cycle_time()
        outcomes = list(self._pool.map(fetch_source, self.due()))
        if not self.streaming:
            outcomes += [take_frames(s) for s in self.sources if isinstance(s, PushSource)]
        if self.page_sink is not None:
            for outcome in outcomes:
                for page in outcome.pages:
                    self.page_sink(page, observed_at)
        return self.publish(outcomes, observed_at)

    def _known(self) -> tuple[dict[str, float], KnownIds]:
        """Previous consensus prices and known coin ids; empty when the store cannot say."""
        try:
            return self.state.previous_prices(), self.state.known_ids()
        except StoreError as exc:
            logger.warning("previous consensus unavailable (%s): disagreements are settled without it", exc)
            return {}, {}

    def publish(self, outcomes: Sequence[SourceOutcome], observed_at: datetime, *,
                replayed: bool = False) -> RunReport:
        """Process, publish and record one cycle. ``replayed``: the pages were recorded earlier, so the
        cycle ends at the capture's last time, not now (its duration, its rejections' time)."""
        previous, known_ids = self._known()
        with self._lock:
            self._known_cache = (previous, known_ids)
            snapshots, run = process(outcomes, observed_at=observed_at, settings=self.settings,
                                     previous=previous, known_ids=known_ids, books=self.books,
                                     namespaces=self._namespaces, pairs=self.pairs, memory=self._memory)
            self._memory = remember(snapshots)
            snapshots = self.gate.apply(snapshots)
            self.pairs.learn(snapshots)
            self._report_feeds(run)
            if snapshots:
                self.publisher.publish(snapshots)
        if not replayed:
            self._feed_breakers(outcomes, run)
        run.recorded = sum(1 for s in snapshots if s.record)
        run.published = len(snapshots)
        self._watch_layouts(outcomes, run)
        run.finished_at = (max((p.fetched_at for o in outcomes for p in o.pages), default=observed_at)
                           if replayed else utc_now())
        metrics.observe_run(run)
        try:
            self.runs.record_run(run)
        except StoreError as exc:
            logger.error("cycle done but not recorded in pipeline_runs: %s", exc)
        log_cycle(run)
        return run

    def _feed_breakers(self, outcomes: Sequence[SourceOutcome], run: RunReport) -> None:
        """Tell each fetched source whether its answer held a usable quote: answering nothing usable again
        and again opens its circuit breaker as failures do (a fetch error already counted as one)."""
        by_name = {s.name: s for s in self.sources}
        for outcome in outcomes:
            report = run.sources.get(outcome.source)
            if outcome.push or outcome.error is not None or report is None:
                continue
            record = getattr(by_name.get(outcome.source), "record_usable", None)
            if record is not None:
                record(bool(report.used) or not report.error)

    def stream_tick(self) -> list[CoinSnapshot]:
        """A live update: take the push sources' new frames and publish, at once, the coins they moved
        (reconciled with every source's latest quotes). The cycle's run report counts the ticks' frames."""
        outcomes = [take_frames(s) for s in self.sources if isinstance(s, PushSource)]
        if not any(o.pages or o.error for o in outcomes):
            return []
        observed_at = cycle_time()
        if self.page_sink is not None:
            for outcome in outcomes:
                for page in outcome.pages:
                    self.page_sink(page, observed_at)
        with self._lock:
            previous, known_ids = self._known_cache
            snapshots, run = process(outcomes, observed_at=observed_at, settings=self.settings,
                                     previous=previous, known_ids=known_ids, books=self.books,
                                     namespaces=self._namespaces, pairs=self.pairs, memory=self._memory)
            self._memory = remember(snapshots)
            moved = [s for s in snapshots if any((v.source, v.source_id) in run.fresh for v in s.sources)]
            moved = self.gate.apply(moved)
            self.pairs.learn(moved)
            if moved:
                self.publisher.publish(moved)
            ticked = {o.source for o in outcomes}
            for name, report in run.sources.items():
                if name in ticked:
                    self._add_push_report(report)
        metrics.observe_stream(len(moved), sum(1 for s in moved if s.record))
        return moved

    def _add_push_report(self, report: SourceReport) -> None:
        held = self._push_reports.setdefault(report.source, SourceReport(report.source))
        held.fetched += report.fetched
        held.rejected += report.rejected
        held.pages += report.pages
        for reason, n in report.reasons.items():
            held.reasons[reason] = held.reasons.get(reason, 0) + n
        held.pairs = report.pairs or held.pairs
        if report.error:
            held.error = report.error

    def _report_feeds(self, run: RunReport) -> None:
        """Each push source's part in the cycle's report: what its frames brought since the last cycle
        (taken by the live ticks) and the state of its connection."""
        for source in self.sources:
            if not isinstance(source, PushSource):
                continue
            report = run.sources.setdefault(source.name, SourceReport(source.name))
            ticks = self._push_reports.pop(source.name, None)
            if ticks is not None:
                report.fetched, report.rejected, report.pages = ticks.fetched, ticks.rejected, ticks.pages
                report.reasons, report.pairs = ticks.reasons, ticks.pairs or report.pairs
                report.error = report.error or ticks.error
            try:
                status = source.status()
            except Exception:  # noqa: BLE001 - a feed's report must not break the cycle
                logger.exception("%s: status failed", source.name)
                continue
            report.feed = status.as_json()
            if status.disabled and not report.error:
                report.error = f"{source.name}: switched off: {status.disabled}"
            elif not status.connected and not report.fetched and not report.error:
                why = f": {status.last_error}" if status.last_error else ""
                report.error = f"{source.name}: not connected{why}; reconnecting with backoff"

    def _watch_layouts(self, outcomes: Sequence[SourceOutcome], run: RunReport) -> None:
        """Layout drift: a scraped source whose pages yield far fewer coins than its last fetch did is
        flagged before it yields none; the pages no strategy could read, or the shrunken ones, are kept
        under ``CRYPTOVIZ_FAILED_PAGES_DIR`` for a bug report."""
        for outcome in outcomes:
            report = run.sources.get(outcome.source)
            if report is None or outcome.push or not outcome.pages or report.strategy is None:
                continue
            before = self._fetched.get(outcome.source)
            if before and report.fetched < before * DRIFT_SHARE and report.layout is None:
                report.layout = f"layout_changed: {report.fetched} coins vs {before} at the last fetch"
                run.suspect_pages.extend((page, "fewer-coins") for page in outcome.pages)
            if report.fetched:
                self._fetched[outcome.source] = report.fetched
        for page, reason in run.suspect_pages:
            try:
                path = keep_failed_page(self.settings.failed_pages_dir, page.source, page.body, reason)
            except OSError as exc:
                logger.warning("%s: could not keep the page %s (%s)", page.source, page.url, exc)
                continue
            logger.warning("%s: %s; page kept as %s (attach it to a bug report)", page.source,
                           run.sources[page.source].layout, path)


def log_cycle(run: RunReport) -> None:
    parts = [f"{name} {r.reused} reused" if r.reused else
             f"{name} {r.fetched - r.rejected}/{r.fetched}" + (" ERROR" if r.error else "")
             for name, r in run.sources.items()]
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    logger.info("cycle %s: %d coins published (%d changed) in %.1fs (%s)", run.status, run.published,
                run.recorded, seconds, ", ".join(parts) or "no sources")
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
