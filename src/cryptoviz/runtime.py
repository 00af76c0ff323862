"""Wiring at the edge: the store, the sources, and the one assembly of the pipeline for every mode.

    sources -> Collector -> bus (in-process or Kafka) -> WriterThread -> Sink

:class:`Pipeline` builds the parts a mode needs and owns their start, draining and stop:

=====================  =========  =========  ===================================================
mode                   produce    consume    bus
=====================  =========  =========  ===================================================
run, demo, collect     yes        yes        in-process, or Kafka (collector and writer in one process)
collect (Kafka)        yes        no         Kafka
consume                no         yes        Kafka
collect --once         yes        in-process in-process (stored), or Kafka (published only)
replay                 yes        yes        in-process, fed recorded cycles
=====================  =========  =========  ===================================================
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import FrameType, TracebackType

import sqlalchemy as sa

from cryptoviz.bus.base import Consumer, Publisher
from cryptoviz.bus.memory import MemoryBus
from cryptoviz.config import Settings
from cryptoviz.errors import ConfigError, CryptoVizError, StoreError
from cryptoviz.pipeline import Collector, PageSink, Scheduler, SourceOutcome
from cryptoviz.sources.base import PushSource, Source
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.registry import SPECS, build_sources
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine, redact
from cryptoviz.store.retention import UpkeepThread
from cryptoviz.store.runs import RunReport
from cryptoviz.store.sink import DeadLetterSink, DeadLetterTable, Sink, open_sink
from cryptoviz.store.state import NoState, StoreState
from cryptoviz.writer_loop import run_writer

logger = logging.getLogger(__name__)

UNTHROTTLED = (6000.0, 100)  # requests per minute, burst: a local simulator has no budget to respect


def open_store(settings: Settings, *, upgrade: bool = True, check_writes: bool = True) -> sa.Engine:
    """Engine for the configured database, migrated to the latest schema.

    Raises ``StoreError`` if the database is unreachable or, with ``check_writes``, refuses writes (a
    read-only file or role, a full disk): better at start-up than batch after batch once collecting.
    """
    if upgrade:
        migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"cannot connect to {redact(settings.database_url)}: {exc.orig}") from None
    if check_writes:
        try:
            with engine.begin() as conn:
                # Takes the write lock (SQLite) and the table's row-exclusive lock (PostgreSQL); changes nothing.
                conn.execute(sa.text("DELETE FROM pipeline_runs WHERE 1 = 0"))
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreError(f"cannot write to {redact(settings.database_url)}: {reason}") from None
    return engine


def make_sources(settings: Settings, *, unthrottled: bool = False) -> list[Source]:
    """The enabled sources; ``unthrottled`` lifts their request budgets (for the local market simulator)."""
    http = HttpClient(settings)
    sources, warnings = build_sources(settings, http)
    if unthrottled:
        for source in sources:
            http.set_rate_limit(source.name, *UNTHROTTLED)
    for warning in warnings:
        logger.warning("%s", warning)
    if not sources:
        logger.error("no source enabled: set CRYPTOVIZ_SOURCES (e.g. coingecko) or an API key")
    return sources


def fetch_intervals(settings: Settings, names: Sequence[str], *, budgets: bool = True) -> dict[str, float]:
    """Seconds between fetches per source: ``CRYPTOVIZ_SOURCE_INTERVALS``, else the source's default, else
    the cycle interval; never shorter than the cycle, nor (with ``budgets``) than a monthly quota allows."""
    out: dict[str, float] = {}
    for name in names:
        spec = SPECS.get(name)
        wanted = settings.source_intervals.get(name) or (spec.interval if spec else None) or settings.interval
        interval = max(wanted, settings.interval)
        if budgets and spec is not None:
            floor = spec.budget.shortest_interval()
            if interval < floor:
                logger.warning("%s: fetching every %.0fs would exceed its plan's %d calls a month; fetching "
                               "every %.0fs instead (CRYPTOVIZ_SOURCE_INTERVALS)", name, interval,
                               spec.budget.per_month or 0, floor)
                interval = floor
        out[name] = interval
    return out


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set the event: jobs finish what they collected, then stop."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logger.warning("%s received: finishing the current work, then stopping (again to abort)",
                       signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class WriterThread(threading.Thread):
    """``run_writer`` on its own thread; ``result`` hands back what it stored or raises what stopped it.

    An error sets ``stop`` and ``also_stop``: nothing is being stored, so the collector stops too.
    """

    def __init__(self, consumer: Consumer, sink: Sink, stop: threading.Event, settings: Settings, *,
                 dead_letters: DeadLetterSink | None = None, on_write: Callable[[int], None] | None = None,
                 drain: bool = True, also_stop: threading.Event | None = None) -> None:
        super().__init__(name="writer", daemon=True)
        self._consumer, self._sink, self._halt, self._settings = consumer, sink, stop, settings
        self._dead_letters, self._on_write, self._drain, self._also_stop = dead_letters, on_write, drain, also_stop
        self.stored = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        settings = self._settings
        try:
            self.stored = run_writer(self._consumer, self._sink, self._halt, batch_size=settings.batch_size,
                                     batch_timeout=settings.batch_timeout, dead_letters=self._dead_letters,
                                     on_write=self._on_write, drain=self._drain,
                                     drain_timeout=settings.drain_timeout)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the joining thread
            self.error = exc
            self._halt.set()
            if self._also_stop is not None:
                self._also_stop.set()

    def result(self, timeout: float | None = None) -> int:
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.stored


class LiveThread(threading.Thread):
    """``Collector.stream_tick`` every ``interval`` seconds until ``stop`` is set: the coins the exchanges
    moved are published without waiting for the next cycle. A failing tick is logged; the next one runs."""

    def __init__(self, collector: Collector, interval: float, stop: threading.Event) -> None:
        super().__init__(name="live", daemon=True)
        self._collector, self._interval, self._halt = collector, interval, stop
        self.ticks = 0
        self.published = 0

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            try:
                self.published += len(self._collector.stream_tick())
            except CryptoVizError as exc:
                logger.error("live update failed: %s", exc)
            except Exception:  # noqa: BLE001 - the live path must not die silently; the cycles go on anyway
                logger.exception("live update failed")
            self.ticks += 1
            next_at += self._interval
            wait = next_at - time.monotonic()
            if wait < 0:  # a slow tick: start again from now rather than running ticks back to back
                next_at, wait = time.monotonic(), 0.0
            self._halt.wait(wait)


class Pipeline:
    """source -> collector -> bus -> writer, assembled once for every mode (see the module docstring).

    Use as a context manager: entering starts the writer and the push sources; leaving stops the
    collector, flushes or closes the bus, lets the writer drain (in-process: everything collected is
    stored, giving up on a batch the database keeps refusing ``CRYPTOVIZ_DRAIN_TIMEOUT`` after the stop;
    Kafka: what is left stays in the topic), and re-raises what stopped the writer.
    """

    def __init__(self, settings: Settings, *, engine: sa.Engine | None, sources: Sequence[Source] = (),
                 produce: bool = True, consume: bool = True, in_process: bool | None = None,
                 stop: threading.Event | None = None, page_sink: PageSink | None = None,
                 intervals: Mapping[str, float] | None = None, sink: Sink | None = None,
                 publisher: Publisher | None = None, on_write: Callable[[int], None] | None = None,
                 upkeep: bool = False, live: bool = False) -> None:
        self.settings = settings
        self.engine = engine
        self.stop = stop if stop is not None else threading.Event()
        self.in_process = (not settings.kafka_enabled) if in_process is None else in_process
        if publisher is not None:  # the collector's output goes there; no bus of its own
            if consume:
                raise ConfigError("a pipeline given its own publisher has no writer: pass consume=False")
            self.in_process = False
        elif self.in_process and produce != consume:
            raise ConfigError("the in-process bus joins a collector and a writer in one process: "
                              "set CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS to collect and consume apart")
        if consume and engine is None and sink is None:
            raise ConfigError("a writer needs a database (or a sink) to store into")
        self._sources = list(sources)
        self._produce, self._consume = produce, consume
        self._page_sink, self._intervals, self._on_write = page_sink, intervals, on_write
        self._sink = sink
        self._given_publisher = publisher
        self._consumer: Consumer | None = None
        self._memory: MemoryBus | None = None
        self._publisher: Publisher | None = None
        self.collector: Collector | None = None
        self.writer: WriterThread | None = None
        # With Kafka the writer stops on its own event, after the collector: the last cycle can still land.
        self._writer_stop = self.stop if self.in_process or not produce else threading.Event()
        self.cycles = 0
        self.stored = 0
        # Partitions ahead and retention, hourly, beside the writer (run, consume): see store.retention.
        self._upkeep_wanted = upkeep and consume and engine is not None
        self._upkeep_stop = threading.Event()
        self.upkeep: UpkeepThread | None = None
        # Live updates from push sources every CRYPTOVIZ_STREAM_INTERVAL (run, demo, collect)
        self._live = live
        self._live_stop = threading.Event()
        self.live: LiveThread | None = None

    # --- assembly ----------------------------------------------------------------------------------

    def _bus(self) -> tuple[Publisher | None, Consumer | None]:
        if self._given_publisher is not None:
            return self._given_publisher, None
        if self.in_process:
            self._memory = MemoryBus(self.settings.bus_queue_size)
            return self._memory.publisher(), self._memory.consumer()
        from cryptoviz.bus.factory import make_consumer, make_publisher

        publisher = make_publisher(self.settings) if self._produce else None
        consumer = make_consumer(self.settings) if self._consume else None
        return publisher, consumer

    def __enter__(self) -> Pipeline:
        publisher, consumer = self._bus()
        self._consumer = consumer
        if consumer is not None:
            sink = self._sink if self._sink is not None else open_sink(self._engine())
            letters = DeadLetterTable(self.engine) if self.engine is not None else None
            self.writer = WriterThread(consumer, sink, self._writer_stop, self.settings, dead_letters=letters,
                                       on_write=self._on_write, drain=self.in_process, also_stop=self.stop)
            self.writer.start()
            if self._upkeep_wanted:
                self.upkeep = UpkeepThread(self._engine(), self.settings, self._upkeep_stop)
                self.upkeep.start()
        if publisher is not None:
            self._publisher = publisher
            state = StoreState(self.engine) if self.engine is not None else NoState()
            self.collector = Collector(self.settings, self._sources, publisher, state=state, runs=state,
                                       page_sink=self._page_sink, intervals=self._intervals)
            self.collector.start()
            if self._live and any(isinstance(s, PushSource) for s in self._sources):
                self.collector.streaming = True
                self.live = LiveThread(self.collector, self.settings.stream_interval, self._live_stop)
                self.live.start()
        return self

    def _engine(self) -> sa.Engine:
        assert self.engine is not None
        return self.engine

    # --- running -----------------------------------------------------------------------------------

    def run(self, *, duration: float | None = None, max_cycles: int | None = None) -> int:
        """Collect on schedule until stopped, ``duration`` elapsed or ``max_cycles`` ran; a writer alone
        consumes until then. Returns the cycles run."""
        if self.collector is None:
            self.stop.wait(duration)
            self.stop.set()
            return 0
        scheduler = Scheduler(self.collector.run_cycle, self.settings.interval, self.stop, duration=duration,
                              max_cycles=max_cycles)
        scheduler.run()
        self.cycles += scheduler.cycles
        return scheduler.cycles

    def cycle(self) -> RunReport:
        """One cycle now."""
        self.cycles += 1
        return self._collector().run_cycle()

    def publish(self, outcomes: Sequence[SourceOutcome], observed_at: datetime) -> RunReport:
        """One cycle of already fetched pages (a replay: the cycle keeps the capture's times)."""
        self.cycles += 1
        return self._collector().publish(outcomes, observed_at, replayed=True)

    def _collector(self) -> Collector:
        if self.collector is None:
            raise ConfigError("this pipeline only consumes: it has no collector")
        return self.collector

    # --- stopping ----------------------------------------------------------------------------------

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._live_stop.set()
        if self.live is not None:
            self.live.join(timeout=10)
        if self.collector is not None:
            self.collector.close()
        if self._memory is not None:
            self._memory.close()  # the writer drains what was collected, then ends
        elif self._publisher is not None:
            left = self._publisher.flush(30.0)
            if left:
                logger.error("%d message(s) still undelivered to Kafka at shutdown", left)
            self._publisher.close()
            if self.writer is not None:
                # Give the writer a moment to store what was just published; the rest stays in Kafka.
                time.sleep(min(5.0, self.settings.batch_timeout * 3))
        self.stop.set()  # and a batch the database keeps refusing is given up after CRYPTOVIZ_DRAIN_TIMEOUT
        self._writer_stop.set()
        self._upkeep_stop.set()
        try:
            if self.writer is not None:
                self.stored = self.writer.result()
        except BaseException:
            if exc is None:
                raise
            logger.exception("the writer failed too")
        finally:
            if self._consumer is not None and not self.in_process:
                self._consumer.close()
