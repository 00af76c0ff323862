"""`cryptoviz demo` in a subprocess, checked in the database it fills."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.e2e


def _cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    return subprocess.run([sys.executable, "-m", "cryptoviz", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_demo_fills_the_database(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = _cli("demo", "--duration", "20", "--interval", "5", "--database-url", f"sqlite:///{db}", "--no-serve",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        coins = conn.execute(sa.text("SELECT count(*) FROM currencies")).scalar_one()
        current = conn.execute(sa.text("SELECT count(*), count(DISTINCT currency_id) FROM currency_data")).one()
        min_history = conn.execute(sa.text(
            "SELECT min(n) FROM (SELECT count(*) AS n FROM currency_data_history GROUP BY currency_id)"
        )).scalar_one()
        sources = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT source FROM source_quotes"))}
        runs = conn.execute(sa.text("SELECT count(*) FROM pipeline_runs")).scalar_one()
        # CoinPaprika has no slug and ids of its own: it joins the others' coins by name and symbol
        joined = conn.execute(sa.text(
            "SELECT count(*) FROM currency_data WHERE sources LIKE '%coinpaprika%' AND n_sources >= 3")).scalar_one()
        paprika_alone = conn.execute(sa.text(
            "SELECT count(*) FROM currencies WHERE id LIKE 'coinpaprika:%'")).scalar_one()
        rejected = conn.execute(sa.text("SELECT count(*) FROM quote_rejections")).scalar_one()
        # The simulator's outlier: one source reports ethereum 10x off from its third cycle on.
        eth_price = conn.execute(sa.text(
            "SELECT price FROM currency_data WHERE currency_id = 'ethereum'")).scalar_one()
        eth_quotes = conn.execute(sa.text(
            "SELECT source, price, used FROM source_quotes WHERE currency_id = 'ethereum' "
            "AND source IN ('coingecko', 'coinmarketcap', 'coinpaprika') "
            "AND observed_at = (SELECT max(observed_at) FROM source_quotes WHERE currency_id = 'ethereum')"
        )).all()
    assert coins >= 100
    assert current == (coins, coins)
    assert min_history >= 2
    # the aggregators every cycle, the exchanges' feeds between them (simulated too)
    assert sources == {"coingecko", "coinmarketcap", "coinpaprika", "binance", "coinbase", "kraken"}
    assert joined >= 150 and paprika_alone == 0
    assert runs >= 3
    assert rejected > 0  # the simulator's malformed items were rejected with reasons, the rest kept
    prices = {source: (price, bool(used)) for source, price, used in eth_quotes}
    assert len(prices) == 3
    low = min(p for p, _ in prices.values())
    high = max(p for p, _ in prices.values())
    assert high > 5 * low, prices  # the outlier is there, in source_quotes...
    assert eth_price < 2 * low  # ...but not in the consensus
    outlier_source = max(prices, key=lambda s: prices[s][0])
    assert prices[outlier_source][1] is False


def test_invalid_setting_fails_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    env["CRYPTOVIZ_INTERVAL"] = "soon"
    result = subprocess.run([sys.executable, "-m", "cryptoviz", "status"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "CRYPTOVIZ_INTERVAL" in lines[0]
    assert "Traceback" not in result.stderr


def test_demo_with_three_sources_lowers_confidence_where_they_disagree(tmp_path: Path) -> None:
    db = tmp_path / "demo3.db"
    result = _cli("demo", "--duration", "18", "--interval", "4", "--database-url", f"sqlite:///{db}", "--no-serve",
                  "--sources", "coingecko,coingecko-html,coinmarketcap-html", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        sources = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT source FROM source_quotes"))}
        three = conn.execute(sa.text("SELECT count(*) FROM currency_data WHERE n_sources = 3")).scalar_one()
        # The outlier (ethereum, 10x on coinmarketcap-html) is dropped by the median-absolute-deviation rule.
        dropped = conn.execute(sa.text(
            "SELECT count(*) FROM source_quotes WHERE currency_id = 'ethereum' AND source = 'coinmarketcap-html' "
            "AND used = 0 AND dropped_reason = 'outlier'")).scalar_one()
        eth = conn.execute(sa.text(
            "SELECT h.confidence, h.price FROM currency_data_history h WHERE h.currency_id = 'ethereum' "
            "ORDER BY h.observed_at DESC LIMIT 1")).one()
        agreeing = conn.execute(sa.text(
            "SELECT min(confidence) FROM currency_data WHERE n_sources = 3")).scalar_one()
    engine.dispose()
    assert sources == {"coingecko", "coingecko-html", "coinmarketcap-html"}
    assert three >= 150  # most coins are seen by all three sources
    assert dropped >= 1
    one_source_at_best = 0.5  # the confidence of one independent source alone, at most (cryptoviz.reconcile)
    assert eth.confidence < agreeing  # an outlier among the sources: less sure than where they agree
    assert agreeing > one_source_at_best  # two independent sites that agree: surer than any one alone


def test_demo_opens_on_charts_with_history(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    result = _cli("demo", "--duration", "5", "--database-url", f"sqlite:///{db}", "--no-serve", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "demo: past backfilled for" in result.stderr
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        hourly, backfilled, oldest = conn.execute(sa.text(
            "SELECT count(*), sum(n_backfill > 0), min(bucket) FROM candles_1h WHERE currency_id = 'bitcoin'")).one()
        five_minutes = conn.execute(sa.text(
            "SELECT count(*) FROM candles_5m WHERE currency_id = 'bitcoin' AND n_backfill > 0")).scalar_one()
        coins = conn.execute(sa.text(
            "SELECT count(DISTINCT currency_id) FROM candles_1h WHERE n_backfill > 0")).scalar_one()
        live = conn.execute(sa.text(
            "SELECT count(*) FROM currency_data_history WHERE currency_id = 'bitcoin'")).scalar_one()
    engine.dispose()
    assert hourly >= 24 and backfilled >= 24  # two days of hours, before the first live cycle
    assert str(oldest) < str(datetime.now(UTC) - timedelta(hours=40))
    assert five_minutes >= 250  # and the last day in 5-minute candles
    assert coins >= 190  # every simulated coin (a rare failed fetch aside)
    assert live >= 1  # then the live cycles went on as usual
