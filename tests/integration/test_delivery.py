"""Delivery guarantees against the real broker and database, with `cryptoviz` processes.

At-least-once delivery + idempotent writes = every snapshot stored exactly once, whatever is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import Producer, TopicPartition

from cryptoviz.bus.base import Batch, Consumer
from cryptoviz.bus.kafka import KafkaConsumer, KafkaPublisher, consumer_lag, dlq_topic_of, list_dlq
from cryptoviz.models import CoinSnapshot, encode_snapshot
from cryptoviz.simulator import start_simulator
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from cryptoviz.writer_loop import run_writer
from tests.conftest import ROOT
from tests.factories import numbered

pytestmark = pytest.mark.integration

# Recent enough to stay within raw retention (30 days): `consume` prunes older rows by itself.
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
COINS = 300
MINUTES = 20  # 300 coins x 20 observations = 6,000 snapshots


def make_snapshot(coin: int, minute: int) -> CoinSnapshot:
    return numbered(coin, minute, t0=T0, base_price=100.0)


def stream() -> list[CoinSnapshot]:
    return [make_snapshot(c, m) for m in range(MINUTES) for c in range(COINS)]


class SteadyPublisher(threading.Thread):
    """Publishes ``snapshots`` at about ``rate`` per second, like a collector under load."""

    def __init__(self, bootstrap: str, topic: str, snapshots: list[CoinSnapshot], rate: float) -> None:
        super().__init__(daemon=True)
        self.publisher = KafkaPublisher(bootstrap, topic)
        self.snapshots, self.rate = snapshots, rate

    def run(self) -> None:
        chunk = max(1, int(self.rate / 10))
        for start in range(0, len(self.snapshots), chunk):
            self.publisher.publish(self.snapshots[start:start + chunk])
            time.sleep(0.1)
        assert self.publisher.flush(60) == 0


def cli_env(database_url: str, bootstrap: str, topic: str, group: str, logs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    env.update({"CRYPTOVIZ_DATABASE_URL": database_url, "CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "CRYPTOVIZ_KAFKA_TOPIC": topic, "CRYPTOVIZ_KAFKA_GROUP": group,
                "CRYPTOVIZ_LOG_DIR": str(logs), "CRYPTOVIZ_BATCH_SIZE": "200", "CRYPTOVIZ_BATCH_TIMEOUT": "0.5"})
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "cryptoviz", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=log.parent)


def history(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM currency_data_history")).scalar_one())
    except sa.exc.OperationalError:
        return -1
    finally:
        engine.dispose()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def assert_exactly_once_and_latest(url: str, expected: int) -> None:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows, distinct = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT (currency_id, observed_at)) FROM currency_data_history")).one()
        current = dict(conn.execute(sa.text("SELECT currency_id, price FROM currency_data")).all())
    engine.dispose()
    assert (rows, distinct) == (expected, expected)
    assert len(current) == COINS
    last = {s.coin_id: s.price for s in (make_snapshot(c, MINUTES - 1) for c in range(COINS))}
    assert current == last


def committed_total(bootstrap: str, topic: str, group: str) -> int:
    consumer = RawConsumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(6)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def plain_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class CheckingConsumer(Consumer):
    """A Kafka consumer whose ``commit`` first looks, on a database connection of its own, for every row
    of the batch: what it finds missing at that moment would be lost if the process died right after."""

    def __init__(self, inner: KafkaConsumer, database_url: str) -> None:
        self.inner, self.dsn = inner, plain_dsn(database_url)
        self.missing: list[int] = []  # per commit, rows of the batch not visible yet
        self.checked = 0

    def poll_batch(self, max_records: int, timeout: float) -> Batch | None:
        return self.inner.poll_batch(max_records, timeout)

    def lag(self) -> int | None:
        return self.inner.lag()

    def commit(self, batch: Batch) -> None:
        wanted = {(s.coin_id, s.observed_at) for s in batch.snapshots}
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            found = set(conn.execute(
                "SELECT currency_id, observed_at FROM currency_data_history "
                "WHERE currency_id = ANY(%s) AND observed_at = ANY(%s)",
                ([c for c, _ in wanted], [t for _, t in wanted])).fetchall())
        self.missing.append(len(wanted - found))
        self.checked += len(wanted)
        self.inner.commit(batch)

    def close(self) -> None:
        self.inner.close()


def test_offsets_are_committed_only_once_postgres_shows_the_rows(kafka_bootstrap: str, kafka_topic: str,
                                                                 kafka_group: str, pg_database: str) -> None:
    migrate.upgrade(pg_database)
    snapshots = [make_snapshot(c, m) for m in range(10) for c in range(COINS)]  # 3,000
    publisher = KafkaPublisher(kafka_bootstrap, kafka_topic)
    publisher.publish(snapshots)
    assert publisher.flush(30) == 0
    consumer = CheckingConsumer(KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group), pg_database)
    engine = make_engine(pg_database)
    stop = threading.Event()
    stored = 0

    def on_write(n: int) -> None:
        nonlocal stored
        stored += n
        if stored >= len(snapshots):
            stop.set()

    deadline = threading.Timer(90, stop.set)  # a hang ends as a failure below, not as a stuck run
    deadline.start()
    try:
        run_writer(consumer, open_sink(engine), stop, batch_size=200, batch_timeout=0.2, drain=False,
                   on_write=on_write)
    finally:
        deadline.cancel()
        stop.set()
        consumer.close()
        engine.dispose()
    assert stored == consumer.checked == len(snapshots)
    assert len(consumer.missing) >= len(snapshots) // 200
    assert sum(consumer.missing) == 0, f"rows not yet visible at commit time: {consumer.missing}"
    assert sum(consumer_lag(kafka_bootstrap, kafka_topic, kafka_group).values()) == 0
    assert history(pg_database) == len(snapshots)


def read_only(database_url: str, on: bool) -> None:
    """Make the dedicated test database refuse (or take again) writes from its new sessions, and end the
    sessions already open (other than this one) so that pooled connections reconnect under the new rule."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(plain_dsn(database_url), autocommit=True) as conn:
        setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
        conn.execute("SET default_transaction_read_only = off")  # this session may have started read-only
        conn.execute(f'ALTER DATABASE "{name}" {setting}')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def test_database_refusing_writes_then_kill_9_while_retrying_then_restart(
        kafka_bootstrap: str, kafka_topic: str, kafka_group: str, pg_database: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_database)
    env = cli_env(pg_database, kafka_bootstrap, kafka_topic, kafka_group, tmp_path)
    snapshots = stream()
    producer = SteadyPublisher(kafka_bootstrap, kafka_topic, snapshots, rate=1000)
    first = start(["consume"], env, tmp_path / "consume-1.log")
    try:
        producer.start()
        wait_for(lambda: history(pg_database) >= 1000, 90, "the consumer to store 1,000 rows")
        read_only(pg_database, True)
        wait_for(lambda: "read-only transaction" in (tmp_path / "consume-1.log").read_text(), 30,
                 "the consumer to meet the read-only database")
        stored_at, committed_at = history(pg_database), committed_total(kafka_bootstrap, kafka_topic, kafka_group)
        time.sleep(3)  # retrying meanwhile: nothing written, nothing acknowledged
        assert first.poll() is None, "the consumer died instead of retrying"
        assert history(pg_database) == stored_at < len(snapshots)
        assert committed_total(kafka_bootstrap, kafka_topic, kafka_group) == committed_at <= stored_at
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        read_only(pg_database, False)
    assert "retrying in" in (tmp_path / "consume-1.log").read_text()
    second = start(["consume"], env, tmp_path / "consume-2.log")
    try:
        producer.join(60)
        wait_for(lambda: history(pg_database) == len(snapshots), 120, "every snapshot stored")
        time.sleep(2)  # anything duplicated would show up now
        assert_exactly_once_and_latest(pg_database, len(snapshots))
        wait_for(lambda: sum(consumer_lag(kafka_bootstrap, kafka_topic, kafka_group).values()) == 0, 30,
                 "offsets committed up to the end")
    finally:
        stop(second)


def test_kill_9_the_consumer_mid_stream_then_restart(kafka_bootstrap: str, kafka_topic: str, kafka_group: str,
                                                     pg_database: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_database)
    env = cli_env(pg_database, kafka_bootstrap, kafka_topic, kafka_group, tmp_path)
    snapshots = stream()
    producer = SteadyPublisher(kafka_bootstrap, kafka_topic, snapshots, rate=1000)
    first = start(["consume"], env, tmp_path / "consume-1.log")
    producer.start()
    wait_for(lambda: history(pg_database) >= 1500, 90, "the consumer to store 1,500 rows")
    first.send_signal(signal.SIGKILL)
    first.wait()
    stored_at_kill = history(pg_database)
    assert stored_at_kill < len(snapshots), "the kill came too late to be mid-stream"
    second = start(["consume"], env, tmp_path / "consume-2.log")
    try:
        producer.join(60)
        wait_for(lambda: history(pg_database) == len(snapshots), 120, "every snapshot stored")
        time.sleep(2)  # anything duplicated would show up now
        assert_exactly_once_and_latest(pg_database, len(snapshots))
        wait_for(lambda: sum(consumer_lag(kafka_bootstrap, kafka_topic, kafka_group).values()) == 0, 30,
                 "offsets committed up to the end")
    finally:
        stop(second)


def services(command: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), command], check=True, cwd=ROOT, timeout=120)


def test_postgres_down_for_10_seconds_loses_nothing(kafka_bootstrap: str, kafka_topic: str, kafka_group: str,
                                                    pg_database: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_database)
    env = cli_env(pg_database, kafka_bootstrap, kafka_topic, kafka_group, tmp_path)
    snapshots = stream()
    producer = SteadyPublisher(kafka_bootstrap, kafka_topic, snapshots, rate=400)  # about 15 s of stream
    consumer = start(["consume"], env, tmp_path / "consume.log")
    try:
        producer.start()
        wait_for(lambda: history(pg_database) >= 600, 90, "the consumer to store 600 rows")
        services("pg-stop")
        try:
            time.sleep(2)
            committed_during = committed_total(kafka_bootstrap, kafka_topic, kafka_group)
            time.sleep(8)
            # Nothing is acknowledged while the database cannot take the rows.
            assert committed_total(kafka_bootstrap, kafka_topic, kafka_group) == committed_during
            assert consumer.poll() is None, "the consumer died instead of retrying"
        finally:
            services("pg-start")
        producer.join(60)
        wait_for(lambda: history(pg_database) == len(snapshots), 120, "the consumer to resume by itself")
        assert_exactly_once_and_latest(pg_database, len(snapshots))
        assert consumer.poll() is None
    finally:
        stop(consumer)
    log = (tmp_path / "consume.log").read_text()
    assert "retrying in" in log


def test_poison_messages_go_to_the_dlq_and_the_stream_goes_on(kafka_bootstrap: str, kafka_topic: str,
                                                              kafka_group: str, pg_database: str,
                                                              tmp_path: Path) -> None:
    migrate.upgrade(pg_database)
    good = [make_snapshot(c, 0) for c in range(50)]
    negative = orjson.loads(encode_snapshot(make_snapshot(999, 0)))
    negative["snapshot"]["price"] = -1.0
    wrong_version = {**orjson.loads(encode_snapshot(make_snapshot(998, 0))), "schema_version": 42}
    nul_name = orjson.loads(encode_snapshot(make_snapshot(997, 0)))
    nul_name["snapshot"]["name"] = "Coin\x00997"  # PostgreSQL text cannot hold it
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, value in ((b"bad-json", b"{not json"), (b"coin-0999", orjson.dumps(negative)),
                       (b"coin-0998", orjson.dumps(wrong_version)), (b"coin-0997", orjson.dumps(nul_name))):
        producer.produce(kafka_topic, key=key, value=value, partition=0)
    for s in good:
        producer.produce(kafka_topic, key=s.coin_id.encode(), value=encode_snapshot(s), partition=0)
    assert producer.flush(30) == 0

    env = cli_env(pg_database, kafka_bootstrap, kafka_topic, kafka_group, tmp_path)
    consumer = start(["consume"], env, tmp_path / "consume.log")
    try:
        wait_for(lambda: history(pg_database) == 50, 60, "the valid messages after the poison")
    finally:
        stop(consumer)
    letters = list_dlq(kafka_bootstrap, dlq_topic_of(kafka_topic))
    reasons = {d.key: d.error for d in letters}
    assert len(letters) == 4
    assert "invalid JSON" in reasons["bad-json"]
    assert "price" in reasons["coin-0999"]
    assert "schema_version 42" in reasons["coin-0998"]
    assert "field 'name': contains a NUL character" in reasons["coin-0997"]
    assert {d.original_topic for d in letters} == {kafka_topic}
    assert sorted(d.original_offset for d in letters) == [0, 1, 2, 3]
    listing = subprocess.run([sys.executable, "-m", "cryptoviz", "dlq", "list"], env={**env, "COLUMNS": "200"},
                             capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path)
    assert "4 message(s)" in listing.stdout
    assert "invalid JSON" in listing.stdout


def test_collector_and_two_consumers_in_separate_processes(kafka_bootstrap: str, kafka_topic: str,
                                                           kafka_group: str, pg_database: str,
                                                           tmp_path: Path) -> None:
    env = cli_env(pg_database, kafka_bootstrap, kafka_topic, kafka_group, tmp_path)
    subprocess.run([sys.executable, "-m", "cryptoviz", "db", "upgrade"], env=env, check=True, timeout=120,
                   cwd=tmp_path, capture_output=True)
    consumers = [start(["consume"], env, tmp_path / f"consume-{i}.log") for i in (1, 2)]
    try:
        time.sleep(6)  # both join the group before the first message
        with start_simulator(port=0, faults="none", seed=3, n_coins=150) as sim:
            # The aggregators only: every snapshot then comes from a cycle that pipeline_runs counts (the
            # exchanges' live updates between cycles are published outside them).
            collect_env = {**env, **{f"CRYPTOVIZ_{k.upper()}": v for k, v in sim.settings_overrides().items()},
                           "CRYPTOVIZ_TOP_N": "150", "CRYPTOVIZ_SOURCES": "coingecko,coinmarketcap,coinpaprika"}
            collector = subprocess.run(
                [sys.executable, "-m", "cryptoviz", "collect", "--duration", "10", "--interval", "3"],
                env=collect_env, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
        assert collector.returncode == 0, collector.stderr[-2000:]
        engine = sa.create_engine(pg_database)
        with engine.connect() as conn:
            published, recorded = conn.execute(sa.text(
                "SELECT sum(published), sum(recorded) FROM pipeline_runs")).one()
        engine.dispose()
        assert published >= 3 * 150 and 150 <= recorded <= published
        # every recorded snapshot makes a history row (the others only update the current value)
        wait_for(lambda: history(pg_database) == recorded, 60, "every recorded snapshot stored")
        time.sleep(2)
        assert history(pg_database) == recorded
    finally:
        for proc in consumers:
            stop(proc)
    stored = []
    for i in (1, 2):
        log = (tmp_path / f"consume-{i}.log").read_text()
        line = [x for x in log.splitlines() if "snapshots stored" in x][-1]
        stored.append(int(line.split("consumer stopped:")[1].split()[0]))
    assert all(n > 0 for n in stored), stored  # both consumers had partitions
    assert sum(stored) >= published


def test_demo_through_kafka_into_postgres(kafka_bootstrap: str, kafka_admin: object, pg_database: str,
                                          tmp_path: Path, drop_topics: Callable[[list[str]], None]) -> None:
    topic = f"test-demo-{os.getpid()}-{int(time.time())}"
    env = cli_env(pg_database, kafka_bootstrap, topic, "g-" + topic, tmp_path)
    result = subprocess.run([sys.executable, "-m", "cryptoviz", "demo", "--duration", "16", "--interval", "4",
                             "--database-url", pg_database, "--no-serve"], env=env, capture_output=True, text=True,
                            timeout=180, cwd=tmp_path, check=False)
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        engine = sa.create_engine(pg_database)
        with engine.connect() as conn:
            coins = conn.execute(sa.text("SELECT count(*) FROM currencies")).scalar_one()
            min_rows = conn.execute(sa.text("SELECT min(n) FROM (SELECT count(*) AS n FROM currency_data_history "
                                            "GROUP BY currency_id) t")).scalar_one()
        engine.dispose()
        assert coins >= 100
        assert min_rows >= 2
        topics = kafka_admin.list_topics(timeout=10).topics  # type: ignore[attr-defined]
        assert f"{topic}_demo" in topics  # the demo's own topic...
        assert topic not in topics  # ...never the production one
    finally:
        drop_topics([f"{topic}_demo", dlq_topic_of(f"{topic}_demo")])
