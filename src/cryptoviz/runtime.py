"""Wiring at the edge: build engines, sources and buses from Settings and run the long-lived jobs."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import sqlalchemy as sa

from cryptoviz.bus.memory import MemoryBus
from cryptoviz.config import Settings
from cryptoviz.errors import StoreError
from cryptoviz.pipeline import Collector, PageSink, Scheduler, run_writer
from cryptoviz.sources.base import Source
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.registry import build_sources
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine, redact
from cryptoviz.store.writer import SnapshotWriter

logger = logging.getLogger(__name__)


def open_store(settings: Settings, *, upgrade: bool = True) -> sa.Engine:
    """Engine for the configured database, migrated to the latest schema; StoreError if unreachable."""
    if upgrade:
        migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"cannot connect to {redact(settings.database_url)}: {exc.orig}") from None
    return engine


def make_sources(settings: Settings) -> list[Source]:
    sources, warnings = build_sources(settings, HttpClient(settings))
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
    writer = SnapshotWriter(engine)
    stored: list[int] = [0]

    def write_loop() -> None:
        stored[0] = run_writer(bus.consumer(), writer, stop, batch_size=settings.batch_size,
                               batch_timeout=settings.batch_timeout, on_write=on_write)

    writer_thread = threading.Thread(target=write_loop, name="writer", daemon=True)
    writer_thread.start()
    collector = Collector(settings, sources, bus.publisher(), engine, page_sink=page_sink)
    scheduler = Scheduler(collector.run_cycle, settings.interval, stop, duration=duration, max_cycles=max_cycles)
    try:
        scheduler.run()
    finally:
        collector.close()
        bus.close()  # the writer drains what was collected, then ends
        writer_thread.join()
    return scheduler.cycles, stored[0]
