"""``python -m benchmarks.run --smoke``: every benchmark runs end to end on tiny sizes and reports its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

# the history section: ours and the previous design's figure beside each
HISTORY = tuple(f"history.{base}{key}" for base in ("", "baseline.")
                for key in ("api_p95_ms_max", "grafana_p95_ms_max", "bytes_per_coin_minute", "growth_ratio"))
# the live section: the shared stream and the per-client baseline beside each figure
LIVE = tuple(f"live.{base}{key}" for base in ("", "baseline.")
             for key in ("freshness_p50_ms", "freshness_p99_ms", "api_p99_ms", "cpu_s_per_1k_ticks", "ticks_per_s"))
REQUIRED = ("sink.ratio", "sink.rows_per_s", "sink.copy_rows_per_s", "sink.table_ratio", "sink.table_rows_per_s",
            "sink.same_rows_copy_rows_per_s", "reconcile.quotes_per_s", "latency.p50_ms", "latency.p99_ms",
            "memory.peak_rss_mb", "embedded.rows_per_s", *HISTORY, *LIVE, "machine")


def test_smoke_benchmarks_report_every_figure(kafka_bootstrap: str, pg_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    env.update({"CRYPTOVIZ_DATABASE_URL": pg_url, "CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    printed = json.loads(done.stdout)
    assert json.loads(out.read_text(encoding="utf-8")) == printed
    assert printed["mode"] == "smoke"
    assert not [k for k in printed if k.endswith(".error")], printed
    for key in REQUIRED:
        assert key in printed, key
    assert isinstance(printed["machine"], str) and printed["machine"]
    for key in REQUIRED[:-1]:
        value = printed[key]
        assert isinstance(value, int | float) and value > 0, (key, value)
    # the same-rows baseline copies exactly the rows the writer stored: per snapshot a history row and its two
    # source values, per coin a currencies row, a current row and its candles (one cycle a minute from a
    # midnight: a 5-minute candle per 5 cycles, one 1-hour and one 1-day candle)
    snapshots, coins = printed["sink.snapshots"], printed["sink.coins"]
    cycles = snapshots // coins
    assert cycles <= 60
    assert printed["sink.table_rows"] == 3 * snapshots + 2 * coins + coins * (-(-cycles // 5) + 2)
    # per-call detail beside the worst figures: every dashboard range, the top-100 table, each panel over 30 days
    for name in ("1d", "7d", "30d", "1y", "top100"):
        assert printed[f"history.api.{name}.p95_ms"] > 0, name
    assert [k for k in printed if k.startswith("history.grafana.") and k.endswith(".30d.p95_ms")]
    # live: every client connected and stayed; each tick reached every client, after it was sent and within the
    # run; the load ran near its rate; the targets are booleans (smoke sizes do not judge them)
    for base in ("live.", "live.baseline."):
        assert printed[f"{base}connected"] == printed[f"{base}clients"] == 50
        assert printed[f"{base}clients_dropped"] == 0 and printed[f"{base}clients_starved"] == 0
        ticks, missed = printed[f"{base}freshness_ticks"], printed[f"{base}freshness_missed"]
        assert ticks > 0 and printed[f"{base}freshness_deliveries"] + missed == ticks * 50
        assert missed <= (0 if base == "live." else ticks * 50 // 20)  # polling may leave the last ones unsent
        assert 0 < printed[f"{base}freshness_p50_ms"] <= printed[f"{base}freshness_p99_ms"] < 15_000
        assert 100 <= printed[f"{base}ticks_per_s"] <= 260
        assert printed[f"{base}api_requests"] > 0 and printed[f"{base}api_failed"] == 0
        assert printed[f"{base}cpu.server_pct"] > 0
    assert printed["live.pairs"] == 60
    assert all(isinstance(printed[f"live.met.{name}"], bool) for name in ("freshness", "api", "clients"))
    assert "[bench" in done.stderr and "[bench" not in done.stdout  # progress on stderr, JSON alone on stdout
