"""Wiring at the edge: build engines, sources and buses from Settings and run the long-lived jobs."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import sqlalchemy as sa

from cryptoviz.bus.base import Consumer
from cryptoviz.bus.memory import MemoryBus
from cryptoviz.config import Settings
from cryptoviz.errors import StoreError
from cryptoviz.pipeline import Collector, PageSink, Scheduler
from cryptoviz.sources.base import Source
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.registry import build_sources
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine, redact
from cryptoviz.store.writer import SnapshotWriter
from cryptoviz.writer_loop import run_writer

logger = logging.getLogger(__name__)


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


class WriterThread(threading.Thread):
    """``run_writer`` on its own thread; ``join`` hands back what it stored or raises what stopped it."""

    def __init__(self, consumer: Consumer, writer: SnapshotWriter, stop: threading.Event, settings: Settings,
                 *, on_write: Callable[[int], None] | None = None, drain: bool = True) -> None:
        super().__init__(name="writer", daemon=True)
        self._args = consumer, writer, stop, settings, on_write, drain
        self.stored = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        consumer, writer, stop, settings, on_write, drain = self._args
        try:
            self.stored = run_writer(consumer, writer, stop, batch_size=settings.batch_size,
                                     batch_timeout=settings.batch_timeout, on_write=on_write, drain=drain,
                                     drain_timeout=settings.drain_timeout)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the joining thread
            self.error = exc
            stop.set()  # nothing is being stored: let the collector stop too

    def result(self) -> int:
        self.join()
        if self.error is not None:
            raise self.error
        return self.stored


def make_sources(settings: Settings, *, unthrottled: bool = False) -> list[Source]:
    """The enabled sources; ``unthrottled`` lifts their request budgets (for the local market simulator)."""
    http = HttpClient(settings)
    sources, warnings = build_sources(settings, http)
    if unthrottled:
        for source in sources:
            # A local simulator has no request budget to respect.
            http.set_rate_limit(source.name, 6000, 100)
    for warning in warnings:
        logger.warning("%s", warning)
    if not sources:
        logger.error("no source enabled: set CRYPTOVIZ_SOURCES (e.g. coingecko) or an API key")
    return sources


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


def run_embedded(settings: Settings, engine: sa.Engine, sources: list[Source], stop: threading.Event, *,
                 duration: float | None = None, max_cycles: int | None = None,
                 page_sink: PageSink | None = None,
                 on_write: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Collector and writer threads joined by the in-process bus. Returns (cycles, snapshots stored)."""
    bus = MemoryBus(settings.bus_queue_size)
    writer = WriterThread(bus.consumer(), SnapshotWriter(engine), stop, settings, on_write=on_write)
    writer.start()
    collector = Collector(settings, sources, bus.publisher(), engine, page_sink=page_sink)
    scheduler = Scheduler(collector.run_cycle, settings.interval, stop, duration=duration, max_cycles=max_cycles)
    try:
        scheduler.run()
    finally:
        collector.close()
        bus.close()  # the writer drains what was collected, then ends
        stop.set()  # and gives up on a batch the database keeps refusing after CRYPTOVIZ_DRAIN_TIMEOUT
    return scheduler.cycles, writer.result()
