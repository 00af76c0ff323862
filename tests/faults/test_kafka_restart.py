"""The Kafka broker stops and comes back while snapshots are being produced and consumed.

The publisher keeps producing into librdkafka's local queue while the broker is away and delivers it all once
the broker is back (``message.timeout.ms``, librdkafka's default of 300 s since bus/kafka.py leaves it alone,
outlasts the outage); the writer (``cryptoviz consume``) reconnects by itself. What counts is the database:
every snapshot stored exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cryptoviz.bus.kafka import KafkaPublisher, consumer_lag
from cryptoviz.models import CoinSnapshot
from cryptoviz.store import migrate
from tests.factories import numbered
from tests.faults.conftest import clean_env, services, wait_for

pytestmark = pytest.mark.faults

# Recent enough to stay within raw retention (30 days): `consume` prunes older rows by itself.
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
COINS = 300
MINUTES = 10  # 300 coins x 10 observations = 3,000 snapshots
OUTAGE = 5.0  # seconds between kafka-stop returning and kafka-start being run


def make_snapshot(coin: int, minute: int) -> CoinSnapshot:
    return numbered(coin, minute, t0=T0, base_price=50.0)


class SteadyProducer(threading.Thread):
    """Publishes ``snapshots`` in chunks every 0.1 s (about ``seconds`` in all), as a collector would,
    whatever the broker does meanwhile. Errors are kept for the test to raise, not lost in the thread."""

    def __init__(self, publisher: KafkaPublisher, snapshots: list[CoinSnapshot], seconds: float) -> None:
        super().__init__(daemon=True)
        self.publisher, self.snapshots = publisher, snapshots
        self.chunk = max(1, round(len(snapshots) / (seconds * 10)))
        self.error: BaseException | None = None
        self.published = 0

    def run(self) -> None:
        try:
            for start in range(0, len(self.snapshots), self.chunk):
                batch = self.snapshots[start:start + self.chunk]
                self.publisher.publish(batch)
                self.published += len(batch)
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def history(url: str) -> tuple[int, int]:
    """(rows, distinct (coin, time) pairs) in currency_data_history; (-1, -1) while unreachable."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows, distinct = conn.execute(sa.text(
                "SELECT count(*), count(DISTINCT (currency_id, observed_at)) FROM currency_data_history")).one()
            return int(rows), int(distinct)
    except sa.exc.OperationalError:
        return -1, -1
    finally:
        engine.dispose()


def start_consumer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "cryptoviz", "consume"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=log.parent)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_broker_restart_during_production_loses_and_duplicates_nothing(
        kafka_bootstrap: str, kafka_topic: str, kafka_group: str, pg_database: str, tmp_path: Path) -> None:
    migrate.upgrade(pg_database)
    snapshots = [make_snapshot(c, m) for m in range(MINUTES) for c in range(COINS)]
    env = clean_env(CRYPTOVIZ_DATABASE_URL=pg_database, CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                    CRYPTOVIZ_KAFKA_TOPIC=kafka_topic, CRYPTOVIZ_KAFKA_GROUP=kafka_group,
                    CRYPTOVIZ_LOG_DIR=str(tmp_path / "logs"), CRYPTOVIZ_BATCH_SIZE="200",
                    CRYPTOVIZ_BATCH_TIMEOUT="0.5")
    consumer_log = tmp_path / "consume.log"
    consumer = start_consumer(env, consumer_log)
    publisher = KafkaPublisher(kafka_bootstrap, kafka_topic)
    producer = SteadyProducer(publisher, snapshots, seconds=14)
    try:
        wait_for(lambda: "assigned" in consumer_log.read_text(errors="replace"), 60, "the consumer to join")
        producer.start()
        time.sleep(2.0)
        try:
            services("kafka-stop")
            stopped_at = time.monotonic()
            published_at_stop = producer.published
            time.sleep(OUTAGE)
            published_at_start = producer.published
        finally:
            services("kafka-start")  # whatever happened above: the broker is needed by everyone after us
        restarted_at = time.monotonic()
        producer.join(120)
        assert not producer.is_alive(), "the producer is stuck"
        if producer.error is not None:
            raise producer.error
        # The outage really happened mid-stream: publishing went on while the broker was away.
        assert 0 < published_at_stop < published_at_start
        assert publisher.flush(120) == 0, "messages still undelivered after the broker came back"
        assert publisher.failed == 0
        assert publisher.delivered == len(snapshots)
        publisher.close()

        wait_for(lambda: history(pg_database)[0] >= len(snapshots), 180, "every snapshot stored")
        time.sleep(3)  # a duplicate or a late redelivery would show up now
        assert history(pg_database) == (len(snapshots), len(snapshots))
        assert consumer.poll() is None, "the consumer died during the outage instead of reconnecting"
        wait_for(lambda: sum(consumer_lag(kafka_bootstrap, kafka_topic, kafka_group).values()) == 0, 60,
                 "offsets committed up to the end")
    finally:
        stop(consumer)
        publisher.close()
    engine = sa.create_engine(pg_database)
    with engine.connect() as conn:
        current = dict(conn.execute(sa.text("SELECT currency_id, price FROM currency_data")).all())
    engine.dispose()
    assert current == {s.coin_id: s.price for s in snapshots[-COINS:]}  # the latest observation won
    print(f"outage {restarted_at - stopped_at:.1f}s (stop to ready); {published_at_start - published_at_stop} "
          f"snapshots published while the broker was down")
