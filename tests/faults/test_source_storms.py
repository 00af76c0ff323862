"""One source fails on every request (500s, 429s, timeouts, garbage bodies) for a whole run of ``cryptoviz run``.

The market simulator runs in this process with the fault on CoinMarketCap only, ``consecutive_errors`` on
(so no retry ever gets through), and ``cryptoviz run`` collects from it in a subprocess. Checked in the
database afterwards: CoinGecko's coins were stored every cycle, every cycle is recorded as "partial" with
CoinMarketCap's error, and CoinMarketCap is backed off: its circuit breaker opens after three failed cycles,
from then on no request reaches the simulator (``/_sim/stats``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cryptoviz.simulator import start_simulator
from cryptoviz.simulator.faults import Faults
from tests.faults.conftest import clean_env

pytestmark = pytest.mark.faults

INTERVAL = 2.5
DURATION = 17.0
COINS = 200
RETRIES = 1  # CRYPTOVIZ_HTTP_RETRIES: two attempts per cycle keep a failing cycle short
BREAKER_THRESHOLD = 3  # HttpClient's default: consecutive failed requests before the circuit opens


@dataclass(frozen=True)
class Storm:
    fault: str
    error: str  # what CoinMarketCap's error says, every cycle until the breaker opens
    attempts: int  # requests per failing cycle


STORMS = [
    Storm("server-error", "answered HTTP 500", RETRIES + 1),
    # 429 is read from CoinMarketCap's envelope (it says which limit) and never retried within a cycle
    Storm("rate-limit", "per-minute rate limit reached (error 1008", 1),
    Storm("slow", "no answer from 127.0.0.1 in time (ReadTimeout)", RETRIES + 1),
    Storm("garbage", "(HTTP 200); the body was cut short? retry later", RETRIES + 1),
]


def runs(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT r.id, r.started_at, r.status, r.sources, r.published FROM pipeline_runs r ORDER BY r.id"
        )).mappings().all()
    out = []
    for row in rows:
        sources = row["sources"]
        out.append({**row, "sources": json.loads(sources) if isinstance(sources, str) else sources})
    return out


def breaker_open(engine: sa.Engine) -> bool:
    try:
        return any(r["sources"]["coinmarketcap"]["breaker"] == "open" for r in runs(engine))
    except sa.exc.OperationalError:  # the run has not created its tables yet
        return False


def cmc_requests(sim_url: str) -> int:
    """Requests the simulator received for CoinMarketCap's listings, as its /_sim/stats reports them."""
    stats = httpx.get(f"{sim_url}/_sim/stats", timeout=5).json()
    return int(stats["requests"].get("/v1/cryptocurrency/listings/latest", 0))


@pytest.mark.parametrize("storm", STORMS, ids=[s.fault for s in STORMS])
def test_a_source_failing_every_time_is_backed_off_while_the_other_keeps_updating(storm: Storm,
                                                                                   tmp_path: Path) -> None:
    faults = Faults.parse(f"{storm.fault}@coinmarketcap=1", consecutive_errors=True, slow_seconds=2.0)
    db = tmp_path / "storm.db"
    with start_simulator(faults=faults, seed=11, n_coins=COINS) as sim:
        env = clean_env(**{f"CRYPTOVIZ_{k.upper()}": v for k, v in sim.settings_overrides().items()})
        env.update(CRYPTOVIZ_DATABASE_URL=f"sqlite:///{db}", CRYPTOVIZ_SOURCES="coingecko,coinmarketcap",
                   CRYPTOVIZ_COINGECKO_API_KEY="cg-demo-key",  # the demo key's rate limit allows this pace
                   CRYPTOVIZ_INTERVAL=str(INTERVAL), CRYPTOVIZ_HTTP_RETRIES=str(RETRIES),
                   CRYPTOVIZ_HTTP_TIMEOUT="0.5", CRYPTOVIZ_TOP_N=str(COINS),
                   CRYPTOVIZ_LOG_DIR=str(tmp_path / "logs"))
        with (tmp_path / "run.out").open("w") as out, (tmp_path / "run.err").open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "cryptoviz", "run", "--no-serve", "--duration",
                                     str(DURATION)], env=env, cwd=tmp_path, stdout=out, stderr=err, text=True)
        engine = sa.create_engine(f"sqlite:///{db}")
        try:
            # Watch the simulator from the moment the breaker is recorded open until the run ends.
            deadline = time.monotonic() + DURATION + 30
            while not breaker_open(engine) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            requests_when_opened = cmc_requests(sim.url)
            assert proc.wait(DURATION + 60) == 0, (tmp_path / "run.err").read_text()[-3000:]
            requests_at_end = cmc_requests(sim.url)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = (tmp_path / "run.err").read_text()
        recorded = runs(engine)
        with engine.connect() as conn:
            current = conn.execute(sa.text("SELECT count(*), max(observed_at) FROM currency_data")).one()
        engine.dispose()

    assert "Traceback" not in stderr
    assert len(recorded) >= 5, [r["started_at"] for r in recorded]
    for n, run in enumerate(recorded, start=1):
        cg, cmc = run["sources"]["coingecko"], run["sources"]["coinmarketcap"]
        # the healthy source went on: all its coins fetched and published, this very cycle (the current values
        # below show they were stored; history rows are written on change)
        assert (cg["error"], cg["fetched"], cg["breaker"]) == (None, COINS, "closed"), run
        assert run["published"] == COINS, run
        # the failing one is in the record of every cycle
        assert run["status"] == "partial", run
        assert cmc["fetched"] == 0 and cmc["error"], run
        if n < BREAKER_THRESHOLD:
            assert storm.error in cmc["error"] and cmc["breaker"] == "closed", run
        elif n == BREAKER_THRESHOLD:
            assert storm.error in cmc["error"] and cmc["breaker"] == "open", run
        else:
            assert "circuit open" in cmc["error"] and cmc["breaker"] == "open", run
    assert current[0] == COINS and current[1] == recorded[-1]["started_at"]
    # Backed off: the three failed cycles made their requests, the open circuit made none.
    assert requests_when_opened == requests_at_end == BREAKER_THRESHOLD * storm.attempts
    assert len(recorded) - BREAKER_THRESHOLD >= 2
    assert f"coinmarketcap: skipped: {BREAKER_THRESHOLD} consecutive failed requests, circuit open" in stderr
