"""Progress of long page walks: log lines without a terminal, live bars with one."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from rich.console import Console

from cryptoviz import progress
from cryptoviz.errors import TransientSourceError
from cryptoviz.sources.base import RawPage
from cryptoviz.sources.http import fetch_pages

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pages_of(total_coins: int, per_page: int) -> list[int]:
    return [per_page] * -(-total_coins // per_page)


def listing(total_coins: int, fail_at: int | None = None) -> Callable[[int, int], tuple[RawPage, int]]:
    """``fetch_one`` of a listing of ``total_coins`` coins (the last page short)."""
    def fetch_one(number: int, limit: int) -> tuple[RawPage, int]:
        if number == fail_at:
            raise TransientSourceError("coingecko", "HTTP 500; retry later")
        held = max(0, min(limit, total_coins - (number - 1) * limit))
        return RawPage("coingecko", b"[]", "json", T0, f"page={number}"), held
    return fetch_one


@pytest.fixture(autouse=True)
def no_listener() -> Iterator[None]:
    progress.set_listener(None)
    yield
    progress.set_listener(None)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int | None, int | None]] = []

    def page(self, source: str, done: int, total: int | None) -> None:
        self.events.append((source, done, total))

    def ended(self, source: str) -> None:
        self.events.append((source, None, None))


def test_every_page_is_reported_then_the_end_of_the_walk() -> None:
    recorder = Recorder()
    progress.set_listener(recorder)
    pages = fetch_pages("coingecko", pages_of(1_150, 250), listing(1_150))
    assert len(pages) == 5
    assert recorder.events == [("coingecko", n, 5) for n in range(1, 6)] + [("coingecko", None, None)]


def test_a_safety_capped_walk_has_no_known_total_and_a_failed_walk_still_ends() -> None:
    recorder = Recorder()
    progress.set_listener(recorder)
    fetch_pages("coingecko", [100] * 50, listing(420), capped=True)
    assert recorder.events[0] == ("coingecko", 1, None) and recorder.events[-1] == ("coingecko", None, None)
    recorder.events.clear()
    with pytest.raises(TransientSourceError):
        fetch_pages("coingecko", [100] * 5, listing(420, fail_at=1))
    assert recorder.events == [("coingecko", None, None)]


def test_without_a_terminal_a_long_walk_logs_every_ten_pages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cryptoviz.progress")
    fetch_pages("coingecko", pages_of(2_500, 100), listing(2_500))
    assert [r.getMessage() for r in caplog.records] == ["coingecko: 10/25 pages fetched",
                                                         "coingecko: 20/25 pages fetched"]
    caplog.clear()
    fetch_pages("coingecko", pages_of(250, 100), listing(250))  # the usual cycle: silent
    assert caplog.records == []


def test_live_bars_show_each_long_walk_and_go_away_at_its_end() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    remove = progress.install_bars(console)
    try:
        bars = progress._listener
        assert isinstance(bars, progress.PageBars)
        bars.page("coinmarketcap-html", 12, 40)
        bars.page("coingecko", 1, 2)  # a short walk: no bar
        assert list(bars._tasks) == ["coinmarketcap-html"]
        console_task = bars._progress.tasks[0]
        assert (console_task.description, console_task.completed, console_task.total) == (
            "coinmarketcap-html", 12, 40)
        bars._progress.refresh()
        assert "coinmarketcap-html" in out.getvalue() and "12/40" in out.getvalue()
        bars.ended("coinmarketcap-html")
        assert bars._tasks == {} and not bars._started
    finally:
        remove()
    assert progress._listener is None


def test_no_bars_when_the_console_is_not_a_terminal() -> None:
    remove = progress.install_bars(Console(file=io.StringIO(), force_terminal=False))
    assert progress._listener is None
    remove()
