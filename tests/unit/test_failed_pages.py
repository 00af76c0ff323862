"""Failed pages kept for bug reports: one file a page, named by time and reason, a bounded number a source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cryptoviz.sources.failed_pages import keep_failed_page, kept_pages

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_a_page_is_saved_under_its_source_with_time_and_reason(tmp_path: Path) -> None:
    path = keep_failed_page(tmp_path, "coinmarketcap-html", b"<html>page</html>", "layout-changed", now=T0)
    assert path == tmp_path / "coinmarketcap-html" / "20250301T120000.123456Z-layout-changed.html"
    assert path.read_bytes() == b"<html>page</html>"
    assert kept_pages(tmp_path, "coinmarketcap-html") == [path]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_the_time_is_utc(tmp_path: Path) -> None:
    paris = T0.astimezone(timezone(timedelta(hours=1)))
    path = keep_failed_page(tmp_path, "coingecko-html", b"x", "blocked", now=paris)
    assert path.name.startswith("20250301T120000.123456Z-")


def test_at_most_keep_pages_a_source_the_oldest_deleted_first(tmp_path: Path) -> None:
    paths = [keep_failed_page(tmp_path, "coingecko-html", f"page {i}".encode(), "layout-changed", keep=3,
                              now=T0 + timedelta(minutes=i)) for i in range(5)]
    kept = kept_pages(tmp_path, "coingecko-html")
    assert kept == paths[2:]
    assert [p.read_bytes() for p in kept] == [b"page 2", b"page 3", b"page 4"]
    other = keep_failed_page(tmp_path, "coinmarketcap-html", b"cmc", "layout-changed", keep=3, now=T0)
    assert kept_pages(tmp_path, "coingecko-html") == paths[2:]  # the other source's pages are its own
    assert kept_pages(tmp_path, "coinmarketcap-html") == [other]


def test_names_are_made_safe_and_same_instant_pages_do_not_overwrite(tmp_path: Path) -> None:
    first = keep_failed_page(tmp_path, "../Coin Gecko", b"1", "Layout changed: table/x?", now=T0)
    second = keep_failed_page(tmp_path, "../Coin Gecko", b"2", "Layout changed: table/x?", now=T0)
    assert first.parent == tmp_path / "coin-gecko"
    assert first.name == "20250301T120000.123456Z-layout-changed-table-x.html"
    assert second.name == "20250301T120000.123456Z-layout-changed-table-x-2.html"
    assert (first.read_bytes(), second.read_bytes()) == (b"1", b"2")
    assert keep_failed_page(tmp_path, "s", b"", "", now=T0).name == "20250301T120000.123456Z-failed.html"


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be at least 1"):
        keep_failed_page(tmp_path, "s", b"x", "r", keep=0)
    assert kept_pages(tmp_path, "nothing-yet") == []
