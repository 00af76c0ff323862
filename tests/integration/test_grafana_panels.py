"""Every Grafana panel's SQL, run against PostgreSQL as the dashboards' read-only role.

The data comes from the real pipeline: ``cryptoviz demo`` (market simulator, in-process bus) writes a few
cycles into a fresh database, plus a few rows inserted here (rejections, dead letters, a cycle in which a
source failed with its breaker open). Each target's SQL then goes through a small copy of what Grafana
does before PostgreSQL sees it (``benchmarks/grafana.py``, shared with the history benchmark): the frontend
replaces template variables (``$coin``, ``$__interval``...), the backend expands the macros
(``$__timeFilter``...) exactly as Grafana 11's PostgreSQL data source does
(pkg/tsdb/grafana-postgresql-datasource/macros.go).

EXPECTED below documents, per dashboard / panel / query, the columns the panel reads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from benchmarks.grafana import TimeRange, grafana_sql, interval_seconds, load_dashboards, panels

from cryptoviz import cli
from cryptoviz.store import migrate

pytestmark = pytest.mark.integration

READER_USER = READER_PASSWORD = "cryptoviz_reader"  # set by scripts/services.sh
COIN = "bitcoin"
DEFAULT_INTERVAL = "5s"  # what Grafana would pick for a short range; panels may ask for a minimum
DEMO_SECONDS, DEMO_INTERVAL = 14, 3

# --- The dashboards ----------------------------------------------------------------------------------


DASHBOARDS = load_dashboards()


def targets() -> dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]]:
    """(dashboard, panel title, refId) -> (panel, target)."""
    found = {}
    for board_name, board in DASHBOARDS.items():
        for panel in panels(board["panels"]):
            for target in panel.get("targets", []):
                found[(board_name, panel["title"], target["refId"])] = (panel, target)
    return found


def variable_values(board: dict[str, Any]) -> dict[str, str]:
    """Each variable's default, $coin set to a coin the demo wrote."""
    values = {v["name"]: str(v.get("current", {}).get("value", "")) for v in board["templating"]["list"]}
    if "coin" in values:
        values["coin"] = COIN
    return values


def panel_interval(panel: dict[str, Any]) -> str:
    minimum = panel.get("interval")
    if minimum and interval_seconds(minimum) > interval_seconds(DEFAULT_INTERVAL):
        return str(minimum)
    return DEFAULT_INTERVAL


TS = "time_series"
# (dashboard, panel title, refId): (format, columns the panel reads, in order). Time series: "time" first,
# then "metric" (series name) when there is one, then the numeric values.
EXPECTED: dict[tuple[str, str, str], tuple[str, tuple[str, ...]]] = {
    ("market-overview", "Market now", "A"):
        ("table", ("market_cap", "volume_24h", "coins", "median_confidence")),
    ("market-overview", "Top coins", "A"):
        ("table", ("rank", "name", "symbol", "price", "change_1h", "change_24h", "change_7d", "market_cap",
                   "volume_24h", "confidence", "sources", "currency", "observed_at")),
    ("market-overview", "Total market cap", "A"): (TS, ("time", "total_market_cap")),
    ("market-overview", "Market dominance", "A"): (TS, ("time", "BTC", "ETH", "Others")),
    ("market-overview", "Top gainers (24h)", "A"): ("table", ("coin", "change_24h")),
    ("market-overview", "Top losers (24h)", "A"): ("table", ("coin", "change_24h")),
    ("coin-detail", "Now", "A"):
        ("table", ("price", "change_24h", "market_cap", "volume_24h", "rank", "confidence", "n_sources")),
    ("coin-detail", "Price and 24h volume", "A"): (TS, ("time", "price", "price_low", "price_high")),
    ("coin-detail", "Price and 24h volume", "B"): (TS, ("time", "volume_24h")),
    ("coin-detail", "Price candles (OHLC)", "A"): (TS, ("time", "open", "high", "low", "close")),
    ("coin-detail", "Price per source and consensus", "A"): (TS, ("time", "metric", "price")),
    ("coin-detail", "Price per source and consensus", "B"): (TS, ("time", "consensus")),
    ("coin-detail", "Latest quote per source", "A"):
        ("table", ("source", "price", "deviation_pct", "market_cap", "volume_24h", "used", "dropped_reason",
                   "last_updated", "observed_at")),
    ("coin-detail", "Confidence and sources used", "A"): (TS, ("time", "confidence", "sources_used")),
    ("data-quality", "Spread between sources (latest observation)", "A"):
        ("table", ("name", "symbol", "sources", "min_price", "max_price", "spread_pct", "quotes", "observed_at")),
    ("data-quality", "Spread between sources over time", "A"): (TS, ("time", "p50", "p95")),
    ("data-quality", "Confidence distribution", "A"): ("table", ("bucket", "coins")),
    ("data-quality", "Source freshness", "A"): ("table", ("source", "last_observed", "age_s", "state")),
    ("data-quality", "Coins missing a source (latest observation)", "A"):
        ("table", ("name", "symbol", "missing_source", "present_sources", "observed_at")),
    ("data-quality", "Rejected records per source and reason", "A"): (TS, ("time", "metric", "rejected")),
    ("data-quality", "Rejections by reason", "A"):
        ("table", ("source", "reason", "field", "rejected", "last_seen", "latest_example")),
    ("data-quality", "DLQ size", "A"): ("table", ("total", "in_range")),
    ("data-quality", "Dead letters per interval", "A"): (TS, ("time", "dead_letters")),
    ("data-quality", "Latest dead letters", "A"):
        ("table", ("dead_at", "topic", "partition", "offset", "key", "error")),
    ("data-quality", "Unverified and stale values (now)", "A"): ("table", ("coins", "unverified", "stale", "with_interval")),
    ("data-quality", "Unverified or stale coins (now)", "A"):
        ("table", ("name", "symbol", "price", "price_low", "price_high", "unverified", "age_s", "state", "observed_at")),
    ("data-quality", "Unverified values over time", "A"): (TS, ("time", "unverified", "unverified_pct")),
    ("pipeline-health", "Cycles", "A"):
        ("table", ("since_last_cycle_s", "cycles", "partial", "failed", "avg_duration_s")),
    ("pipeline-health", "Cycle duration", "A"): (TS, ("time", "avg_s", "max_s")),
    ("pipeline-health", "Cycles per interval by status", "A"): (TS, ("time", "metric", "cycles")),
    ("pipeline-health", "Records per minute", "A"): (TS, ("time", "stored_per_min")),
    ("pipeline-health", "Records per minute", "B"): (TS, ("time", "published_per_min")),
    ("pipeline-health", "Errors per source", "A"): (TS, ("time", "metric", "errors")),
    ("pipeline-health", "Circuit breaker per source", "A"): (TS, ("time", "metric", "breaker")),
    ("pipeline-health", "Fetch time per source", "A"): (TS, ("time", "metric", "seconds")),
    ("pipeline-health", "Latest cycle per source", "A"):
        ("table", ("started_at", "status", "source", "fetched", "rejected", "used", "pages", "seconds",
                   "breaker", "error")),
    ("pipeline-health", "Recent source errors", "A"): ("table", ("started_at", "source", "breaker", "error")),
}

# --- Data --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    owner_url: str  # postgresql://... (psycopg), the owner of the tables
    reader_url: str  # the same database as cryptoviz_reader
    time_range: TimeRange
    dead_letters: int


def _plain(url: str) -> str:
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


DEMO_SOURCES = sorted(cli.DEMO_SOURCES.split(","))  # what `cryptoviz demo` collects (aggregators and exchanges)


def as_reader(url: str) -> str:
    return re.sub(r"^(postgresql(?:\+\w+)?://)[^@/]*@", rf"\g<1>{READER_USER}:{READER_PASSWORD}@", url)


def _insert_extra_rows(url: str, started: datetime) -> int:
    """Rows the demo does not make: rejections of our own, dead letters, a cycle with a failing source."""
    with psycopg.connect(url) as conn:
        failing = {
            "coingecko": {"fetched": 200, "rejected": 0, "used": 200, "pages": 1, "seconds": 0.2, "error": None,
                          "breaker": "closed", "reasons": {}},
            "coinmarketcap": {"fetched": 0, "rejected": 0, "used": 0, "pages": 0, "seconds": 15.0,
                              "error": "coinmarketcap: HTTP 500 after 4 attempts", "breaker": "open",
                              "reasons": {}},
        }
        row = conn.execute(
            "INSERT INTO pipeline_runs (started_at, finished_at, status, fetched, rejected, published, sources,"
            " errors) VALUES (%s, %s, 'partial', 200, 0, 200, %s, %s) RETURNING id",
            (started - timedelta(seconds=60), started - timedelta(seconds=45), json.dumps(failing),
             json.dumps([failing["coinmarketcap"]["error"]])),
        ).fetchone()
        assert row is not None
        run_id = row[0]
        conn.cursor().executemany(
            "INSERT INTO quote_rejections (run_id, rejected_at, source, coin, field, reason, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(run_id, started - timedelta(seconds=45), "coingecko", "bitcoin", "current_price", "non_positive",
              "got -1"),
             (run_id, started - timedelta(seconds=45), "coingecko", "ethereum", "market_cap", "cap_mismatch",
              "market cap 10x price x supply"),
             (run_id, started - timedelta(seconds=45), "coinmarketcap", "solana", "last_updated", "stale",
              "older than 900 s")],
        )
        _value_quality(conn)
        letters = [(started + timedelta(seconds=i), "crypto_viz", i % 6, 100 + i, f"coin-{i}",
                    "MessageError: not JSON") for i in range(3)]
        conn.cursor().executemany(
            'INSERT INTO dead_letters (dead_at, topic, "partition", "offset", key, error)'
            " VALUES (%s, %s, %s, %s, %s, %s)", letters)
    return len(letters)


UNVERIFIED = ("ethereum", "solana")  # their current values and every history row: unverified
STALE = "tether"  # its current value was quoted two hours ago


def _value_quality(conn: psycopg.Connection[Any]) -> None:
    """Intervals, unverified values and a stale one, where the demo's data has none: bitcoin's values get
    [0.99 price, 1.01 price] (its candles the band of their rows, as the writer folds them)."""
    conn.execute("UPDATE currency_data_history SET price_low = 0.99 * price, price_high = 1.01 * price "
                 "WHERE currency_id = 'bitcoin' AND price_low IS NULL")
    conn.execute("UPDATE currency_data SET price_low = 0.99 * price, price_high = 1.01 * price "
                 "WHERE currency_id = 'bitcoin' AND price_low IS NULL")
    conn.execute("UPDATE currency_data_history SET unverified = true WHERE currency_id = ANY(%s)", (list(UNVERIFIED),))
    conn.execute("UPDATE currency_data SET unverified = true WHERE currency_id = ANY(%s)", (list(UNVERIFIED),))
    conn.execute("UPDATE currency_data SET price_at = now() - interval '2 hours' WHERE currency_id = %s", (STALE,))
    for table in ("candles_5m", "candles_1h", "candles_1d"):
        conn.execute(f"UPDATE {table} SET price_low = 0.99 * low, price_high = 1.01 * high "  # noqa: S608
                     "WHERE currency_id = 'bitcoin' AND price_low IS NULL")
        conn.execute(f"UPDATE {table} SET unverified_n = n WHERE currency_id = ANY(%s)",  # noqa: S608
                     (list(UNVERIFIED),))


@pytest.fixture(scope="module")
def loaded(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """A fresh database (like ``pg_database``, but shared by this module's tests) with demo data."""
    name = f"cv_test_{uuid.uuid4().hex[:10]}"
    admin = _plain(pg_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(_plain(url), autocommit=True) as conn:
            # As docker/postgres-init.sh sets up a deployment: the dashboards' role reads every table the
            # migrations create (the candle tiers, the partitioned history).
            conn.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO cryptoviz_reader")
        migrate.upgrade(url)
        with psycopg.connect(_plain(url)) as conn:
            assert conn.execute("SELECT to_regclass('dead_letters')::text").fetchone() == ("dead_letters",)
        started = datetime.now(UTC)
        workdir = tmp_path_factory.mktemp("grafana-demo")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
        done = subprocess.run(
            [sys.executable, "-m", "cryptoviz", "demo", "--duration", str(DEMO_SECONDS),
             "--interval", str(DEMO_INTERVAL), "--database-url", url],
            env=env, cwd=workdir, capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        dead = _insert_extra_rows(_plain(url), started)
        time_range = TimeRange(started - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1))
        yield Loaded(_plain(url), _plain(as_reader(url)), time_range, dead)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Result:
    sql: str
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]


@pytest.fixture(scope="module")
def run_panel(loaded: Loaded) -> Callable[[str, str, str], Result]:
    """Runs one target as Grafana would, as cryptoviz_reader; results are cached per target."""
    cache: dict[tuple[str, str, str], Result] = {}
    all_targets = targets()

    def run(board: str, title: str, ref_id: str) -> Result:
        key = (board, title, ref_id)
        if key not in cache:
            panel, target = all_targets[key]
            sql = grafana_sql(target["rawSql"], variables=variable_values(DASHBOARDS[board]),
                              time_range=loaded.time_range, interval=panel_interval(panel))
            cache[key] = query(loaded.reader_url, sql)
        return cache[key]

    return run


def query(url: str, sql: str) -> Result:
    with psycopg.connect(url) as conn:
        conn.execute("SET statement_timeout = '10s'")
        try:
            cur = conn.execute(sql)
        except psycopg.Error as exc:
            raise AssertionError(f"{exc}\n--- SQL as Grafana sends it ---\n{sql}") from exc
        columns = [c.name for c in cur.description or []]
        return Result(sql, columns, cur.fetchall())


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


# --- The expander itself -----------------------------------------------------------------------------

RANGE = TimeRange(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), datetime(2026, 3, 1, 12, 30, 0, 500000, tzinfo=UTC))


@pytest.mark.parametrize(("sql", "expanded"), [
    ("WHERE $__timeFilter(t)", "WHERE t BETWEEN '2026-03-01T12:00:00Z' AND '2026-03-01T12:30:00.5Z'"),
    ("$__timeFrom() $__timeTo()", "'2026-03-01T12:00:00Z' '2026-03-01T12:30:00.5Z'"),
    ("SELECT $__timeGroupAlias(t, $__interval)", 'SELECT floor(extract(epoch from t)/30)*30 AS "time"'),
    ("GROUP BY $__timeGroup(t, '5m') ORDER BY 1", "GROUP BY floor(extract(epoch from t)/300)*300 ORDER BY 1"),
    ("SELECT $__timeGroup(t, '1h'), x", 'SELECT floor(extract(epoch from t)/3600)*3600 AS "time", x'),
    ("SELECT $__timeGroup(t, 1m, NULL) AS b", "SELECT floor(extract(epoch from t)/60)*60 AS b"),
    ("$__time(t), $__timeEpoch(t)", 't AS "time", extract(epoch from t) as "time"'),
    ("WHERE $__unixEpochFilter(e)", "WHERE e >= 1772366400 AND e <= 1772368200"),
    ("$__unixEpochGroupAlias(e, 1m)", 'floor((e)/60)*60 AS "time"'),
    ("x * 60000.0 / $__interval_ms", "x * 60000.0 / 30000"),
    ("id = '$coin' OR id = '${coin}' OR id = '[[coin]]'", "id = 'o''neil' OR id = 'o''neil' OR id = 'o''neil'"),
])
def test_expander_follows_grafana(sql: str, expanded: str) -> None:
    assert grafana_sql(sql, variables={"coin": "o'neil"}, time_range=RANGE, interval="30s") == expanded


@pytest.mark.parametrize("sql", ["$__nope(x)", "$__timeGroup(x)", "SELECT $undefined"])
def test_expander_rejects_what_grafana_rejects(sql: str) -> None:
    with pytest.raises((ValueError, KeyError)):
        grafana_sql(sql, variables={}, time_range=RANGE, interval="30s")


# --- The panels --------------------------------------------------------------------------------------


def test_every_panel_query_is_documented_here() -> None:
    assert set(targets()) == set(EXPECTED)


@pytest.mark.parametrize(("board", "title", "ref_id"), sorted(EXPECTED), ids=["/".join(k) for k in sorted(EXPECTED)])
def test_panel_query_runs_as_reader_and_returns_what_the_panel_needs(
    board: str, title: str, ref_id: str, run_panel: Callable[[str, str, str], Result]
) -> None:
    fmt, columns = EXPECTED[(board, title, ref_id)]
    _panel, target = targets()[(board, title, ref_id)]
    assert target["format"] == fmt
    check_result(fmt, columns, run_panel(board, title, ref_id))


def check_result(fmt: str, columns: tuple[str, ...], result: Result) -> None:
    assert result.columns == list(columns), result.sql
    assert result.rows, f"no rows\n{result.sql}"
    if fmt == TS:
        times = result.column("time")
        assert all(isinstance(t, datetime) or is_number(t) for t in times), times[:3]
        epochs = [t.timestamp() if isinstance(t, datetime) else float(t) for t in times]
        assert epochs == sorted(epochs), "time series must come sorted by time"
        for name in columns[1:]:
            values = result.column(name)
            if name == "metric":
                assert all(isinstance(v, str) and v for v in values)
            else:
                assert all(v is None or is_number(v) for v in values), (name, values[:3])
                assert any(v is not None for v in values), f"{name} is always NULL"


# --- Tiers: each panel reads the candles that fit the range, raw rows only for short ranges -----------

CANDLE_TABLE = re.compile(r"\bcandles_(5m|1h|1d)\b")
# Panels (or a panel's query: board, title, refId) that need no candle table, and why.
CURRENT = "current values (currency_data, one row per coin)"
EXEMPT: dict[tuple[str, ...], str] = {
    ("pipeline-health", "Records per minute", "B"): "snapshots published per cycle (pipeline_runs)",
    ("market-overview", "Market now"): CURRENT,
    ("market-overview", "Top coins"): CURRENT,
    ("market-overview", "Top gainers (24h)"): CURRENT,
    ("market-overview", "Top losers (24h)"): CURRENT,
    ("coin-detail", "Now"): CURRENT,
    ("data-quality", "Confidence distribution"): CURRENT,
    ("data-quality", "Unverified and stale values (now)"): CURRENT,
    ("data-quality", "Unverified or stale coins (now)"): CURRENT,
    ("coin-detail", "Latest quote per source"):
        "the coin's latest observation: raw rows of one coin within a day of its current value",
    **{("data-quality", title): "rejected items (quote_rejections), not price history"
       for title in ("Rejected records per source and reason", "Rejections by reason")},
    **{("data-quality", title): "dead letters (dead_letters), not price history"
       for title in ("DLQ size", "Dead letters per interval", "Latest dead letters")},
    **{("pipeline-health", title): "one row per cycle (pipeline_runs), not price history"
       for title in ("Cycles", "Cycle duration", "Cycles per interval by status", "Errors per source",
                     "Circuit breaker per source", "Fetch time per source", "Latest cycle per source",
                     "Recent source errors")},
}
# Where each history panel comes from over long ranges (the tier CTE picks the table).
HISTORY = sorted(key for key in EXPECTED if (key[0], key[1]) not in EXEMPT and key not in EXEMPT)


def test_each_panel_reads_a_candle_table_or_says_why_not() -> None:
    for (board, title, ref_id), (_panel, target) in sorted(targets().items()):
        named = CANDLE_TABLE.search(target["rawSql"]) is not None
        exempt = (board, title) in EXEMPT or (board, title, ref_id) in EXEMPT
        assert named != exempt, f"{board} / {title} / {ref_id}: " + (
            "reads no candle table: read the tier that fits the range, or add it to EXEMPT with a reason"
            if not named else "reads a candle table but is listed in EXEMPT")
    assert set(EXEMPT) <= {(b, t) for b, t, _r in targets()} | set(targets())


def tier_of(sql: str, loaded: Loaded, time_range: TimeRange, interval: str) -> tuple[str, float]:
    """(tier, seconds per point) that a target's tier CTE picks, run as Grafana would."""
    assert sql.startswith("WITH tier AS ("), sql[:40]
    cte = sql[:sql.index("\n),\n") + 2]
    expanded = grafana_sql(cte + "\nSELECT name, extract(epoch FROM step) FROM tier", variables={"coin": COIN},
                           time_range=time_range, interval=interval)
    name, seconds = query(loaded.reader_url, expanded).rows[0]
    return str(name), float(seconds)


def run_target(loaded: Loaded, key: tuple[str, str, str], time_range: TimeRange, interval: str) -> Result:
    _panel, target = targets()[key]
    return query(loaded.reader_url, grafana_sql(target["rawSql"], variables=variable_values(DASHBOARDS[key[0]]),
                                                time_range=time_range, interval=interval))


@pytest.mark.parametrize(("days", "interval", "coin_tier", "market_tier"), [
    (30, "30m", "1h", "1h"),
    (365, "12h", "1d", "1d"),
])
def test_long_ranges_read_the_candles(loaded: Loaded, days: int, interval: str, coin_tier: str,
                                      market_tier: str) -> None:
    end = loaded.time_range.end
    span = TimeRange(end - timedelta(days=days), end)
    for key in HISTORY:
        _panel, target = targets()[key]
        sql = target["rawSql"]
        if sql.startswith("WITH tier AS ("):
            expected = coin_tier if "'$coin'" in sql else market_tier
            assert tier_of(sql, loaded, span, interval)[0] == expected, key
        fmt, columns = EXPECTED[key]
        check_result(fmt, columns, run_target(loaded, key, span, interval))


def test_short_ranges_the_raw_rows_cover_read_them(loaded: Loaded) -> None:
    first = query(loaded.owner_url, "SELECT min(observed_at) FROM currency_data_history").rows[0][0]
    covered = TimeRange(first, loaded.time_range.end)
    for key in HISTORY:
        sql = targets()[key][1]["rawSql"]
        if "(SELECT name FROM tier) = 'raw'" in sql:  # a panel of one coin, or the stored records
            assert tier_of(sql, loaded, covered, DEFAULT_INTERVAL) == ("raw", 5.0), key
        elif sql.startswith("WITH tier AS ("):  # market-wide: from the candles, whatever the range
            assert tier_of(sql, loaded, covered, DEFAULT_INTERVAL)[0] == "5m", key


@pytest.fixture(scope="module")
def old_candle(loaded: Loaded) -> datetime:
    """One daily candle of bitcoin 300 days ago: a year of its history has a gap before its recent data."""
    day = (loaded.time_range.end - timedelta(days=300)).replace(hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(loaded.owner_url) as conn:
        conn.execute("INSERT INTO candles_1d (currency_id, bucket, open, high, low, close, open_at, close_at,"
                     " market_cap, volume_24h, n, n_backfill, confidence_min, sources, source_close, price_low,"
                     " price_high) VALUES ('bitcoin', %s, 1, 2, 0.5, 1.5, %s, %s, 1e9, 1e6, 3, 0, 0.9, 'coingecko',"
                     " '{\"coingecko\": 1.5}', 0.4, 2.2) ON CONFLICT DO NOTHING",
                     (day, day + timedelta(hours=1), day + timedelta(hours=20)))
    return day


@pytest.mark.parametrize("key", [k for k in HISTORY if EXPECTED[k][0] == TS and k[0] == "coin-detail"],
                         ids=lambda k: "/".join(k))
def test_time_series_show_gaps_as_gaps(loaded: Loaded, old_candle: datetime, key: tuple[str, str, str]) -> None:
    end = loaded.time_range.end
    result = run_target(loaded, key, TimeRange(end - timedelta(days=365), end), "1d")
    series = list(zip(result.column("time"), result.column(result.columns[-1]), strict=True))
    if "metric" in result.columns:  # one series per source: the old candle's (coingecko)
        series = [(t, v) for (t, v), m in zip(series, result.column("metric"), strict=True) if m == "coingecko"]
    assert series[0] == (old_candle, series[0][1]) and series[0][1] is not None, result.rows[:3]
    # right after the lonely old day a NULL: Grafana draws no line across the 300 days without data
    assert series[1] == (old_candle + timedelta(days=1), None), result.rows[:3]
    assert series[2][0] > old_candle + timedelta(days=200) and series[2][1] is not None


def test_coin_variable_query_lists_coins_by_rank(loaded: Loaded) -> None:
    coin = next(v for v in DASHBOARDS["coin-detail"]["templating"]["list"] if v["name"] == "coin")
    result = query(loaded.reader_url, grafana_sql(coin["query"], variables={}, time_range=loaded.time_range,
                                                  interval=DEFAULT_INTERVAL))
    assert result.columns == ["__value", "__text"]
    assert len(result.rows) >= 150  # the simulator's coins
    assert result.rows[0] == ("bitcoin", "Bitcoin (BTC)")
    assert coin["current"]["value"] in result.column("__value")


def test_dashboard_role_cannot_write(loaded: Loaded) -> None:
    with psycopg.connect(loaded.reader_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM dead_letters")


# --- A few values, checked against the tables --------------------------------------------------------


def test_dominance_adds_up_to_100_percent(run_panel: Callable[[str, str, str], Result]) -> None:
    result = run_panel("market-overview", "Market dominance", "A")
    for _time, btc, eth, others in result.rows:
        assert btc > 20 and eth > 1
        assert float(btc + eth + others) == pytest.approx(100.0)


def test_total_market_cap_matches_the_latest_cycle(loaded: Loaded, run_panel: Callable[[str, str, str], Result]) \
        -> None:
    result = run_panel("market-overview", "Total market cap", "A")
    # each coin's last value: the current ones (exchange feeds update some coins between the cycles, so the
    # newest observation time holds only those)
    latest = query(loaded.owner_url, "SELECT sum(market_cap) FROM currency_data WHERE market_cap > 0")
    assert float(result.rows[-1][1]) == pytest.approx(float(latest.rows[0][0]), rel=0.05)


def test_top_coins_start_with_bitcoin(run_panel: Callable[[str, str, str], Result]) -> None:
    result = run_panel("market-overview", "Top coins", "A")
    assert result.rows[0][:3] == (1, "Bitcoin", "BTC")
    assert len(result.rows) == 100  # $top default
    gainers = run_panel("market-overview", "Top gainers (24h)", "A").column("change_24h")
    losers = run_panel("market-overview", "Top losers (24h)", "A").column("change_24h")
    assert gainers == sorted(gainers, reverse=True) and losers == sorted(losers)
    assert len(gainers) == len(losers) == 10 and min(gainers) >= max(losers)


def test_candles_are_consistent(run_panel: Callable[[str, str, str], Result]) -> None:
    for _time, open_, high, low, close in run_panel("coin-detail", "Price candles (OHLC)", "A").rows:
        assert low <= min(open_, close) <= max(open_, close) <= high


def test_each_source_beside_the_consensus(run_panel: Callable[[str, str, str], Result]) -> None:
    assert set(run_panel("coin-detail", "Price per source and consensus", "A").column("metric")) == \
        set(DEMO_SOURCES)
    quotes = run_panel("coin-detail", "Latest quote per source", "A")
    assert sorted(quotes.column("source")) == DEMO_SOURCES
    assert all(abs(d) < 5 for d in quotes.column("deviation_pct") if d is not None)


def test_confidence_distribution_counts_every_current_coin(run_panel: Callable[[str, str, str], Result]) -> None:
    result = run_panel("data-quality", "Confidence distribution", "A")
    assert result.column("bucket")[0] == "0.0-0.1" and result.column("bucket")[-1] == "0.9-1.0"
    coins = run_panel("market-overview", "Market now", "A").column("coins")[0]
    assert sum(result.column("coins")) == coins


def test_rejections_and_dead_letters_show(loaded: Loaded, run_panel: Callable[[str, str, str], Result]) -> None:
    reasons = set(run_panel("data-quality", "Rejections by reason", "A").column("reason"))
    assert {"non_positive", "cap_mismatch", "stale"} <= reasons  # inserted here
    assert "not_a_number" in reasons  # the demo's malformed items
    total, in_range = run_panel("data-quality", "DLQ size", "A").rows[0]
    assert total == in_range == loaded.dead_letters
    assert sum(run_panel("data-quality", "Dead letters per interval", "A").column("dead_letters")) == \
        loaded.dead_letters
    assert len(run_panel("data-quality", "Latest dead letters", "A").rows) == loaded.dead_letters


def test_missing_sources_come_from_rejected_items(run_panel: Callable[[str, str, str], Result]) -> None:
    freshness = run_panel("data-quality", "Source freshness", "A")
    assert sorted(freshness.column("source")) == DEMO_SOURCES
    assert set(freshness.column("state")) == {"ok"}
    missing = run_panel("data-quality", "Coins missing a source (latest observation)", "A")
    assert set(missing.column("missing_source")) <= set(DEMO_SOURCES)
    assert all(present and missing_source not in present
               for missing_source, present in zip(missing.column("missing_source"),
                                                  missing.column("present_sources"), strict=True))


def test_failing_source_and_open_breaker_show(run_panel: Callable[[str, str, str], Result]) -> None:
    errors = run_panel("pipeline-health", "Errors per source", "A")
    by_source: dict[str, int] = {}
    for _time, source, count in errors.rows:
        by_source[source] = by_source.get(source, 0) + count
    assert by_source["coinmarketcap"] >= 1
    breaker = run_panel("pipeline-health", "Circuit breaker per source", "A")
    assert 2 in breaker.column("breaker")  # open
    recent = run_panel("pipeline-health", "Recent source errors", "A")
    assert ("coinmarketcap", "open") in [(s, b) for _t, s, b, _e in recent.rows]
    latest = run_panel("pipeline-health", "Latest cycle per source", "A")
    assert sorted(latest.column("source")) == DEMO_SOURCES  # the demo's last cycle


def test_records_per_minute_add_up_to_the_history_rows(
    loaded: Loaded, run_panel: Callable[[str, str, str], Result]
) -> None:
    key = ("pipeline-health", "Records per minute", "A")
    panel, target = targets()[key]
    rows = query(loaded.owner_url, "SELECT count(*) FROM currency_data_history").rows[0][0]
    # from the raw rows (a range they cover), and from the candles' n (backfilled points are not rows)
    first = query(loaded.owner_url, "SELECT min(observed_at) FROM currency_data_history").rows[0][0]
    end = loaded.time_range.end
    for span, expected in ((TimeRange(first, end), "raw"), (TimeRange(end - timedelta(days=30), end), "1h"),
                           (loaded.time_range, None)):
        tier, seconds = tier_of(target["rawSql"], loaded, span, panel_interval(panel))
        assert expected is None or tier == expected
        result = run_target(loaded, key, span, panel_interval(panel))
        stored = sum(float(v) for v in result.column("stored_per_min") if v is not None)
        assert stored * seconds / 60 == pytest.approx(rows), (tier, seconds)
    cycles = run_panel("pipeline-health", "Cycles", "A")
    assert cycles.column("cycles")[0] >= 3 and cycles.column("partial")[0] >= 1


def test_the_coin_price_carries_its_band(loaded: Loaded, run_panel: Callable[[str, str, str], Result]) -> None:
    result = run_panel("coin-detail", "Price and 24h volume", "A")
    points = [(p, lo, hi) for _t, p, lo, hi in result.rows if p is not None]
    assert points and all(lo is not None and hi is not None and lo < p < hi for p, lo, hi in points)
    panel, _target = targets()[("coin-detail", "Price and 24h volume", "A")]
    band = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
            for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] in ("price_low", "price_high")}
    assert band["price_high"]["custom.fillBelowTo"] == "price_low"  # Grafana fills the band between them
    assert band["price_low"]["custom.lineWidth"] == band["price_high"]["custom.lineWidth"] == 0


def test_unverified_and_stale_values_are_counted_and_listed(run_panel: Callable[[str, str, str], Result]) -> None:
    counts = run_panel("data-quality", "Unverified and stale values (now)", "A")
    coins, unverified, stale, with_interval = counts.rows[0]
    assert unverified == len(UNVERIFIED) and stale >= 1 and with_interval >= 1 and coins >= 150
    listed = run_panel("data-quality", "Unverified or stale coins (now)", "A")
    states = {name: (flag, state) for name, _s, _p, _lo, _hi, flag, _age, state, _at in listed.rows}
    assert states["Tether"] == (False, "stale") and states["Ethereum"] == (True, "fresh")
    assert listed.rows[0][7] == "stale" and listed.rows[0][6] >= 7200  # the stale first, with its age
    over_time = run_panel("data-quality", "Unverified values over time", "A")
    assert sum(float(v) for v in over_time.column("unverified") if v is not None) > 0
