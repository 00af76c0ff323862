"""Hostile coin names travel the whole pipeline as data, never as SQL.

The market simulator serves a few extra coins whose names, symbols and ids are SQL (``'); DROP TABLE
currencies;--``), quotes, backslashes, ``%s`` placeholders and unicode. ``cryptoviz run`` collects them from
both APIs, parses, validates, reconciles and stores them: into SQLite, into PostgreSQL, and through Kafka
into PostgreSQL. Afterwards the rows hold the strings verbatim and every table is still there.

What the store cannot hold (a NUL, which PostgreSQL's text columns refuse; a name longer than its column) is
rejected by the parsers (reasons ``bad_text``, ``too_long``) instead of failing, again and again, the write
of every batch it is in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from cryptoviz.simulator import make_coin, start_simulator
from cryptoviz.simulator.coins import CoinSpec
from cryptoviz.store import migrate
from tests.faults.conftest import clean_env
from tests.integration.conftest import (  # noqa: F401 - fixtures, asked for by name in the tests below
    kafka_admin,
    kafka_bootstrap,
    kafka_group,
    kafka_topic,
    pg_database,
    pg_url,
)

pytestmark = pytest.mark.e2e

N_COINS = 30
HOSTILE: list[CoinSpec] = [
    make_coin("'); DROP TABLE currencies;--", "DROP", cg_id="x'); DROP TABLE currencies;--", cmc_id=99001),
    make_coin("Robert'); DELETE FROM currency_data_history; --", "BOBBY';--",
              cg_id="bobby-tables\"; DROP TABLE pipeline_runs; --", cmc_id=99002, price=0.75),
    make_coin("O'Brien \"Quoted\" \\back\\slash\\", "Q'\"\\", cg_id="o'brien\\coin", cmc_id=99003, price=3.5),
    make_coin("Percent %s %(name)s %% {0} $1 ?", "%S", cg_id="pct-%s-%(x)s-?", cmc_id=99004, price=12.0),
    make_coin("\u00dcn\u00efc\u00f8d\u00e9 \U0001f680 \u5e01 \u0645\u0631\u062d\u0628\u0627 \u202eevil",
              "\u5e01\U0001f680", cg_id="\u00fcnic\u00f8de-\U0001f680-\u5e01", cmc_id=99005, price=0.02),
    make_coin("-- comment /* block */ ; SELECT pg_sleep(5);", "SLP", cg_id="1 OR 1=1", cmc_id=99006),
]
TABLES = {"alembic_version", "currencies", "currency_data", "currency_data_history", "source_quotes",
          "pipeline_runs", "quote_rejections", "dead_letters"}


def run_pipeline(database_url: str, tmp_path: Path, duration: float = 7, extra: list[CoinSpec] = HOSTILE,
                 **more: str) -> None:
    with start_simulator(faults="none", seed=3, n_coins=N_COINS, extra_coins=extra) as sim:
        env = clean_env(**{f"CRYPTOVIZ_{k.upper()}": v for k, v in sim.settings_overrides().items()})
        env.update(CRYPTOVIZ_DATABASE_URL=database_url, CRYPTOVIZ_SOURCES="coingecko,coinmarketcap",
                   CRYPTOVIZ_COINGECKO_API_KEY="cg-demo", CRYPTOVIZ_TOP_N=str(len(sim.coins)),
                   CRYPTOVIZ_INTERVAL="2", CRYPTOVIZ_LOG_DIR=str(tmp_path / "logs"), **more)
        result = subprocess.run([sys.executable, "-m", "cryptoviz", "run", "--no-serve", "--duration",
                                 str(duration)], env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def assert_stored_verbatim(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            coins = {r.id: r for r in conn.execute(sa.text("SELECT id, name, symbol, slug FROM currencies"))}
            current = {r[0] for r in conn.execute(sa.text("SELECT currency_id FROM currency_data"))}
            history = dict(conn.execute(sa.text(
                "SELECT currency_id, count(*) FROM currency_data_history GROUP BY currency_id")).all())
            quoted = {(r[0], r[1]) for r in conn.execute(sa.text("SELECT currency_id, source FROM source_quotes"))}
            runs = conn.execute(sa.text("SELECT count(*) FROM pipeline_runs WHERE status = 'ok'")).scalar_one()
    finally:
        engine.dispose()
    assert len(coins) == N_COINS + len(HOSTILE)  # nothing dropped, nothing merged
    assert runs >= 2
    for spec in HOSTILE:
        row = coins.get(spec.cg_id)
        assert row is not None, f"{spec.cg_id!r} not stored under its id"
        assert (row.name, row.symbol, row.slug) == (spec.name, spec.symbol.upper(), spec.slug)
        assert spec.cg_id in current
        assert history[spec.cg_id] >= 2
        assert {(spec.cg_id, "coingecko"), (spec.cg_id, "coinmarketcap")} <= quoted  # both sources matched it


def test_hostile_names_into_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cryptoviz.db'}"
    run_pipeline(url, tmp_path)
    assert_stored_verbatim(url)


@pytest.mark.integration
def test_hostile_names_into_postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    database = request.getfixturevalue("pg_database")
    run_pipeline(database, tmp_path)
    assert_stored_verbatim(database)


@pytest.mark.integration
def test_hostile_names_through_kafka_into_postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    database = request.getfixturevalue("pg_database")
    migrate.upgrade(database)
    run_pipeline(database, tmp_path, duration=9,
                 CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS=request.getfixturevalue("kafka_bootstrap"),
                 CRYPTOVIZ_KAFKA_TOPIC=request.getfixturevalue("kafka_topic"),
                 CRYPTOVIZ_KAFKA_GROUP=request.getfixturevalue("kafka_group"), CRYPTOVIZ_BATCH_TIMEOUT="0.5")
    assert_stored_verbatim(database)


@pytest.mark.integration
@pytest.mark.parametrize(("coin", "label", "reason"), [
    (make_coin("Nul\x00Coin", "NUL", cg_id="nul\x00coin", cmc_id=99100), "nul\ufffdcoin", "bad_text"),
    (make_coin("Long " * 50, "LONG", cg_id="long-coin", cmc_id=99101), "long-coin", "too_long"),
], ids=["nul", "too-long"])
def test_a_name_the_store_cannot_hold_is_rejected_instead_of_blocking_every_write(
        coin: CoinSpec, label: str, reason: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A NUL (refused by PostgreSQL's text columns) or a name longer than its column: without the parsers'
    check, every batch holding the coin fails, and is retried for ever, and nothing more is stored."""
    database = request.getfixturevalue("pg_database")
    run_pipeline(database, tmp_path, extra=[coin])
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        coins = conn.execute(sa.text("SELECT count(*) FROM currencies")).scalar_one()
        history = conn.execute(sa.text("SELECT count(DISTINCT observed_at) FROM currency_data_history")).scalar_one()
        rejected = conn.execute(sa.text("SELECT DISTINCT source, coin, reason FROM quote_rejections")).all()
    engine.dispose()
    assert coins == N_COINS  # every other coin stored...
    assert history >= 2  # ...cycle after cycle
    assert {tuple(r) for r in rejected} == {("coingecko", label, reason), ("coinmarketcap", label, reason)}
