"""Gaps in the history (SQLite): found between a coin's observations, from 5-minute candles where raw rows
are gone, closed by what a backfill wrote; filled by ``cryptoviz backfill --gaps``; listed by ``status``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from rich.console import Console
from typer.testing import CliRunner

from cryptoviz import cli
from cryptoviz.backfill import backfill
from cryptoviz.config import load_settings
from cryptoviz.simulator import start_simulator
from cryptoviz.store import migrate
from cryptoviz.store.candles import TIER_BY_NAME, Point, aggregate, bucket_of, write_backfill
from cryptoviz.store.engine import make_engine
from cryptoviz.store.gaps import Gap, default_min_length, find_gaps, format_length
from cryptoviz.store.sink import open_sink
from tests.factories import snapshot

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=20)  # twice the default heartbeat


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path / 'gaps.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def write(engine: sa.Engine, coin: str, start: datetime, end: datetime, every: timedelta = timedelta(minutes=5),
          holes: tuple[tuple[datetime, datetime], ...] = ()) -> None:
    """A history row every ``every`` from ``start`` to ``end``, none strictly inside ``holes``."""
    snaps = []
    at = start
    while at <= end:
        if not any(a < at < b for a, b in holes):
            snaps.append(snapshot(coin, at=at, price=100.0))
        at += every
    open_sink(engine).write(snaps)


def gaps(engine: sa.Engine, **kwargs: object) -> list[tuple[str, datetime, datetime]]:
    options: dict[str, object] = {"since": NOW - timedelta(days=7), "until": NOW, "min_length": MIN, **kwargs}
    return [(g.coin, g.start, g.end) for g in find_gaps(engine, **options)]  # type: ignore[arg-type]


def test_gaps_are_the_long_silences_between_observations_longest_first(engine: sa.Engine) -> None:
    hour = timedelta(hours=1)
    write(engine, "bitcoin", NOW - 48 * hour, NOW, holes=((NOW - 30 * hour, NOW - 26 * hour),
                                                          (NOW - 10 * hour, NOW - 9 * hour)))
    write(engine, "ethereum", NOW - 48 * hour, NOW, holes=((NOW - 5 * hour, NOW - 3 * hour),
                                                           (NOW - 2 * hour, NOW - 2 * hour + MIN)))
    assert gaps(engine) == [("bitcoin", NOW - 30 * hour, NOW - 26 * hour),
                            ("ethereum", NOW - 5 * hour, NOW - 3 * hour),
                            ("bitcoin", NOW - 10 * hour, NOW - 9 * hour)]  # 20 minutes is not longer than 20
    assert gaps(engine, limit=1) == [("bitcoin", NOW - 30 * hour, NOW - 26 * hour)]
    assert gaps(engine, coins=["ethereum"]) == [("ethereum", NOW - 5 * hour, NOW - 3 * hour)]
    assert gaps(engine, min_length=timedelta(hours=2)) == [("bitcoin", NOW - 30 * hour, NOW - 26 * hour)]
    assert gaps(engine, min_length=timedelta(minutes=15))[-1] == ("ethereum", NOW - 2 * hour, NOW - 2 * hour + MIN)
    (gap,) = find_gaps(engine, since=NOW - 7 * timedelta(days=1), until=NOW, min_length=MIN, limit=1)
    assert gap.length == 4 * hour and isinstance(gap, Gap)
    assert gaps(engine, until=NOW - 20 * hour) == [("bitcoin", NOW - 30 * hour, NOW - 26 * hour)]


def test_under_five_minutes_the_raw_rows_tell(engine: sa.Engine) -> None:
    start = NOW - timedelta(hours=1)
    write(engine, "bitcoin", start, NOW, every=timedelta(minutes=1),
          holes=((start + timedelta(minutes=10), start + timedelta(minutes=14)),))
    assert gaps(engine, min_length=timedelta(minutes=3)) == [
        ("bitcoin", start + timedelta(minutes=10), start + timedelta(minutes=14))]
    assert gaps(engine, min_length=timedelta(minutes=4)) == []


def test_before_the_first_and_after_the_last_observation_is_no_gap(engine: sa.Engine) -> None:
    write(engine, "bitcoin", NOW - timedelta(days=2), NOW - timedelta(days=1))  # stopped a day ago
    write(engine, "ethereum", NOW - timedelta(hours=3), NOW)  # collected for 3 hours only
    assert gaps(engine) == []


def test_a_gap_that_began_before_the_window_is_reported_whole(engine: sa.Engine) -> None:
    write(engine, "bitcoin", NOW - timedelta(days=10), NOW - timedelta(days=9))
    write(engine, "bitcoin", NOW - timedelta(hours=2), NOW)  # CryptoViz was down for 9 days
    assert gaps(engine) == [("bitcoin", NOW - timedelta(days=9), NOW - timedelta(hours=2))]
    assert gaps(engine, since=NOW - timedelta(hours=1)) == []  # it ended before this window


def test_an_outage_is_the_same_gap_in_every_coin(engine: sa.Engine) -> None:
    hole = ((NOW - timedelta(hours=6), NOW - timedelta(hours=5)),)
    for coin in ("a-coin", "b-coin", "c-coin"):
        write(engine, coin, NOW - timedelta(hours=12), NOW, holes=hole)
    assert gaps(engine) == [(coin, *hole[0]) for coin in ("a-coin", "b-coin", "c-coin")]


def test_older_than_raw_retention_the_5m_candles_stand_for_the_rows(engine: sa.Engine) -> None:
    day = timedelta(days=1)
    write(engine, "bitcoin", NOW - 6 * day, NOW, every=timedelta(minutes=10),
          holes=((NOW - 5 * day, NOW - 5 * day + timedelta(hours=3)),))
    with engine.begin() as conn:  # raw retention removed the rows older than 2 days
        conn.execute(sa.text("DELETE FROM source_quotes WHERE observed_at < :t"), {"t": NOW - 2 * day})
        conn.execute(sa.text("DELETE FROM currency_data_history WHERE observed_at < :t"), {"t": NOW - 2 * day})
    assert gaps(engine) == [("bitcoin", NOW - 5 * day, NOW - 5 * day + timedelta(hours=3))]


def _backfill(engine: sa.Engine, tier: str, coin: str, times: list[datetime]) -> None:
    candles = aggregate([Point(coin, t, 50.0, sources="coingecko") for t in times], TIER_BY_NAME[tier].seconds,
                        backfill=True)
    with engine.begin() as conn:
        write_backfill(conn, TIER_BY_NAME[tier], candles.values())


def test_what_a_backfill_wrote_closes_a_gap(engine: sa.Engine) -> None:
    hour = timedelta(hours=1)
    holes = ((NOW - 30 * hour - timedelta(minutes=7), NOW - 26 * hour + timedelta(minutes=3)),
             (NOW - 5 * hour, NOW - 4 * hour))
    write(engine, "bitcoin", NOW - 48 * hour, NOW, holes=holes)
    assert len(gaps(engine)) == 2
    # hourly points fill every hour wholly inside the first gap: as filled as the source allows
    _backfill(engine, "1h", "bitcoin", [NOW - h * hour for h in (30, 29, 28)])
    assert gaps(engine) == [("bitcoin", NOW - 30 * hour - timedelta(minutes=10), NOW - 26 * hour + timedelta(minutes=5)),
                            ("bitcoin", NOW - 5 * hour, NOW - 4 * hour)]
    _backfill(engine, "1h", "bitcoin", [NOW - 27 * hour])
    assert gaps(engine) == [("bitcoin", NOW - 5 * hour, NOW - 4 * hour)]
    # 5-minute points are observations in their own right
    _backfill(engine, "5m", "bitcoin", [NOW - 5 * hour + m * timedelta(minutes=5) for m in range(1, 12)])
    assert gaps(engine) == []


def test_format_length() -> None:
    assert [format_length(timedelta(minutes=m)) for m in (25, 60, 185, 24 * 60, 52 * 60 + 5)] == [
        "25m", "1h00m", "3h05m", "1d00h", "2d04h"]
    assert default_min_length(load_settings(history_heartbeat=300)) == timedelta(minutes=10)


# --- filling them, showing them --------------------------------------------------------------------


def test_backfill_gaps_fills_them_at_the_best_granularity_and_status_shows_them(
        engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    hour = timedelta(hours=1)
    older = (now - 30 * hour - timedelta(minutes=2), now - 26 * hour + timedelta(minutes=2))  # hourly data
    recent = (now - 5 * hour + timedelta(minutes=1), now - 4 * hour + timedelta(minutes=31))  # 5-minutely data
    write(engine, "bitcoin", now - 3 * 24 * hour, now - timedelta(minutes=5), holes=(older,))
    write(engine, "ethereum", now - 3 * 24 * hour, now - timedelta(minutes=5), holes=(recent,))
    found = find_gaps(engine, since=now - timedelta(days=7), min_length=MIN)
    assert {(g.coin, g.length > 4 * hour) for g in found} == {("bitcoin", True), ("ethereum", False)}
    live = {t: _rows(engine, t) for t in ("candles_5m", "candles_1h", "candles_1d")}

    url = engine.url.render_as_string(hide_password=False)
    console = Console(record=True, width=200)
    monkeypatch.setattr(cli, "console", console)
    assert CliRunner().invoke(cli.app, ["status", "--database-url", url]).exit_code == 0
    shown = console.export_text()
    assert "gaps in the last 7 days" in shown
    cells = [[c.strip() for c in line.strip("│ ").split("│")] for line in shown.splitlines() if "bitcoin" in line]
    assert cells == [["bitcoin", f"{found[0].start:%Y-%m-%d %H:%M}", f"{found[0].end:%Y-%m-%d %H:%M}",
                      format_length(found[0].length)]]

    with start_simulator(faults="none", seed=3, step_seconds=3600.0) as sim:
        settings = load_settings(**sim.settings_overrides(), database_url=url)
        report = backfill(engine, settings, days=7, gaps=True, throttle=False)
    assert report.gaps_found == 2 and [r.status for r in report.results] == ["done", "done"]
    assert find_gaps(engine, since=now - timedelta(days=7), min_length=MIN) == []
    after = {t: _rows(engine, t) for t in live}
    for table, held in live.items():
        assert set(held) <= set(after[table])  # the live candles are as they were
    filled = {(coin, table) for table, held in after.items() for coin, _b, n, n_backfill in held if n_backfill}
    # hourly data for the older gap, 5-minutely for the recent one (and its hours when one lies wholly inside);
    # no 1d: those days had rows
    assert filled - {("ethereum", "candles_1h")} == {("bitcoin", "candles_1h"), ("ethereum", "candles_5m")}

    console = Console(record=True, width=200)
    monkeypatch.setattr(cli, "console", console)
    assert CliRunner().invoke(cli.app, ["status", "--database-url", url]).exit_code == 0
    assert "no gaps in the last 7 days" in console.export_text()


def _rows(engine: sa.Engine, table: str) -> list[tuple[str, str, int, int]]:
    with engine.connect() as conn:
        return [(r[0], str(r[1]), r[2], r[3]) for r in conn.execute(sa.text(
            f"SELECT currency_id, bucket, n, n_backfill FROM {table} ORDER BY 1, 2"))]


def test_a_gap_too_short_for_the_granularity_of_its_age_is_left_and_said(engine: sa.Engine) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = bucket_of(now - timedelta(days=3), 3600) + timedelta(minutes=5)
    write(engine, "bitcoin", now - timedelta(days=4), now, holes=((start, start + timedelta(minutes=40)),))
    url = engine.url.render_as_string(hide_password=False)
    with start_simulator(faults="none", seed=3, step_seconds=3600.0) as sim:
        report = backfill(engine, load_settings(**sim.settings_overrides(), database_url=url), days=7, gaps=True,
                          throttle=False)
    assert report.gaps_found == 1 and report.results == [] and report.requests == 0
    assert "shorter than one 1h bucket" in report.gaps_skipped[0]
