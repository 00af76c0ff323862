"""API keys and the API token never come out of CryptoViz: not on the console, not in the log file, not in the
database, not in the metrics or the API.

The real pipeline (``cryptoviz run`` and ``cryptoviz collect --once`` in a subprocess) runs against the market
simulator with fake keys and faults that send it down its error paths: 401s whose bodies quote the key that
was sent (``bad-key``), 429s and 500s. Every key carries the marker ``SECRET``, so a key cut in half by a
truncated message is caught too.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from cryptoviz.simulator import start_simulator
from cryptoviz.simulator.faults import Faults
from tests.faults.conftest import clean_env

pytestmark = pytest.mark.e2e

MARKER = "SECRET"


def secrets() -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    return {"CRYPTOVIZ_COINGECKO_API_KEY": f"cg-{MARKER}-{tag}", "CRYPTOVIZ_COINMARKETCAP_API_KEY": f"cmc-{MARKER}-{tag}",
            "CRYPTOVIZ_API_TOKEN": f"tok-{MARKER}-{tag}"}


def assert_clean(where: str, text: str, keys: dict[str, str]) -> None:
    for name, value in keys.items():
        assert value not in text, f"{name} found in {where}"
    for line in text.splitlines():
        assert MARKER not in line, f"part of a secret in {where}: {line[:300]}"


def sim_env(sim_overrides: dict[str, str], keys: dict[str, str], tmp_path: Path, **more: str) -> dict[str, str]:
    env = clean_env(**{f"CRYPTOVIZ_{k.upper()}": v for k, v in sim_overrides.items()})
    env.update(keys)  # after the simulator's placeholder key: ours are the ones sent
    env.update(CRYPTOVIZ_DATABASE_URL=f"sqlite:///{tmp_path / 'cryptoviz.db'}",
               CRYPTOVIZ_SOURCES="coingecko,coinmarketcap", CRYPTOVIZ_LOG_DIR=str(tmp_path / "logs"),
               CRYPTOVIZ_LOG_LEVEL="DEBUG", CRYPTOVIZ_HTTP_RETRIES="1", **more)
    return env


def database_texts(db: Path) -> dict[str, str]:
    """What the database holds where an error could land, and the raw bytes of its files."""
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT status, sources, errors FROM pipeline_runs")).all()
        rejections = conn.execute(sa.text("SELECT source, coin, field, reason, detail FROM quote_rejections")).all()
    engine.dispose()
    texts = {"pipeline_runs": "\n".join(f"{r.status} {r.sources} {r.errors}" for r in runs),
             "quote_rejections": "\n".join(" ".join(map(str, r)) for r in rejections)}
    for path in db.parent.glob(db.name + "*"):  # the file, its -wal and -shm
        texts[path.name] = path.read_bytes().decode("latin-1")
    return texts


def test_keys_never_leak_from_a_run_through_errors(tmp_path: Path) -> None:
    keys = secrets()
    token = keys["CRYPTOVIZ_API_TOKEN"]
    faults = Faults.parse("bad-key=0.35,rate-limit=0.3,server-error=0.3,malformed")
    with start_simulator(faults=faults, seed=5, n_coins=120) as sim:
        env = sim_env(sim.settings_overrides(), keys, tmp_path, CRYPTOVIZ_INTERVAL="1.5", CRYPTOVIZ_TOP_N="120")
        out_path, err_path = tmp_path / "run.out", tmp_path / "run.err"
        with out_path.open("w") as out, err_path.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "cryptoviz", "run", "--port", "0", "--duration", "16"],
                                    env=env, cwd=tmp_path, stdout=out, stderr=err)
        served: dict[str, str] = {}
        try:
            deadline = time.monotonic() + 60
            while not (m := re.search(r"dashboard: (http://127\.0\.0\.1:\d+)/", out_path.read_text())):
                assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()[-3000:]
                time.sleep(0.2)
            base = m.group(1)
            auth = {"Authorization": f"Bearer {token}"}
            time.sleep(8)  # a few cycles, errors included
            with httpx.Client(base_url=base, timeout=10) as api:
                served["metrics"] = api.get("/metrics", headers=auth).raise_for_status().text
                served["sources"] = api.get("/api/sources", headers=auth).raise_for_status().text
                served["coins"] = api.get("/api/coins", headers=auth).raise_for_status().text
                wrong = api.get("/metrics", headers={"Authorization": f"Bearer wrong-{MARKER}-token"})
                assert wrong.status_code == 401
                served["refusal"] = wrong.text
                try:  # the token in a URL, as a browser's EventSource sends it: never logged
                    with api.stream("GET", f"/api/stream?token={token}", timeout=3) as stream:
                        assert stream.status_code == 200
                        next(stream.iter_bytes(), b"")
                except httpx.ReadTimeout:
                    pass
            assert proc.wait(60) == 0, err_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stats = sim.stats()["sources"]

    # The error paths really ran, on both sources.
    for source in ("coingecko", "coinmarketcap"):
        injected = stats[source]["faults"]
        assert injected["bad-key"] and injected["rate-limit"] and injected["server-error"], stats
    texts = {"stdout": out_path.read_text(), "stderr": err_path.read_text(), **served}
    for log in (tmp_path / "logs").iterdir():
        texts[f"log {log.name}"] = log.read_text(errors="replace")
    texts.update(database_texts(tmp_path / "cryptoviz.db"))
    for where, text in texts.items():
        assert_clean(where, text, keys)
    # ...and the servers' echoes of the keys were there to leak: they show up masked.
    assert "This API Key is invalid: ***" in texts["pipeline_runs"]
    assert "Invalid API Key: ***" in texts["pipeline_runs"]
    assert "request refused" in texts["stderr"] and "rate limit" in texts["pipeline_runs"]
    assert "cryptoviz_cycles" in texts["metrics"]


def test_collect_once_against_a_401_says_so_without_the_keys(tmp_path: Path) -> None:
    keys = secrets()
    faults = Faults.parse("bad-key=1", consecutive_errors=True)
    with start_simulator(faults=faults, seed=1, n_coins=20) as sim:
        env = sim_env(sim.settings_overrides(), keys, tmp_path, COLUMNS="250")  # a table without wrapping
        result = subprocess.run([sys.executable, "-m", "cryptoviz", "collect", "--once"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1  # every source failed: the cycle failed
    assert "failed" in result.stdout and "request refused" in result.stdout, result.stdout
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    for log in (tmp_path / "logs").iterdir():
        texts[f"log {log.name}"] = log.read_text(errors="replace")
    texts.update(database_texts(tmp_path / "cryptoviz.db"))
    for where, text in texts.items():
        assert_clean(where, text, keys)
    assert "This API Key is invalid: ***" in texts["pipeline_runs"]
