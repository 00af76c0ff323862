"""The ``cryptoviz`` command line."""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from cryptoviz import __version__
from cryptoviz.config import Settings, load_settings
from cryptoviz.errors import ConfigError, CryptoVizError, StoreError
from cryptoviz.logging_setup import configure_logging

logger = logging.getLogger("cryptoviz")
console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="cryptoviz", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Collect, validate, reconcile, stream and store crypto market data (CoinGecko, CoinMarketCap).\n\n"
         "Settings come from CRYPTOVIZ_* environment variables or .env (see .env.example).",
)
db_app = typer.Typer(no_args_is_help=True,
                     help="Database schema and upkeep: upgrade, downgrade, current revision, prune.")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter queue: messages the writer could not store.")
app.add_typer(db_app, name="db")
app.add_typer(dlq_app, name="dlq")

T = TypeVar("T")
P = ParamSpec("P")

DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="Override CRYPTOVIZ_DATABASE_URL.")]
Interval = Annotated[float | None, typer.Option("--interval", min=0.1,
                                                help="Seconds between cycles (default CRYPTOVIZ_INTERVAL).")]
Duration = Annotated[float | None, typer.Option("--duration", min=0.0,
                                                help="Stop after this many seconds (default: run until stopped).")]
Serve = Annotated[bool, typer.Option("--serve/--no-serve",
                                     help="Serve the live dashboard and REST API while running.")]
Port = Annotated[int | None, typer.Option("--port", min=0, max=65535,
                                          help="Dashboard/API port (default CRYPTOVIZ_API_PORT, 8000).")]
Host = Annotated[str | None, typer.Option("--host", help="Dashboard/API address (default 127.0.0.1).")]


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _guard(fn: Callable[[], T]) -> T:
    """Turn the project's errors into one clear line and a non-zero exit instead of a traceback."""
    try:
        return fn()
    except ConfigError as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)  # one plain line: never wrapped, easy to grep
        raise typer.Exit(2) from None
    except CryptoVizError as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        raise typer.Exit(1) from None


def guarded(command: Callable[P, T]) -> Callable[P, T]:
    """A command whose project errors end in one ``error:`` line (exit 2 for settings, 1 otherwise)."""
    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return _guard(lambda: command(*args, **kwargs))

    return wrapper


def _one_line(exc: Exception) -> str:
    """Driver messages span lines (psycopg adds hints on a second line): fold them into one."""
    return " ".join(str(exc).split())


# --- the main job ----------------------------------------------------------------------------------


@app.command()
@guarded
def run(interval: Interval = None, duration: Duration = None, database_url: DatabaseUrl = None,
        serve: Serve = True, port: Port = None, host: Host = None) -> None:
    """Run the whole job: collect every interval, reconcile, stream and store.

    Embedded by default (in-process bus, SQLite). With CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS set, the
    collector publishes to Kafka and a writer in the same process consumes into the database.
    """
    settings = _settings(interval=interval, database_url=database_url, api_port=port, api_host=host)
    configure_logging(settings)
    _run_job(settings, duration, serve=serve)


def _start_dashboard(settings: Settings, engine: Any) -> Any:
    from cryptoviz.api.app import create_app
    from cryptoviz.api.server import serve_in_thread

    try:
        handle = serve_in_thread(create_app(engine, settings), host=settings.api_host, port=settings.api_port)
    except CryptoVizError as exc:
        # Collecting matters more than the page: keep going without it.
        logger.warning("dashboard not started: %s", exc)
        return None
    console.print(f"dashboard: {handle.url}/  (REST API under {handle.url}/api, metrics at {handle.url}/metrics)",
                  highlight=False)
    return handle


def _sources(settings: Settings, *, unthrottled: bool = False) -> tuple[list[Any], dict[str, float]]:
    """The enabled sources and their fetch intervals; a ``ConfigError`` when there is none."""
    from cryptoviz.runtime import fetch_intervals, make_sources

    sources = make_sources(settings, unthrottled=unthrottled)
    if not sources:
        raise ConfigError("no source to collect from: set CRYPTOVIZ_SOURCES or an API key (see .env.example)")
    return sources, fetch_intervals(settings, [s.name for s in sources], budgets=not unthrottled)


def _describe(sources: list[Any], intervals: dict[str, float], settings: Settings) -> str:
    return ", ".join(s.name if intervals.get(s.name, settings.interval) <= settings.interval
                     else f"{s.name} (every {intervals[s.name]:.0f}s)" for s in sources)


def _run_job(settings: Settings, duration: float | None, *, max_cycles: int | None = None,
             serve: bool = False, unthrottled: bool = False) -> None:
    from cryptoviz.runtime import Pipeline, open_store, stop_on_signals

    engine = open_store(settings)
    dashboard = _start_dashboard(settings, engine) if serve else None
    try:
        sources, intervals = _sources(settings, unthrottled=unthrottled)
        bus = f"Kafka {settings.kafka_bootstrap_servers} topic {settings.kafka_topic}" if settings.kafka_enabled \
            else "in-process bus"
        logger.info("collecting %s every %.0fs into %s via %s", _describe(sources, intervals, settings),
                    settings.interval, engine.url.render_as_string(hide_password=True), bus)
        # The page's live stream reads as soon as a batch is committed rather than at its next poll.
        on_write = dashboard.app.state.live.notify if dashboard is not None else None
        with stop_on_signals() as stop, Pipeline(settings, engine=engine, sources=sources, stop=stop,
                                                 intervals=intervals, upkeep=True, live=True,
                                                 on_write=on_write) as pipeline:
            pipeline.run(duration=duration, max_cycles=max_cycles)
    finally:
        if dashboard is not None:
            dashboard.stop()
    logger.info("stopped after %d cycle(s); %d snapshots stored", pipeline.cycles, pipeline.stored)


@app.command()
@guarded
def collect(
    once: Annotated[bool, typer.Option("--once", help="One cycle, then print a summary table.")] = False,
    interval: Interval = None, duration: Duration = None, database_url: DatabaseUrl = None,
) -> None:
    """Collect on schedule (the producer side when Kafka is configured).

    Without Kafka the snapshots go through the in-process bus into the database, as with `run`.
    """
    settings = _settings(interval=interval, database_url=database_url)
    configure_logging(settings, quiet=once)
    if once:
        _collect_once(settings)
    elif settings.kafka_enabled:
        from cryptoviz.runtime import Pipeline, open_store, stop_on_signals

        engine = open_store(settings)
        sources, intervals = _sources(settings)
        with stop_on_signals() as stop, Pipeline(settings, engine=engine, sources=sources, consume=False,
                                                 stop=stop, intervals=intervals, live=True) as pipeline:
            pipeline.run(duration=duration)
    else:
        _run_job(settings, duration)


def _collect_once(settings: Settings) -> None:
    from cryptoviz.runtime import Pipeline, open_store

    engine = open_store(settings)
    sources, _intervals = _sources(settings)
    kafka = settings.kafka_enabled
    with Pipeline(settings, engine=engine, sources=sources, consume=not kafka) as pipeline:
        run = pipeline.cycle()
    stored_note = (f"published to Kafka topic {settings.kafka_topic}" if kafka else
                   f"{pipeline.stored} stored in {engine.url.render_as_string(hide_password=True)}")
    table = Table(title=f"Cycle {run.started_at:%Y-%m-%d %H:%M:%S} UTC: {run.status}")
    for column in ("source", "fetched", "rejected", "used", "pages", "time (s)", "error"):
        table.add_column(column, justify="left" if column in ("source", "error") else "right")
    for name, r in run.sources.items():
        table.add_row(name, str(r.fetched), str(r.rejected), str(r.used), str(r.pages), f"{r.seconds:.2f}",
                      (r.error or "")[:80])
    console.print(table)
    reasons: dict[str, int] = {}
    for rejection in run.rejections:
        reasons[rejection.reason] = reasons.get(rejection.reason, 0) + 1
    if reasons:
        console.print("rejected by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    console.print(f"coins: {run.coins} reconciled, {stored_note}")
    if run.status == "failed":
        raise typer.Exit(1)


@app.command()
@guarded
def consume(duration: Duration = None, database_url: DatabaseUrl = None) -> None:
    """Writer side with Kafka: consume snapshots into the database (runs until stopped).

    Several `cryptoviz consume` processes share the topic's partitions (consumer group
    CRYPTOVIZ_KAFKA_GROUP). Offsets are committed only after the database transaction committed.
    """
    settings = _settings(database_url=database_url)
    configure_logging(settings)
    if not settings.kafka_enabled:
        raise ConfigError("consume reads from Kafka: set CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS "
                          "(without Kafka, `cryptoviz run` writes through its in-process bus)")
    from cryptoviz.runtime import Pipeline, open_store, stop_on_signals

    engine = open_store(settings)
    with stop_on_signals() as stop, Pipeline(settings, engine=engine, produce=False, stop=stop,
                                             upkeep=True) as pipeline:
        pipeline.run(duration=duration)
    logger.info("consumer stopped: %d snapshots stored", pipeline.stored)


# --- database --------------------------------------------------------------------------------------


@db_app.command("upgrade")
@guarded
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
               database_url: DatabaseUrl = None) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from cryptoviz.store import migrate
    from cryptoviz.store.engine import redact

    settings = _settings(database_url=database_url)
    migrate.upgrade(settings.database_url, revision)
    console.print(f"{redact(settings.database_url)}: at revision {migrate.current(settings.database_url)}")


@db_app.command("downgrade")
@guarded
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")] = "-1",
                 database_url: DatabaseUrl = None) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    from cryptoviz.store import migrate
    from cryptoviz.store.engine import redact

    settings = _settings(database_url=database_url)
    migrate.downgrade(settings.database_url, revision)
    console.print(f"{redact(settings.database_url)}: at revision "
                  f"{migrate.current(settings.database_url) or 'base (empty)'}")


@db_app.command("current")
@guarded
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the database's schema revision and the latest one available."""
    from cryptoviz.store import migrate
    from cryptoviz.store.engine import redact

    settings = _settings(database_url=database_url)
    now, head = migrate.current(settings.database_url), migrate.head_revision()
    state = "up to date" if now == head else "run `cryptoviz db upgrade`"
    console.print(f"{redact(settings.database_url)}: revision {now or 'none'} (latest {head}: {state})")


@db_app.command("prune")
@guarded
def db_prune(dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; remove nothing.")] = False,
             database_url: DatabaseUrl = None) -> None:
    """Remove what retention lets go (CRYPTOVIZ_RETENTION_RAW, CRYPTOVIZ_RETENTION_5M) and create the coming
    days' partitions (PostgreSQL). `run` and `consume` do this by themselves every hour."""
    from cryptoviz.runtime import open_store
    from cryptoviz.store.retention import upkeep

    settings = _settings(database_url=database_url)
    configure_logging(settings, quiet=True)
    engine = open_store(settings, check_writes=not dry_run)
    report = upkeep(engine, settings, dry_run=dry_run)
    table = Table(title=f"{'would remove' if dry_run else 'removed'} ({redact_url(engine)})")
    for column in ("table", "older than", "rows", "whole partitions"):
        table.add_column(column)
    for name, cutoff in report.cutoffs.items():
        gone = report.partitions.get(name, [])
        table.add_row(name, f"{cutoff:%Y-%m-%d %H:%M} UTC" if cutoff else "kept forever (off)",
                      f"{report.rows.get(name, 0):,}", str(len(gone)) if gone else "-")
    console.print(table)
    console.print("1-hour and 1-day candles are kept forever.")
    if report.created:
        console.print(f"partitions created: {', '.join(report.created)}")


def _age(iso: object) -> str:
    if not isinstance(iso, str):
        return "never"
    from datetime import UTC, datetime

    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    return f"{seconds:.0f}s ago"


def redact_url(engine: Any) -> str:
    return str(engine.url.render_as_string(hide_password=True))


# --- record / replay -------------------------------------------------------------------------------


@app.command()
@guarded
def record(
    out: Annotated[Path, typer.Option("--out", help="Directory to write DIR/<source>/<time>.<ext> into.")],
    cycles: Annotated[int, typer.Option("--cycles", min=1, help="How many cycles to record.")] = 1,
    interval: Interval = None,
) -> None:
    """Save every raw response body (and every frame a push source receives) exactly as received, for
    replay and tests. Stores nothing."""
    from cryptoviz.bus.base import NullPublisher
    from cryptoviz.recording import PageRecorder
    from cryptoviz.runtime import Pipeline, stop_on_signals

    settings = _settings(interval=interval)
    configure_logging(settings)
    sources, intervals = _sources(settings)
    recorder = PageRecorder(out)
    with stop_on_signals() as stop, Pipeline(settings, engine=None, sources=sources, consume=False, stop=stop,
                                             publisher=NullPublisher(), page_sink=recorder,
                                             intervals=intervals) as pipeline:
        for n in range(cycles):
            started = time.monotonic()
            pipeline.cycle()
            console.print(f"cycle {n + 1}/{cycles}: {len(recorder.files)} file(s) so far in {out}")
            if n + 1 < cycles and stop.wait(max(0.0, settings.interval - (time.monotonic() - started))):
                break
    if not recorder.files:
        raise CryptoVizError("nothing recorded: every source failed (see the warnings above)")


@app.command()
@guarded
def replay(directory: Annotated[Path, typer.Argument(help="A directory written by `cryptoviz record`.")],
           database_url: DatabaseUrl = None,
           speed: Annotated[float, typer.Option(
               "--speed", min=0.0, help="Pace the cycles like the capture: 1 = real time, 10 = ten times "
                                        "faster; 0 (default) = as fast as the pipeline goes.")] = 0.0) -> None:
    """Feed recorded files through parse, validate, reconcile, bus and store (observed_at from names).

    Cycles go in capture order, each with its capture time, so history, candles and run reports read as
    they did when recorded.
    """
    from cryptoviz.recording import read_recording
    from cryptoviz.runtime import Pipeline, open_store, stop_on_signals

    settings = _settings(database_url=database_url)
    configure_logging(settings)
    cycles = read_recording(directory)
    engine = open_store(settings)
    published = 0
    with stop_on_signals() as stop, Pipeline(settings, engine=engine, in_process=True) as pipeline:
        started, first = time.monotonic(), cycles[0][0]
        for observed_at, outcomes in cycles:
            if speed > 0:  # wait until this cycle's place in the capture, scaled
                due = started + (observed_at - first).total_seconds() / speed
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
            published += pipeline.publish(outcomes, observed_at).published
    console.print(f"replayed {len(cycles)} cycle(s): {published} snapshots published, {pipeline.stored} stored")


# --- backfill --------------------------------------------------------------------------------------


@app.command("backfill")
@guarded
def backfill_command(
    days: Annotated[int, typer.Option("--days", min=1, help="How many days back (CoinGecko's keyless and demo "
                                                            "API serve at most 365).")] = 30,
    coins: Annotated[str, typer.Option("--coins", help="top:N: the N largest stored coins (on an empty "
                                                       "database, the source's own top N); or a comma list of "
                                                       "coin ids.")] = "top:100",
    source: Annotated[str, typer.Option("--source", help="coingecko, or coinmarketcap (a key whose plan has "
                                                         "historical quotes).")] = "coingecko",
    gaps: Annotated[bool, typer.Option("--gaps", help="Fill the gaps of the last --days days instead, at the best "
                                                      "granularity available.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be fetched; fetch and write "
                                                            "nothing.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Fill the candle tiers with the past: 5-minutely points within a day, hourly up to 90 days, daily beyond.

    Idempotent and resumable (after Ctrl+C, run it again); live candles are never overwritten. It takes at
    most half of the source's request budget, so a running collector keeps its cycles.
    """
    from cryptoviz.backfill import BACKFILL_SHARE, Backfill, plan_lines, report_headline, report_lines, report_tables
    from cryptoviz.runtime import open_store, stop_on_signals

    settings = _settings(database_url=database_url)
    configure_logging(settings)
    engine = open_store(settings, check_writes=not dry_run)
    with stop_on_signals() as stop:
        run = Backfill(engine, settings, source, stop=stop, console=err_console)
        try:
            jobs, report = run.prepare(days=days, coins=coins, gaps=gaps, fetch_top=not dry_run)
            if dry_run:
                for line in plan_lines(jobs, report, BACKFILL_SHARE, run.source.budget):
                    console.print(line, highlight=False)
                return
            report = run.run(jobs, report)
        finally:
            run.close()
    if report.results or report.error is None:  # a source refusing at once says so in one line, below
        console.print(report_headline(report), highlight=False)
        for table in report_tables(report):
            console.print(table)
        for line in report_lines(report):
            console.print(line, highlight=False)
    if report.error is not None:
        raise report.error
    if report.interrupted:
        raise typer.Exit(130)
    if report.of("failed"):
        raise typer.Exit(1)


# --- status ----------------------------------------------------------------------------------------


@app.command()
@guarded
def status(database_url: DatabaseUrl = None) -> None:
    """Show the last cycle, each source's health and the row counts."""
    from datetime import timedelta

    from cryptoviz.runtime import open_store
    from cryptoviz.store.gaps import default_min_length, find_gaps, format_length
    from cryptoviz.store.queries import row_counts, source_health
    from cryptoviz.timeutil import utc_now

    settings = _settings(database_url=database_url)
    engine = open_store(settings, upgrade=False, check_writes=False)
    try:
        counts = row_counts(engine)
        health = source_health(engine, runs=10)
        gaps = find_gaps(engine, since=utc_now() - timedelta(days=7), min_length=default_min_length(settings),
                         limit=10)
    except Exception as exc:
        raise StoreError(f"cannot read status from {engine.url.render_as_string(hide_password=True)} "
                         f"({exc.__class__.__name__}); run `cryptoviz db upgrade` first?") from None
    console.print(f"database: {engine.url.render_as_string(hide_password=True)}")
    r = health.last_run
    if r is None:
        console.print("no cycle has run yet: start one with `cryptoviz run` (or `make demo`)")
    else:
        took = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else 0
        console.print(f"last cycle: {r['started_at']:%Y-%m-%d %H:%M:%S} UTC, {r['status']}, "
                      f"{r['published']} coins published, {r['fetched']} fetched, "
                      f"{r['rejected']} rejected, {took:.1f}s")
    table = Table(title="sources (last 10 cycles)")
    for column in ("source", "fetched", "rejected", "breaker", "failures in a row", "last ok", "last error",
                   "page strategy"):
        table.add_column(column)
    for h in health.sources:
        last_ok = f"{h.last_ok:%Y-%m-%d %H:%M:%S}" if h.last_ok else "never"
        strategy = (h.strategy or "-") + (" (fell back)" if h.fell_back else "")
        table.add_row(h.source, str(h.fetched), str(h.rejected), h.breaker,
                      str(h.failures_in_a_row), last_ok, (h.last_error or "")[:70], strategy)
    console.print(table)
    for h in health.sources:
        if h.feed:
            f = h.feed
            state = ("switched off: " + str(f["disabled"])) if f.get("disabled") else (
                "connected" if f.get("connected") else "connecting")
            age = _age(f.get("last_message_at"))
            console.print(f"{h.source}: {state}, last message {age}, {f.get('reconnects', 0)} reconnect(s), "
                          f"{f.get('stalls', 0)} stall(s), {f.get('gaps', 0)} gap(s)"
                          + (f", {h.pairs['unmapped']} pair(s) not mapped to a coin" if h.pairs else ""),
                          highlight=False)
    for h in health.sources:
        if h.layout:
            console.print(f"{h.source}: {h.layout}; the page is kept under {settings.failed_pages_dir}/"
                          f"{h.source}/ for a bug report", highlight=False)
    console.print("rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if not gaps:
        console.print("no gaps in the last 7 days")
        return
    holes = Table(title="gaps in the last 7 days (longest first; `cryptoviz backfill --gaps` fills them)")
    for column in ("coin", "from (UTC)", "to (UTC)", "length"):
        holes.add_column(column)
    for gap in gaps:
        holes.add_row(gap.coin, f"{gap.start:%Y-%m-%d %H:%M}", f"{gap.end:%Y-%m-%d %H:%M}", format_length(gap.length))
    console.print(holes)


@app.command("serve")
@guarded
def serve_command(port: Port = None, host: Host = None, database_url: DatabaseUrl = None) -> None:
    """Serve the live dashboard (/), the REST API (/api), SSE (/api/stream) and metrics (/metrics).

    Read-only. Binds 127.0.0.1 by default; set CRYPTOVIZ_API_TOKEN to require a bearer token.
    """
    from cryptoviz.api.app import create_app
    from cryptoviz.api.server import serve_forever
    from cryptoviz.runtime import open_store

    settings = _settings(database_url=database_url, api_port=port, api_host=host)
    configure_logging(settings)
    engine = open_store(settings, check_writes=False)
    logger.info("serving the dashboard on http://%s:%d/ (Ctrl+C to stop)", settings.api_host, settings.api_port)
    serve_forever(create_app(engine, settings), settings.api_host, settings.api_port)


# --- simulator and demo ----------------------------------------------------------------------------

DEMO_SOURCES = "coingecko,coinmarketcap,coinpaprika,binance,coinbase,kraken"
Faults = Annotated[str | None, typer.Option(
    "--faults", help="Comma list of rate-limit, server-error, slow, malformed, outlier, garbage, bad-key; "
                     "NAME@SOURCE limits one to a source, NAME=P sets its probability (e.g. "
                     "server-error@coinmarketcap=0.5); or none, all, demo (default: malformed, outlier and "
                     "rare rate limits / 500s).")]


@app.command()
@guarded
def simulate(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 = any free port).")] = 8765,
    faults: Faults = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the market.")] = 42,
) -> None:
    """Run the market simulator alone (CoinGecko- and CoinMarketCap-shaped APIs and pages)."""
    from cryptoviz.simulator import start_simulator

    sim = start_simulator(port=port, faults=faults, seed=seed)
    console.print("# point CryptoViz at the simulator:")
    for line in sim.env_lines():
        print(line, flush=True)
    console.print(f"# simulator listening on {sim.url} (Ctrl+C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


@app.command()
@guarded
def demo(
    duration: Duration = None,
    interval: Annotated[float, typer.Option("--interval", min=0.5, help="Seconds between cycles.")] = 10.0,
    database_url: Annotated[str, typer.Option("--database-url", help="Where to store the demo data.")] =
    "sqlite:///data/demo.db",
    sources: Annotated[str, typer.Option("--sources", help="Comma list of sources to simulate.")] =
    DEMO_SOURCES,
    faults: Faults = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the market.")] = 42,
    serve: Serve = True, port: Port = None, host: Host = None,
    past: Annotated[bool, typer.Option("--backfill/--no-backfill", help="Open on the simulator's past: 2 days "
                                                                        "of candles backfilled first.")] = True,
) -> None:
    """See the whole job offline: a local market simulator feeds the real pipeline.

    Writes into data/demo.db (never into the configured database) unless --database-url is given.
    With Kafka configured the demo uses its own topic (CRYPTOVIZ_KAFKA_TOPIC + '_demo').
    """
    from cryptoviz.backfill import demo_history
    from cryptoviz.simulator import start_simulator
    from cryptoviz.simulator.faults import Faults as SimFaults

    chosen = [s.strip() for s in sources.split(",") if s.strip()]
    # The demo's 10x outlier goes to a source that is collected, so the rule shows at work.
    target = next((s for s in ("coinmarketcap", "coinmarketcap-html") if s in chosen), chosen[-1])
    try:
        sim_faults = SimFaults.parse(faults or "demo", outlier_source=target)
    except ValueError as exc:
        raise ConfigError(f"--faults: {exc}") from None
    sim = start_simulator(port=0, faults=sim_faults, seed=seed)
    try:
        base = load_settings()
        overrides: dict[str, Any] = {**sim.settings_overrides(), "database_url": database_url,
                                     "interval": interval, "sources": sources,
                                     "top_n": len(sim.coins),
                                     # The simulator has no request budget: every source every cycle.
                                     "source_intervals": {name: interval for name in chosen}}
        if port is not None:
            overrides["api_port"] = port
        if host is not None:
            overrides["api_host"] = host
        if base.kafka_enabled:
            overrides["kafka_topic"] = f"{base.kafka_topic}_demo"
            overrides["kafka_group"] = f"{base.kafka_group}-demo"
        settings = load_settings(**overrides)
        configure_logging(settings)
        logger.info("market simulator on %s; demo data goes to %s", sim.url,
                    database_url.split("@")[-1])
        if past:  # the charts open on the simulated past
            demo_history(settings, [coin.cg_id for coin in sim.coins])
        _run_job(settings, duration, serve=serve, unthrottled=True)
    finally:
        sim.stop()


# --- dead letters ----------------------------------------------------------------------------------


@dlq_app.command("list")
@guarded
def dlq_list(limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50) -> None:
    """List messages in the dead-letter topic (CRYPTOVIZ_KAFKA_TOPIC + '.dlq') with their reasons."""
    settings = _settings()
    if not settings.kafka_enabled:
        raise ConfigError("the dead-letter queue is a Kafka topic: set CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS")
    from cryptoviz.bus.kafka import list_dlq

    letters = list_dlq(settings.kafka_bootstrap_servers or "", settings.dlq_topic, limit=limit)
    if not letters:
        console.print(f"{settings.dlq_topic}: empty")
        return
    table = Table(title=f"{settings.dlq_topic}: {len(letters)} message(s)")
    for column in ("partition:offset", "key", "from", "error", "value"):
        table.add_column(column)
    for d in letters:
        table.add_row(f"{d.partition}:{d.offset}", str(d.key),
                      f"{d.original_topic}[{d.original_partition}]@{d.original_offset}",
                      str(d.error)[:80], d.value_preview[:60])
    console.print(table)


def version_callback(value: bool) -> None:
    if value:
        console.print(f"cryptoviz {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """CryptoViz command line."""


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
