"""Progress of long page walks: ``CRYPTOVIZ_TOP_N=all`` means hundreds of pages at each source's rate.

Sources report each page they fetched (``page_fetched``) and the end of their walk (``walk_ended``).
Without a listener, a walk longer than a few pages logs a line every ``LOG_EVERY`` pages; the command
line installs live bars instead when it writes to a terminal (``PageBars``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

logger = logging.getLogger(__name__)

LOG_EVERY = 10  # pages between two log lines when no live bars are shown
SHORT_WALK = 3  # pages: the usual top-250 cycle shows no progress at all


class PageListener(Protocol):
    def page(self, source: str, done: int, total: int | None) -> None: ...
    def ended(self, source: str) -> None: ...


_listener: PageListener | None = None


def set_listener(listener: PageListener | None) -> None:
    """Route page progress to ``listener`` (``None``: back to log lines)."""
    global _listener
    _listener = listener


def page_fetched(source: str, done: int, total: int | None) -> None:
    """``source`` has fetched ``done`` pages of ``total`` (``None``: until the list ends)."""
    listener = _listener
    if listener is not None:
        listener.page(source, done, total)
    elif done % LOG_EVERY == 0 and (total is None or total > SHORT_WALK):
        logger.info("%s: %d%s pages fetched", source, done, f"/{total}" if total is not None else "")


def walk_ended(source: str) -> None:
    listener = _listener
    if listener is not None:
        listener.ended(source)


class PageBars:
    """One live bar per source walking more than ``SHORT_WALK`` pages, on ``console`` (a terminal)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("pages"), TimeElapsedColumn(), console=console, transient=True)
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self._started = False

    def page(self, source: str, done: int, total: int | None) -> None:
        if done <= SHORT_WALK and (total is None or total <= SHORT_WALK):
            return
        with self._lock:
            task = self._tasks.get(source)
            if task is None:
                task = self._progress.add_task(source, total=total)
                self._tasks[source] = task
                if not self._started:
                    self._progress.start()
                    self._started = True
            self._progress.update(task, completed=done, total=total)

    def ended(self, source: str) -> None:
        with self._lock:
            task = self._tasks.pop(source, None)
            if task is not None:
                self._progress.remove_task(task)
            if not self._tasks and self._started:
                self._progress.stop()
                self._started = False

    def close(self) -> None:
        with self._lock:
            if self._started:
                self._progress.stop()
                self._started = False


def install_bars(console: Console) -> Callable[[], None]:
    """Live bars on ``console`` when it is a terminal; returns the function that removes them."""
    if not console.is_terminal:
        return lambda: None
    bars = PageBars(console)
    set_listener(bars)

    def remove() -> None:
        set_listener(None)
        bars.close()

    return remove
