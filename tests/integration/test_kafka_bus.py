"""The Kafka bus against a real broker (``scripts/services.sh up``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from cryptoviz.bus.base import Batch
from cryptoviz.bus.factory import make_consumer, make_publisher
from cryptoviz.bus.kafka import (
    KafkaConsumer,
    KafkaPublisher,
    consumer_lag,
    dlq_topic_of,
    list_dlq,
)
from cryptoviz.config import Settings
from cryptoviz.models import CoinSnapshot, SourceValue, encode_snapshot

pytestmark = pytest.mark.integration

OBSERVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def snapshot(i: int, coin_id: str | None = None) -> CoinSnapshot:
    coin = coin_id or f"coin-{i:05d}"
    return CoinSnapshot(
        coin_id=coin, symbol=f"C{i}", name=f"Coin {i}", slug=coin, rank=i + 1,
        price=1.0 + i / 100, market_cap=1e9 + i, volume_24h=1e6 + i,
        change_1h=0.1, change_24h=-1.5, change_7d=None,
        circulating_supply=1e7, total_supply=2e7, max_supply=None,
        confidence=0.9, observed_at=OBSERVED, currency="usd", coingecko_id=coin,
        sources=(SourceValue(source="coingecko", source_id=coin, price=1.0 + i / 100,
                             market_cap=1e9 + i, volume_24h=None, last_updated=OBSERVED),),
    )


def publish_all(bootstrap: str, topic: str, snapshots: list[CoinSnapshot]) -> KafkaPublisher:
    publisher = KafkaPublisher(bootstrap, topic)
    publisher.publish(snapshots)
    assert publisher.flush(30) == 0
    assert publisher.delivered == len(snapshots)
    assert publisher.failed == 0
    publisher.close()
    return publisher


def drain(consumer: KafkaConsumer, want: int, *, max_records: int = 500, deadline_s: float = 60.0,
          commit: bool = True, on_batch: Callable[[Batch], None] | None = None) -> list[CoinSnapshot]:
    got: list[CoinSnapshot] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < deadline:
        batch = consumer.poll_batch(max_records, 1.0)
        assert batch is not None
        got.extend(batch.snapshots)
        if on_batch:
            on_batch(batch)
        if commit:
            consumer.commit(batch)
    return got


def poll_until_assigned(consumers: Iterable[KafkaConsumer], *, deadline_s: float = 30.0) -> None:
    consumers = list(consumers)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for c in consumers:
            batch = c.poll_batch(100, 0.3)
            assert batch is not None and not batch.snapshots, "nothing was published yet"
        sizes = [len(c.assignment) for c in consumers]
        if all(sizes) and sum(sizes) == 6:
            return
    raise AssertionError(f"group never settled: assignments {[sorted(c.assignment) for c in consumers]}")


def test_publish_2000_consume_commit_and_nothing_left(kafka_bootstrap: str, kafka_topic: str,
                                                      kafka_group: str) -> None:
    sent = [snapshot(i) for i in range(2000)]
    publisher = publish_all(kafka_bootstrap, kafka_topic, sent)
    assert publisher.compression in {"lz4", "zstd", "snappy", "gzip", "none"}

    consumer = KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group)
    partitions_seen: set[int] = set()
    try:
        got = drain(consumer, 2000,
                    on_batch=lambda b: partitions_seen.update(p for _, p in b.token))
    finally:
        consumer.close()
    assert len(got) == 2000
    assert {s.coin_id for s in got} == {s.coin_id for s in sent}
    by_id = {s.coin_id: s for s in got}
    assert by_id["coin-00042"] == sent[42]  # the codec round-trips the whole record
    assert partitions_seen == set(range(6))
    assert consumer_lag(kafka_bootstrap, kafka_topic, kafka_group) == dict.fromkeys(range(6), 0)

    second = KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group)
    try:
        poll_until_assigned([second])
        batch = second.poll_batch(500, 2.0)
        assert batch is not None
        assert batch.snapshots == [] and batch.dead_lettered == 0
    finally:
        second.close()
    assert second.poll_batch(10, 0.1) is None  # closed


def test_uncommitted_batch_is_redelivered(kafka_bootstrap: str, kafka_topic: str, kafka_group: str) -> None:
    sent = [snapshot(i) for i in range(120)]
    publish_all(kafka_bootstrap, kafka_topic, sent)

    first = KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group)
    try:
        committed = drain(first, 40, max_records=40, commit=True)
        assert len(committed) == 40
        uncommitted = drain(first, 80, commit=False)  # polled, "written", never acknowledged
        assert len(uncommitted) == 80
    finally:
        first.close()  # leaves the group, commits nothing

    second = KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group)
    try:
        again = drain(second, 80)
        extra = second.poll_batch(500, 1.0)
    finally:
        second.close()
    assert extra is not None and extra.snapshots == []
    assert sorted(s.coin_id for s in again) == sorted(s.coin_id for s in uncommitted)
    assert not {s.coin_id for s in again} & {s.coin_id for s in committed}
    assert consumer_lag(kafka_bootstrap, kafka_topic, kafka_group) == dict.fromkeys(range(6), 0)


def test_rewind_redelivers_to_the_same_consumer(kafka_bootstrap: str, kafka_topic: str,
                                                kafka_group: str) -> None:
    sent = [snapshot(i) for i in range(30)]
    publish_all(kafka_bootstrap, kafka_topic, sent)
    consumer = KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group)
    try:
        once = drain(consumer, 30, commit=False)
        consumer.rewind()
        twice = drain(consumer, 30)
    finally:
        consumer.close()
    assert sorted(s.coin_id for s in once) == sorted(s.coin_id for s in twice) == sorted(
        s.coin_id for s in sent)


def test_poison_messages_go_to_the_dlq_and_later_messages_still_flow(kafka_bootstrap: str, kafka_topic: str,
                                                                     kafka_group: str) -> None:
    key = b"bitcoin"  # one key: one partition, so the order below is the log order
    good = [snapshot(i, coin_id="bitcoin") for i in range(3)]
    wrong_version = orjson.dumps({"schema_version": 99, "snapshot": orjson.loads(encode_snapshot(good[0]))})
    negative = orjson.loads(encode_snapshot(good[0]))
    negative["snapshot"]["price"] = -5.0
    negative_price = orjson.dumps(negative)
    sequence = [encode_snapshot(good[0]), b"{not json", wrong_version, negative_price,
                encode_snapshot(good[1]), encode_snapshot(good[2])]
    raw = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    reports: list[tuple[int, int]] = []

    def on_delivery(err: object, msg: object) -> None:
        assert err is None
        reports.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    for value in sequence:
        raw.produce(kafka_topic, key=key, value=value, on_delivery=on_delivery)
    assert raw.flush(30) == 0
    partition = reports[0][0]
    assert [offset for _, offset in reports] == list(range(6))

    consumer = KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group)
    dead = 0
    try:
        def count(batch: Batch) -> None:
            nonlocal dead
            dead += batch.dead_lettered

        got = drain(consumer, 3, on_batch=count)
    finally:
        consumer.close()
    assert got == good  # valid messages before and after the poison, in order
    assert dead == 3
    assert consumer.dead_lettered == 3
    assert consumer_lag(kafka_bootstrap, kafka_topic, kafka_group)[partition] == 0

    letters = list_dlq(kafka_bootstrap, dlq_topic_of(kafka_topic))
    assert len(letters) == 3
    letters.sort(key=lambda d: d.original_offset or 0)
    assert [d.original_offset for d in letters] == [1, 2, 3]
    assert all(d.original_topic == kafka_topic for d in letters)
    assert all(d.original_partition == partition for d in letters)
    assert all(d.key == "bitcoin" for d in letters)
    assert all(d.timestamp is not None for d in letters)
    assert "invalid JSON" in letters[0].error
    assert letters[0].value_preview == "{not json"
    assert "schema_version 99" in letters[1].error
    assert "price" in letters[2].error and "-5.0" in letters[2].error
    assert letters[2].value_preview == negative_price[:200].decode()
    assert list_dlq(kafka_bootstrap, dlq_topic_of(kafka_topic), limit=2)[0].original_offset in {1, 2, 3}
    assert len(list_dlq(kafka_bootstrap, dlq_topic_of(kafka_topic), limit=2)) == 2
    assert list_dlq(kafka_bootstrap, "no-such-topic-dlq") == []


def test_two_consumers_in_one_group_split_the_partitions(kafka_bootstrap: str, kafka_topic: str,
                                                         kafka_group: str) -> None:
    a = KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group, client_id="member-a")
    b = KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group, client_id="member-b")
    try:
        poll_until_assigned([a, b])
        assert not a.assignment & b.assignment
        assert {p for _, p in a.assignment | b.assignment} == set(range(6))

        sent = [snapshot(i) for i in range(600)]
        publish_all(kafka_bootstrap, kafka_topic, sent)
        got: dict[str, list[CoinSnapshot]] = {"a": [], "b": []}
        deadline = time.monotonic() + 60
        while len(got["a"]) + len(got["b"]) < 600 and time.monotonic() < deadline:
            for name, consumer in (("a", a), ("b", b)):
                batch = consumer.poll_batch(100, 0.5)
                assert batch is not None
                got[name].extend(batch.snapshots)
                consumer.commit(batch)
    finally:
        a.close()
        b.close()
    ids_a = {s.coin_id for s in got["a"]}
    ids_b = {s.coin_id for s in got["b"]}
    assert ids_a and ids_b
    assert not ids_a & ids_b
    assert ids_a | ids_b == {s.coin_id for s in sent}


def test_factory_builds_kafka_clients_and_creates_topics(kafka_bootstrap: str, kafka_admin: Any,
                                                        kafka_group: str,
                                                        drop_topics: Callable[[list[str]], None]) -> None:
    topic = f"test-factory-{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic, kafka_group=kafka_group)
    publisher = make_publisher(settings)
    consumer = make_consumer(settings)
    try:
        assert isinstance(publisher, KafkaPublisher) and isinstance(consumer, KafkaConsumer)
        topics = kafka_admin.list_topics(timeout=10).topics
        assert len(topics[topic].partitions) == settings.kafka_partitions
        assert dlq_topic_of(topic) in topics
        publisher.publish([snapshot(1)])
        assert publisher.flush(10) == 0
        assert drain(consumer, 1) == [snapshot(1)]
    finally:
        publisher.close()
        consumer.close()
        drop_topics([topic, dlq_topic_of(topic)])


def test_lag_counts_what_the_consumer_has_not_taken_yet(kafka_bootstrap: str, kafka_topic: str,
                                                        kafka_group: str) -> None:
    publish_all(kafka_bootstrap, kafka_topic, [snapshot(i) for i in range(300)])
    consumer = KafkaConsumer(kafka_bootstrap, kafka_topic, kafka_group)
    try:
        taken = drain(consumer, 100, max_records=100)
        # Watermarks come with the fetches; give the prefetch a moment to have seen every partition.
        deadline = time.monotonic() + 10
        while consumer.lag() != 300 - len(taken) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert consumer.lag() == 300 - len(taken)
        rest = drain(consumer, 300 - len(taken))
        assert len(taken) + len(rest) == 300
        assert consumer.lag() == 0
    finally:
        consumer.close()
