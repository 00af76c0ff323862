"""Backfill: the candle tiers' past from a source's history API (``cryptoviz backfill``).

For each coin, the past ``days`` days are fetched (CoinGecko's ``market_chart``, or CoinMarketCap's
historical quotes with a key whose plan has them) and its points go into every candle tier whose bucket is
at least the points' spacing: 5-minutely points into 5m, 1h and 1d, hourly ones into 1h and 1d, daily ones
into 1d. The candles are written with :func:`cryptoviz.store.candles.write_backfill`: marked backfilled
(``n_backfill``), only where no live history row reached the bucket, so live data is never overwritten and a
second run writes the same rows.

* **Resumable.** Each coin is written in a transaction of its own, and a coin whose requested range already
  has candles of its tier (backfilled or live) is skipped: after an interruption (Ctrl+C finishes the coin
  in hand), the same command goes on where it stopped.
* **A share of the budget.** Backfill requests go through the source's rate limiter in the shared
  :class:`~cryptoviz.sources.http.HttpClient` (in a process that also collects, pass its client: one limiter
  counts both) and, before that, through a limiter of their own at :data:`BACKFILL_SHARE` of the source's
  per-minute budget, so live cycles never starve.
* **Gaps.** With ``gaps=True`` the coins are those with gaps (:mod:`cryptoviz.store.gaps`) and each gap is
  filled at the best granularity the source has for its age: 5-minutely within the last day, hourly up to
  90 days, daily beyond.

A coin the source does not know is reported and skipped; a failed coin is reported with its reason and the
others go on; an error about the source as a whole (a key, a plan, the 365-day limit) stops the run.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cryptoviz.config import Settings
from cryptoviz.errors import (
    ConfigError,
    CryptoVizError,
    ParseError,
    SourceError,
    StoreError,
    TransientSourceError,
)
from cryptoviz.runtime import UNTHROTTLED, open_store
from cryptoviz.sources import coingecko, coingecko_history, coinmarketcap, coinmarketcap_history
from cryptoviz.sources.coingecko_history import (
    History,
    HistoryPoint,
    MarketChartClient,
    UnknownCoinError,
    granularity,
    parse_market_chart,
    range_error,
)
from cryptoviz.sources.coinmarketcap_history import QuotesHistoricalClient, parse_quotes_historical
from cryptoviz.sources.http import HttpClient, RateLimiter
from cryptoviz.sources.spec import RequestBudget
from cryptoviz.store.candles import (
    TIER_BY_NAME,
    TIERS,
    Candle,
    Point,
    Tier,
    aggregate,
    bucket_of,
    write_backfill,
)
from cryptoviz.store.engine import redact
from cryptoviz.store.gaps import Gap, default_min_length, find_gaps
from cryptoviz.store.tables import currencies, currency_data
from cryptoviz.timeutil import utc_now

logger = logging.getLogger(__name__)

# Backfill takes at most this share of a source's per-minute request budget; live collection keeps the rest.
BACKFILL_SHARE = 0.5
SOURCES = ("coingecko", "coinmarketcap")
LOG_EVERY = 10  # coins between two progress log lines when no bar is shown
COVERAGE_SLACK = 0.01  # share of a range's buckets that may be missing for it to count as covered (>= 3)
RETRY_WAIT_CAP = 120.0  # seconds a coin waits once for a rate limit or an open breaker before failing
GAP_LIMIT = 10_000  # gaps read for --gaps
DEMO_DAYS = (2, 1)  # the demo's past: 2 days hourly and, finer, the last day 5-minutely
DEMO_WORKERS = 16  # a local simulator has no budget: fetch in parallel


# --- sources ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A coin to backfill: its id in CryptoViz and in the source."""

    coin: str
    source_id: str


class HistorySource(Protocol):
    name: str
    max_days: int | None  # how far back the source serves (None: as far as the key's plan allows)
    budget: RequestBudget

    def fetch(self, target: Target, days: int, now: datetime) -> History: ...
    def top(self, n: int) -> list[Target]: ...
    def source_id(self, row: Mapping[str, Any]) -> str | None: ...


class CoinGeckoHistory:
    """CoinGecko's ``market_chart``: keyless or with a demo key, at most the past 365 days."""

    name = coingecko.SOURCE
    max_days: int | None = 365

    def __init__(self, settings: Settings, http: HttpClient) -> None:
        self._settings = settings
        self._client = MarketChartClient(settings, http)
        self.budget = coingecko_history.budget(settings)

    def fetch(self, target: Target, days: int, now: datetime) -> History:
        page = self._client.fetch(target.source_id, days)
        history = parse_market_chart(page.body, target.source_id)
        history.coin = target.coin
        return history

    def top(self, n: int) -> list[Target]:
        url = f"{self._settings.coingecko_base_url.rstrip('/')}/coins/markets"
        per_page, pages = coingecko.page_plan(n)
        found: list[Target] = []
        for number in range(1, pages + 1):
            params: dict[str, str | int] = {"vs_currency": self._settings.vs_currency, "order": "market_cap_desc",
                                            "per_page": per_page, "page": number}
            page = self._client.get(url, params, coingecko.check_response)
            quotes = coingecko.parse_markets(page.body, page.fetched_at, self._settings.vs_currency).quotes
            found += [Target(q.source_id, q.source_id) for q in quotes]
            if len(quotes) < per_page:
                break
        return found[:n]

    def source_id(self, row: Mapping[str, Any]) -> str | None:
        value = row.get("coingecko_id")
        return str(value) if value else None


class CoinMarketCapHistory:
    """CoinMarketCap's historical quotes: a key on a plan that has them (not the free Basic plan)."""

    name = coinmarketcap.SOURCE
    max_days: int | None = None

    def __init__(self, settings: Settings, http: HttpClient) -> None:
        self._settings = settings
        self._client = QuotesHistoricalClient(settings, http)
        self.budget = coinmarketcap_history.budget(settings)

    def fetch(self, target: Target, days: int, now: datetime) -> History:
        page = self._client.fetch(target.source_id, now - timedelta(days=days), now)
        history = parse_quotes_historical(page.body, target.source_id, self._settings.vs_currency)
        history.coin = target.coin
        return history

    def top(self, n: int) -> list[Target]:
        url = f"{self._settings.coinmarketcap_base_url.rstrip('/')}/v1/cryptocurrency/listings/latest"
        params: dict[str, str | int] = {"start": 1, "limit": min(n, coinmarketcap.MAX_LIMIT),
                                        "convert": self._settings.vs_currency.upper()}
        page = self._client.get(url, params, coinmarketcap.check_response)
        quotes = coinmarketcap.parse_listings(page.body, page.fetched_at, self._settings.vs_currency).quotes
        # Without a stored coin to join, a coin is known by its slug (most equal CoinGecko's ids).
        return [Target((q.slug or f"{self.name}:{q.source_id}").lower(), q.source_id) for q in quotes][:n]

    def source_id(self, row: Mapping[str, Any]) -> str | None:
        value = row.get("coinmarketcap_id")
        return str(value) if value else None


def history_source(name: str, settings: Settings, http: HttpClient) -> HistorySource:
    """The history source called ``name``; a ``ConfigError`` for another name or a missing key."""
    if name == coingecko.SOURCE:
        return CoinGeckoHistory(settings, http)
    if name == coinmarketcap.SOURCE:
        if not coinmarketcap.has_key(settings):
            raise ConfigError(f"--source coinmarketcap needs {coinmarketcap.KEY_VAR}, on a plan with historical "
                              "quotes (the free Basic plan has none); or use --source coingecko")
        return CoinMarketCapHistory(settings, http)
    raise ConfigError(f"unknown --source {name!r}; use one of: {', '.join(SOURCES)}")


# --- plans and results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetch:
    """One request for a coin: the past ``days`` days, expected ``step`` seconds apart; ``keep`` limits the
    points written to those ranges (gap filling; empty: all)."""

    days: int
    step: int
    keep: tuple[tuple[datetime, datetime], ...] = ()

    @property
    def tier(self) -> Tier:
        """The finest tier the points fill, the one whose coverage says the fetch is done."""
        return next(t for t in TIERS if t.seconds >= self.step)


@dataclass(slots=True)
class Job:
    target: Target
    fetches: list[Fetch]
    gaps: int = 0


Status = Literal["done", "skipped", "failed"]


@dataclass(slots=True)
class CoinResult:
    coin: str
    status: Status
    reason: str = ""
    points: int = 0
    rejected: int = 0
    written: dict[str, int] = field(default_factory=dict)
    gaps: int = 0


@dataclass(slots=True)
class Report:
    """What a run did: one result per coin handled, and why it stopped early if it did."""

    source: str
    days: int
    planned: int = 0
    results: list[CoinResult] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    fetched: int = 0  # of the planned coins, those handled
    interrupted: bool = False
    error: SourceError | None = None  # what stopped the run (a key, a plan, the source's range)
    gaps_found: int | None = None  # with gaps=True
    source_top: int | None = None  # the coins are the source's own top N (an empty database)
    gaps_skipped: list[str] = field(default_factory=list)

    def of(self, status: Status) -> list[CoinResult]:
        return [r for r in self.results if r.status == status]

    @property
    def points(self) -> int:
        return sum(r.points for r in self.results)

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self.results)

    def written(self) -> dict[str, int]:
        return {t.name: sum(r.written.get(t.name, 0) for r in self.results) for t in TIERS}

    @property
    def left(self) -> int:
        """Planned coins not handled (an interruption, or an error that stopped the run)."""
        return self.planned - self.fetched


# --- choosing the coins ------------------------------------------------------------------------------


def _stored(conn: sa.Connection, ids: Sequence[str] | None, limit: int | None) -> list[dict[str, Any]]:
    """Stored coins: ``ids`` (any order), or the ``limit`` largest by market cap."""
    c, d = currencies.c, currency_data.c
    query = sa.select(c.id, c.coingecko_id, c.coinmarketcap_id).select_from(
        currencies.outerjoin(currency_data, d.currency_id == c.id))
    if ids is not None:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            rows += [dict(r) for r in conn.execute(query.where(c.id.in_(ids[start:start + 500]))).mappings()]
        return rows
    query = query.order_by(d.market_cap.desc().nulls_last(), c.id).limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def parse_coins(spec: str) -> int | list[str]:
    """``top:N`` -> N; ``a,b`` -> the ids. Raises ``ConfigError`` for anything else."""
    text = spec.strip()
    if text.lower().startswith("top:"):
        number = text[4:].strip()
        if not number.isdigit() or int(number) < 1:
            raise ConfigError(f"--coins {spec!r}: expected top:N with N >= 1, or a comma list of coin ids")
        return int(number)
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ConfigError("--coins is empty: give top:N or a comma list of coin ids")
    return ids


def _source_id(source: HistorySource, coin: str, row: Mapping[str, Any] | None) -> str | None:
    """``coin``'s id in ``source``: from its stored row; a coin not stored is taken as a CoinGecko id."""
    if row is not None:
        return source.source_id(row)
    return coin if source.name == coingecko.SOURCE else None


def choose(engine: sa.Engine, source: HistorySource, spec: str) -> tuple[list[Target] | int, list[CoinResult]]:
    """The coins ``spec`` names (see :func:`parse_coins`) as targets of ``source``, and the coins it cannot
    backfill (no id in that source) as skipped results. ``top:N`` takes the N largest stored coins; on an
    empty database it returns N: the source's own top N are wanted."""
    wanted = parse_coins(spec)
    with engine.connect() as conn:
        if isinstance(wanted, int):
            rows = _stored(conn, None, wanted)
            if not rows:
                return wanted, []
            order = [str(row["id"]) for row in rows]
        else:
            rows, order = _stored(conn, wanted, None), wanted
    by_id = {str(row["id"]): row for row in rows}
    targets: list[Target] = []
    skipped: list[CoinResult] = []
    for coin in order:
        known = _source_id(source, coin, by_id.get(coin))
        if known is None:
            skipped.append(CoinResult(coin, "skipped", f"no {source.name} id known for this coin"))
        else:
            targets.append(Target(coin, known))
    return targets, skipped


def covered(engine: sa.Engine, coins: Sequence[str], fetch: Fetch, now: datetime) -> set[str]:
    """The coins whose candles of ``fetch.tier`` already cover its range (live or backfilled), but for
    :data:`COVERAGE_SLACK` of the buckets (at least 3: the current one may still be open, a point or two
    may have been rejected)."""
    tier = fetch.tier
    start = (now - timedelta(days=fetch.days)).timestamp()
    first = datetime.fromtimestamp(math.ceil(start / tier.seconds) * tier.seconds, UTC)
    expected = int((bucket_of(now, tier.seconds) - first).total_seconds() // tier.seconds) + 1
    enough = expected - max(3, math.ceil(expected * COVERAGE_SLACK))
    t = tier.table.c
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(coins), 500):
            query = (sa.select(t.currency_id, sa.func.count()).where(
                t.currency_id.in_(coins[start:start + 500]), t.bucket >= first, t.bucket <= now)
                .group_by(t.currency_id))
            found |= {coin for coin, n in conn.execute(query) if n >= enough}
    return found


def plan_gaps(gaps: Iterable[Gap], now: datetime, max_days: int | None) -> tuple[dict[str, list[Fetch]], list[str]]:
    """Fetches per coin that fill ``gaps`` at the best granularity for their age, and the gaps that cannot
    be filled (with why)."""
    classes: dict[tuple[str, int], list[Gap]] = {}
    skipped: list[str] = []
    for gap in gaps:
        age = (now - gap.start).total_seconds() / 86_400
        days = max(1, math.ceil(age))
        step = granularity(days)
        tier = next(t for t in TIERS if t.seconds >= step)
        where = f"{gap.coin} {gap.start:%Y-%m-%d %H:%M}-{gap.end:%H:%M}"
        if max_days is not None and days > max_days:
            skipped.append(f"{where}: older than the {max_days} days the source serves")
            continue
        first = math.floor(gap.start.timestamp() / tier.seconds) * tier.seconds + tier.seconds
        if first + tier.seconds > gap.end.timestamp():  # no bucket between the observations around the gap
            skipped.append(f"{where}: shorter than one {tier.name} bucket, the finest grain served {days} days back")
            continue
        classes.setdefault((gap.coin, step), []).append(gap)
    plans: dict[str, list[Fetch]] = {}
    for (coin, step), held in sorted(classes.items()):
        # back to a point before the oldest gap (a step earlier), within the reach of the granularity
        reach = max((now - g.start).total_seconds() + step for g in held) / 86_400
        days = {300: 1, 3600: min(90, max(2, math.ceil(reach)))}.get(step, max(91, math.ceil(reach)))
        if max_days is not None:
            days = min(days, max_days)
        pad = timedelta(seconds=step)
        keep = tuple((g.start - pad, g.end + pad) for g in held)
        plans.setdefault(coin, []).append(Fetch(days, step, keep))
    return plans, skipped


# --- progress ---------------------------------------------------------------------------------------


class Tally:
    """Progress: a live bar on a terminal, else a log line every :data:`LOG_EVERY` coins."""

    def __init__(self, total: int, label: str, console: Console | None = None, *, quiet: bool = False) -> None:
        self.total, self.label, self.done, self.quiet = total, label, 0, quiet
        self.counts: Counter[str] = Counter()
        self._bar: Progress | None = None
        self._task: Any = None
        if console is not None and console.is_terminal and total > 1:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("coins"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console, transient=True)
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def add(self, result: CoinResult) -> None:
        self.done += 1
        self.counts[result.status] += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif not self.quiet and (self.done % LOG_EVERY == 0 or self.done == self.total):
            logger.info("%s: %d/%d coins (%d done, %d skipped, %d failed)", self.label, self.done, self.total,
                        self.counts["done"], self.counts["skipped"], self.counts["failed"])

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# --- running ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Fetched:
    job: Job
    histories: list[tuple[Fetch, History]] = field(default_factory=list)
    skipped: str | None = None
    error: CryptoVizError | None = None
    fatal: SourceError | None = None
    interrupted: bool = False
    points: int = 0
    rejected: int = 0
    candles: dict[str, list[Candle]] = field(default_factory=dict)


class Backfill:
    """One backfill run against one history source (see the module docstring).

    ``http``: the process's ``HttpClient`` when it also collects (one limiter counts both), else a client of
    the backfill's own. ``throttle=False`` lifts every limit (a local simulator). ``stop`` ends the run
    after the coins in hand. ``workers``: coins fetched at once (the budget's share paces them all).
    Progress shows as a bar on ``console`` when it is a terminal, else as log lines (none when ``quiet``).
    """

    def __init__(self, engine: sa.Engine, settings: Settings, source: str | HistorySource = "coingecko", *,
                 http: HttpClient | None = None, throttle: bool = True, stop: threading.Event | None = None,
                 workers: int = 1, now: Callable[[], datetime] = utc_now, console: Console | None = None,
                 quiet: bool = False) -> None:
        self.engine, self.settings, self.console, self.quiet = engine, settings, console, quiet
        self._own_http = http is None
        self.http = http if http is not None else HttpClient(settings)
        self.source = history_source(source, settings, self.http) if isinstance(source, str) else source
        budget = self.source.budget
        name = self.source.name
        if not throttle:
            self.http.set_rate_limit(name, *UNTHROTTLED)
        elif self.http.limiter(name) is None:
            self.http.set_rate_limit(name, budget.per_minute, budget.burst)
        self.gate = RateLimiter(budget.per_minute * BACKFILL_SHARE, 1) if throttle else None
        self.stop = stop if stop is not None else threading.Event()
        self._halt = threading.Event()  # stop, or a fatal error: workers stop taking turns
        self.workers = max(1, workers)
        self._now = now
        self._requests = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> Backfill:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- planning --

    def check_days(self, days: int) -> None:
        if days < 1:
            raise ConfigError(f"--days must be at least 1, got {days}")
        limit = self.source.max_days
        if limit is not None and days > limit:
            raise range_error(days)

    def plan(self, targets: Sequence[Target], days: Sequence[int], now: datetime) -> tuple[list[Job], list[CoinResult]]:
        """A job per target with the fetches its candles do not cover yet; fully covered coins as skipped."""
        fetches = [Fetch(d, granularity(d)) for d in days]
        coins = [t.coin for t in targets]
        done = [covered(self.engine, coins, f, now) for f in fetches]
        jobs: list[Job] = []
        skipped: list[CoinResult] = []
        for target in targets:
            wanted = [f for f, have in zip(fetches, done, strict=True) if target.coin not in have]
            if wanted:
                jobs.append(Job(target, wanted))
            else:
                skipped.append(CoinResult(target.coin, "skipped", "already covered"))
        return jobs, skipped

    def plan_gaps(self, days: int, now: datetime, coins: Sequence[str] | None) -> tuple[list[Job], Report]:
        """Jobs that fill the gaps of the last ``days`` days (of ``coins``, or of every coin)."""
        report = Report(self.source.name, days)
        gaps = find_gaps(self.engine, since=now - timedelta(days=days), until=now,
                         min_length=default_min_length(self.settings), limit=GAP_LIMIT, coins=coins)
        report.gaps_found = len(gaps)
        plans, report.gaps_skipped = plan_gaps(gaps, now, self.source.max_days)
        with self.engine.connect() as conn:
            rows = {str(r["id"]): r for r in _stored(conn, list(plans), None)}
        jobs: list[Job] = []
        for coin, fetches in plans.items():
            source_id = _source_id(self.source, coin, rows.get(coin))
            held = sum(len(f.keep) for f in fetches)
            if source_id is None:
                report.results.append(CoinResult(coin, "skipped", f"no {self.source.name} id known", gaps=held))
            else:
                jobs.append(Job(Target(coin, source_id), fetches, gaps=held))
        return jobs, report

    def prepare(self, *, days: int = 30, coins: str = "top:100", gaps: bool = False, fetch_top: bool = True,
                now: datetime | None = None) -> tuple[list[Job], Report]:
        """The jobs of a run and its report so far (coins skipped before fetching anything): ``coins``
        over the past ``days`` days, or with ``gaps`` the gaps of those days (of ``coins``)."""
        self.check_days(days)
        moment = now or self._now()
        if gaps:
            wanted = parse_coins(coins)
            if isinstance(wanted, int):
                with self.engine.connect() as conn:
                    wanted = [str(row["id"]) for row in _stored(conn, None, wanted)]
            return self.plan_gaps(days, moment, wanted)
        report = Report(self.source.name, days)
        chosen, report.results = choose(self.engine, self.source, coins)
        targets = self.top(chosen, report, fetch_top) if isinstance(chosen, int) else chosen
        jobs, skipped = self.plan(targets, (days,), moment)
        report.results += skipped
        return jobs, report

    def top(self, n: int, report: Report, fetch: bool = True) -> list[Target]:
        """The source's own top ``n`` coins (an empty database), within the backfill's share of the budget."""
        report.source_top = n
        if not fetch or not self._turn():
            return []
        self._requests += 1
        return self.source.top(n)

    # -- running --

    def run(self, jobs: Sequence[Job], report: Report) -> Report:
        """Fetch and write ``jobs``, adding a result per coin to ``report``; returns it."""
        began = time.monotonic()
        self._halt.clear()
        report.planned += len(jobs)
        tally = Tally(len(jobs), f"backfill from {self.source.name}", self.console, quiet=self.quiet)
        try:
            for fetched in self._fetched(jobs):
                if fetched.interrupted:
                    report.interrupted = True
                    continue
                if fetched.fatal is not None:
                    report.error = fetched.fatal
                    self._halt.set()
                    break
                result = self._result(fetched)
                report.results.append(result)
                report.fetched += 1
                tally.add(result)
        except KeyboardInterrupt:
            report.interrupted = True
            self._halt.set()
            raise
        finally:
            tally.close()
            report.interrupted = report.interrupted or (self.stop.is_set() and report.left > 0)
            report.requests += self._requests
            report.seconds += time.monotonic() - began
        return report

    def _fetched(self, jobs: Sequence[Job]) -> Iterator[_Fetched]:
        """Each job's fetched histories as they come, ``workers`` jobs at a time (and as many queued). On a
        stop, the jobs not started are dropped and those in hand finish; an error that ends the run ends it
        at once."""
        queue = iter(jobs)
        pending: set[Future[_Fetched]] = set()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="backfill") as pool:
            try:
                while True:
                    while (not self.stop.is_set() and len(pending) < self.workers * 2
                           and (job := next(queue, None)) is not None):
                        pending.add(pool.submit(self._fetch, job))
                    if self.stop.is_set():
                        pending = {f for f in pending if not f.cancel()}
                    if not pending:
                        return
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        fetched = future.result()
                        yield fetched
                        if fetched.fatal is not None:
                            return
            finally:
                self._halt.set()
                for future in pending:
                    future.cancel()

    def _turn(self) -> bool:
        """Wait for the backfill's share of the budget; False when the run is stopping."""
        while not (self.stop.is_set() or self._halt.is_set()):
            wait = self.gate.try_acquire() if self.gate is not None else 0.0
            if wait <= 0:
                return True
            self._halt.wait(min(wait, 0.5))
        return False

    def _fetch(self, job: Job) -> _Fetched:
        out = _Fetched(job)
        now = self._now()
        for fetch in job.fetches:
            for attempt in (1, 2):
                if not self._turn():
                    out.interrupted = True
                    return out
                try:
                    with self._lock:
                        self._requests += 1
                    out.histories.append((fetch, self.source.fetch(job.target, fetch.days, now)))
                    break
                except UnknownCoinError as exc:
                    logger.info("%s", exc)
                    out.skipped = f"unknown to {self.source.name}"
                    return out
                except TransientSourceError as exc:
                    wait = exc.retry_after
                    if attempt == 2 or wait is None or wait > RETRY_WAIT_CAP:
                        out.error = exc
                        return out
                    logger.info("%s: %s; trying again in %.0fs", job.target.coin, _reason(exc), wait)
                    if self.stop.wait(wait):
                        out.interrupted = True
                        return out
                except SourceError as exc:
                    out.fatal = exc
                    return out
                except ParseError as exc:
                    out.error = exc
                    return out
        self._candles(out)
        return out

    def _candles(self, fetched: _Fetched) -> None:
        """Turn the fetched points into each tier's candles (in the worker, beside the other fetches)."""
        coin = fetched.job.target.coin
        by_tier: dict[str, dict[datetime, HistoryPoint]] = {t.name: {} for t in TIERS}
        for fetch, history in fetched.histories:
            fetched.rejected += len(history.rejected)
            kept = [p for p in history.points if not fetch.keep or any(a <= p.at <= b for a, b in fetch.keep)]
            fetched.points += len(kept)
            spacing = history.spacing() or fetch.step
            for tier in TIERS:
                if tier.seconds >= spacing * 0.9:
                    by_tier[tier.name].update((p.at, p) for p in kept)
        for name, held in by_tier.items():
            if held:
                points = (Point(coin, p.at, p.price, p.market_cap, p.volume_24h, sources=self.source.name)
                          for p in held.values())
                fetched.candles[name] = list(aggregate(points, TIER_BY_NAME[name].seconds, backfill=True).values())

    def _result(self, fetched: _Fetched) -> CoinResult:
        """Write a fetched coin's candles (one transaction) and say how it went."""
        job = fetched.job
        coin = job.target.coin
        if fetched.skipped is not None:
            return CoinResult(coin, "skipped", fetched.skipped, gaps=job.gaps)
        if fetched.error is not None:
            return CoinResult(coin, "failed", _reason(fetched.error), gaps=job.gaps)
        if not fetched.points:
            return CoinResult(coin, "skipped", f"{self.source.name} has no points for it", rejected=fetched.rejected,
                              gaps=job.gaps)
        try:
            with self.engine.begin() as conn:
                written = {name: write_backfill(conn, TIER_BY_NAME[name], candles)
                           for name, candles in fetched.candles.items()}
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreError(f"cannot write the candles of {coin} to {redact(str(self.engine.url))}: {reason}") \
                from None
        return CoinResult(coin, "done", points=fetched.points, rejected=fetched.rejected, written=written,
                          gaps=job.gaps)


def _reason(exc: Exception) -> str:
    text = str(exc)
    source = getattr(exc, "source", None)
    return text.removeprefix(f"{source}: ") if source else text


# --- entry points -----------------------------------------------------------------------------------


def backfill(engine: sa.Engine, settings: Settings, *, days: int = 30, coins: str = "top:100",
             source: str = "coingecko", gaps: bool = False, http: HttpClient | None = None, throttle: bool = True,
             stop: threading.Event | None = None, workers: int = 1, console: Console | None = None,
             now: Callable[[], datetime] = utc_now) -> Report:
    """Backfill ``coins`` over the past ``days`` days from ``source`` (or, with ``gaps``, fill the gaps of
    those days) and return the report; see :class:`Backfill` for the other arguments."""
    run = Backfill(engine, settings, source, http=http, throttle=throttle, stop=stop, workers=workers, now=now,
                   console=console)
    try:
        jobs, report = run.prepare(days=days, coins=coins, gaps=gaps)
        return run.run(jobs, report)
    finally:
        run.close()


def demo_history(settings: Settings, coins: Sequence[str]) -> Report | None:
    """The demo's past from its local simulator, before the live cycles start: 2 days hourly and the last
    day 5-minutely for ``coins`` (CoinGecko ids), unthrottled and in parallel. A failure is logged, never
    raised: the demo goes on without its past."""
    engine = open_store(settings)
    run = Backfill(engine, settings, "coingecko", throttle=False, workers=DEMO_WORKERS, quiet=True)
    try:
        report = Report(run.source.name, max(DEMO_DAYS))
        chosen, report.results = choose(engine, run.source, ",".join(coins))
        jobs, skipped = run.plan(chosen if isinstance(chosen, list) else [], DEMO_DAYS, run._now())
        report.results += skipped
        run.run(jobs, report)
    except CryptoVizError as exc:
        logger.warning("demo: no past backfilled (%s); the charts start now", exc)
        return None
    finally:
        run.close()
        engine.dispose()
    written = report.written()
    logger.info("demo: past backfilled for %d coins in %.1fs (%s candles; %d already there)", len(report.of("done")),
                report.seconds, ", ".join(f"{n} {t}" for t, n in written.items()), len(report.of("skipped")))
    if report.error is not None:
        logger.warning("demo: backfill stopped: %s", report.error)
    return report


# --- what the command line shows --------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``4000`` -> ``1h06m``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _grouped(reasons: Iterable[str]) -> str:
    counts = Counter(reasons)
    return ", ".join(f"{reason} ({n})" for reason, n in counts.most_common())


def plan_lines(jobs: Sequence[Job], report: Report, share: float | None, budget: RequestBudget) -> list[str]:
    """What a dry run says: the coins, the requests and how long they take at the backfill's share."""
    requests = sum(len(j.fetches) for j in jobs)
    lines = [f"would backfill {len(jobs)} coin(s) from {report.source}, {report.days} day(s): {requests} request(s)"]
    if share is not None and requests:
        rate = budget.per_minute * share
        lines[0] += f", about {format_seconds(60 * requests / rate)} at {rate:g} a minute"
    steps = Counter(f.step for j in jobs for f in j.fetches)
    for step, n in sorted(steps.items()):
        tiers = ", ".join(t.name for t in TIERS if t.seconds >= step)
        lines.append(f"  {n} fetch(es) of {format_seconds(step)} points -> candles {tiers}")
    if report.gaps_found is not None:
        lines.append(f"gaps found: {report.gaps_found}; to fill: {sum(j.gaps for j in jobs)}")
        lines += [f"  not fillable: {reason}" for reason in report.gaps_skipped[:20]]
    skipped = report.of("skipped")
    if skipped:
        lines.append(f"skipped: {len(skipped)}: {_grouped(r.reason for r in skipped)}")
    if report.source_top is not None and not jobs:
        lines[0] = (f"the database holds no coin yet: would backfill {report.source}'s own top {report.source_top} "
                    f"coin(s), {report.days} day(s): about {report.source_top + 1} request(s)")
        if share is not None:
            lines[0] += f", {format_seconds(60 * (report.source_top + 1) / (budget.per_minute * share))}"
    return lines


def report_headline(report: Report) -> str:
    return (f"backfill from {report.source}, {report.days} day(s): {len(report.results)} coin(s) in "
            f"{format_seconds(report.seconds)}, {report.requests} request(s)")


def report_tables(report: Report) -> list[Table]:
    """The summary of a run (what was done, candles written per tier), then the failed coins and why."""
    totals = Table()
    totals.add_column("")
    totals.add_column("", justify="right")
    totals.show_header = False
    written = report.written()
    for label, value in (("coins done", len(report.of("done"))), ("coins skipped", len(report.of("skipped"))),
                         ("coins failed", len(report.of("failed"))), ("points", report.points),
                         ("points rejected", report.rejected),
                         *((f"candles written {t.name}", written[t.name]) for t in TIERS)):
        totals.add_row(label, f"{value:,}")
    tables = [totals]
    failed = report.of("failed")
    if failed:
        why = Table(title=f"failed ({len(failed)}; run the command again to retry them)")
        why.add_column("coin")
        why.add_column("reason")
        for r in failed[:20]:
            why.add_row(r.coin, r.reason[:150])
        tables.append(why)
    return tables


def report_lines(report: Report) -> list[str]:
    """The lines under the summary: skipped coins by reason, gaps, an interruption."""
    lines = []
    skipped = report.of("skipped")
    if skipped:
        lines.append(f"skipped: {_grouped(r.reason for r in skipped)}")
    if report.gaps_found is not None:
        filled = sum(r.gaps for r in report.of("done"))
        lines.append(f"gaps: {report.gaps_found} found, {filled} filled"
                     + (f", {len(report.gaps_skipped)} not fillable" if report.gaps_skipped else ""))
        lines += [f"  not fillable: {reason}" for reason in report.gaps_skipped[:10]]
    if report.interrupted:
        lines.append(f"interrupted: {report.left} coin(s) left; run the same command again to resume")
    return lines
