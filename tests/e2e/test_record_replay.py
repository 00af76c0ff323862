"""Record from the simulator, replay into fresh databases: the same rows, and exact recorded values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from cryptoviz.simulator import start_simulator

pytestmark = pytest.mark.e2e

TABLES = {
    "currencies": "SELECT id, symbol, name, coingecko_id, coinmarketcap_id FROM currencies ORDER BY id",
    "currency_data_history": "SELECT currency_id, observed_at, price, market_cap, confidence, sources "
                             "FROM currency_data_history ORDER BY currency_id, observed_at",
    "source_quotes": "SELECT currency_id, source, observed_at, price, used FROM source_quotes "
                     "ORDER BY currency_id, source, observed_at",
}


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "cryptoviz", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(sa.text(q))] for name, q in TABLES.items()}


def test_record_then_replay_gives_the_same_rows(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    with start_simulator(port=0, faults="none", seed=7, n_coins=120) as sim:
        env.update({f"CRYPTOVIZ_{k.upper()}": v for k, v in sim.settings_overrides().items()})
        env["CRYPTOVIZ_TOP_N"] = "120"
        _run(["record", "--out", str(tmp_path / "rec"), "--cycles", "2", "--interval", "1.5"], env, tmp_path)

    files = {p.parent.name: sorted(p.parent.iterdir()) for p in (tmp_path / "rec").glob("*/*.json")}
    assert set(files) == {"coingecko", "coinmarketcap", "coinpaprika"}
    # CoinPaprika is fetched every 5 minutes (its free plan's budget): once in two cycles, its quotes
    # reused in the second, live and in the replay alike
    assert {name: len(v) for name, v in files.items()} == {"coingecko": 2, "coinmarketcap": 2, "coinpaprika": 1}

    _run(["replay", str(tmp_path / "rec"), "--database-url", f"sqlite:///{tmp_path / 'a.db'}"], env, tmp_path)
    _run(["replay", str(tmp_path / "rec"), "--database-url", f"sqlite:///{tmp_path / 'b.db'}"], env, tmp_path)
    a, b = _rows(tmp_path / "a.db"), _rows(tmp_path / "b.db")
    assert a == b
    assert len(a["currencies"]) == 120
    # write on change: every coin's first cycle is recorded, the second only where something moved
    first_cycle = min(r[1] for r in a["currency_data_history"])
    assert sum(1 for r in a["currency_data_history"] if r[1] == first_cycle) == 120
    assert 120 < len(a["currency_data_history"]) <= 2 * 120
    aggregators = {"coingecko", "coinmarketcap", "coinpaprika"}
    assert sum(1 for r in a["source_quotes"] if r[1] in aggregators) == 3 * len(a["currency_data_history"])
    # the exchanges' frames were recorded (as JSON lines) and replayed too
    assert {r[1] for r in a["source_quotes"]} - aggregators == {"binance", "coinbase", "kraken"}

    # Paced like the capture (--speed 1): the same rows, the cycles no closer together than recorded.
    times = sorted({r[1] for r in a["currency_data_history"]})
    span = (datetime.fromisoformat(str(times[-1])) - datetime.fromisoformat(str(times[0]))).total_seconds()
    started = time.monotonic()
    _run(["replay", str(tmp_path / "rec"), "--database-url", f"sqlite:///{tmp_path / 'c.db'}", "--speed", "1"],
         env, tmp_path)
    assert time.monotonic() - started >= span > 0
    assert _rows(tmp_path / "c.db") == a

    # Replaying again into the same database adds nothing.
    _run(["replay", str(tmp_path / "rec"), "--database-url", f"sqlite:///{tmp_path / 'a.db'}"], env, tmp_path)
    assert _rows(tmp_path / "a.db") == a

    # Stored source values are exactly what the recorded bodies said.
    first = json.loads(files["coingecko"][0].read_bytes())
    btc = next(item for item in first if item["id"] == "bitcoin")
    stored = [r for r in a["source_quotes"] if r[0] == "bitcoin" and r[1] == "coingecko"]
    assert stored[0][3] == float(btc["current_price"])
