"""Apache Kafka bus (confluent-kafka, i.e. librdkafka).

Delivery guarantee: **at least once**.

* The publisher is idempotent (``enable.idempotence``, ``acks=all``): a retried send is not
  duplicated in the log. One message per snapshot, keyed by coin id, so one coin always lands on the
  same partition and keeps its order.
* The consumer never commits by itself (``enable.auto.commit=False`` and
  ``enable.auto.offset.store=False``). ``commit(batch)`` stores exactly the offsets that the batch
  consumed, after the caller's database transaction committed. A batch that was polled but not
  committed (crash, shutdown, or partitions moved to another member in a rebalance) is delivered
  again, to this consumer after a restart or to whichever member owns the partition next. The
  database writes are idempotent, so a redelivered batch changes nothing.
* A rebalance commits nothing: revoked partitions simply stop counting as ours, and ``commit`` skips
  offsets of partitions this member no longer owns (their new owner resumes from the last commit).
* A message that cannot be decoded or fails validation (``MessageError``) is copied, key and value
  unchanged, to the dead-letter topic ``<topic>.dlq`` with the headers ``error``, ``original_topic``,
  ``original_partition`` and ``original_offset``, and counted in ``Batch.dead_lettered``. Its offset
  is committed with the batch, and only after the dead-letter copy is acknowledged by the broker.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka import Consumer as _RdConsumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from cryptoviz.bus.base import Batch, Consumer, DeadLetterRecord, Publisher
from cryptoviz.errors import CryptoVizError, MessageError
from cryptoviz.models import CoinSnapshot, decode_snapshot, encode_snapshot

logger = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"
# First codec that this librdkafka build supports wins.
_COMPRESSION_PREFERENCE = ("lz4", "zstd", "snappy", "gzip", "none")
_MAX_CONSUME = 10_000  # messages per consume() call
_MAX_ERROR_HEADER = 1_000  # characters of the reason kept in the DLQ "error" header

# Commit failures that mean "this member lost the partitions": the batch is redelivered elsewhere.
_REBALANCE_CODES = frozenset({
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError.STALE_MEMBER_EPOCH,
    KafkaError.FENCED_MEMBER_EPOCH,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._STATE,
})

# Commit failures that only mean "no coordinator right now" (broker restarting, coordinator moving). The
# batch is stored already: the next successful commit covers its offsets, or it is redelivered.
_UNAVAILABLE_CODES = frozenset({
    KafkaError._WAIT_COORD,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
})

TokenKey = tuple[str, int]  # (topic, partition)


class KafkaBusError(CryptoVizError):
    """Kafka refused or could not complete an operation (topic creation, commit, dead-lettering)."""


def dlq_topic_of(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


def _error_of(exc: KafkaException) -> KafkaError | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else None


# --- topics ---------------------------------------------------------------------------------------


def ensure_topics(bootstrap: str, topic: str, partitions: int, replication_factor: int = 1, *,
                  dlq_partitions: int | None = None, timeout: float = 30.0) -> None:
    """Create ``topic`` and ``topic + ".dlq"`` when missing and wait until every partition has a leader.

    Existing topics are left as they are (a topic with fewer partitions than asked is only logged).
    The DLQ gets ``dlq_partitions`` partitions, by default as many as the topic.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = {topic: partitions, dlq_topic_of(topic): dlq_partitions or partitions}
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise KafkaBusError(f"Kafka at {bootstrap} did not answer: {exc}") from exc
    missing = [NewTopic(name, num_partitions=count, replication_factor=replication_factor)
               for name, count in wanted.items() if name not in existing]
    if missing:
        futures = admin.create_topics(missing, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
                logger.info("created Kafka topic %s (%d partitions, replication %d)",
                            name, wanted[name], replication_factor)
            except KafkaException as exc:
                err = _error_of(exc)
                if err is None or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaBusError(f"cannot create Kafka topic {name!r}: {exc}") from exc
    _wait_for_leaders(admin, wanted, timeout)


def _wait_for_leaders(admin: AdminClient, wanted: Mapping[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    problem = "no metadata yet"
    while True:
        try:
            topics = admin.list_topics(timeout=max(1.0, min(5.0, deadline - time.monotonic()))).topics
        except KafkaException as exc:
            problem = str(exc)
        else:
            problem = ""
            for name, count in wanted.items():
                meta = topics.get(name)
                if meta is None or meta.error is not None:
                    problem = f"topic {name!r} not in metadata ({meta.error if meta else 'missing'})"
                    break
                leaderless = [p for p in meta.partitions.values() if p.leader < 0 or p.error is not None]
                if leaderless:
                    problem = f"topic {name!r}: {len(leaderless)} partition(s) without a leader"
                    break
                if len(meta.partitions) < count:
                    logger.warning("Kafka topic %s has %d partitions, %d wanted (left as is)",
                                   name, len(meta.partitions), count)
            if not problem:
                return
        if time.monotonic() >= deadline:
            raise KafkaBusError(f"Kafka topics not ready after {timeout:.0f}s: {problem}")
        time.sleep(0.2)


# --- publisher ------------------------------------------------------------------------------------


def _make_producer(conf: dict[str, Any]) -> tuple[Producer, str]:
    """A producer with the first compression codec this librdkafka build accepts."""
    if "compression.type" in conf:
        return Producer(conf), str(conf["compression.type"])
    last: KafkaException | None = None
    for codec in _COMPRESSION_PREFERENCE:
        try:
            return Producer({**conf, "compression.type": codec}), codec
        except KafkaException as exc:  # "Unsupported value ... not available at build time"
            last = exc
    raise KafkaBusError(f"cannot create a Kafka producer: {last}")


class KafkaPublisher(Publisher):
    """Idempotent producer: one message per snapshot, key = coin id, value = ``encode_snapshot``.

    ``delivered`` / ``failed`` count the broker's acknowledgements; a failed delivery is logged with
    its key and error. ``publish`` blocks while librdkafka's local queue is full (back-pressure).
    """

    def __init__(self, bootstrap: str, topic: str, *, client_id: str = "cryptoviz-publisher",
                 linger_ms: int = 20, config: Mapping[str, Any] | None = None) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "error_cb": self._on_error,
        }
        conf.update(config or {})
        self.topic = topic
        self.delivered = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._fatal: KafkaError | None = None
        self._closed = False
        self._producer, self.compression = _make_producer(conf)

    # callbacks run inside poll()/flush(), on the calling thread
    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
                return
            self.failed += 1
        key = msg.key()
        logger.error("Kafka delivery to %s failed for key=%s: %s", msg.topic(),
                     key.decode("utf-8", "replace") if key is not None else None, err)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            logger.error("Kafka producer fatal error: %s", err)
        elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            logger.warning("Kafka producer: %s (messages wait in the local queue)", err)
        else:
            logger.warning("Kafka producer: %s", err)

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise KafkaBusError(f"Kafka producer is unusable: {self._fatal}")

    def publish(self, snapshots: Sequence[CoinSnapshot]) -> None:
        if self._closed:
            raise KafkaBusError("publish() on a closed KafkaPublisher")
        self._check_fatal()
        for snapshot in snapshots:
            self._produce(snapshot.coin_id.encode("utf-8"), encode_snapshot(snapshot))
        self._producer.poll(0)

    def _produce(self, key: bytes, value: bytes) -> None:
        waited = False
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
                return
            except BufferError:
                # Local queue full: serve delivery reports until there is room again.
                if not waited:
                    logger.debug("Kafka producer queue full: waiting (back-pressure)")
                    waited = True
                self._producer.poll(0.5)
                self._check_fatal()

    def flush(self, timeout: float = 30.0) -> int:
        remaining = self._producer.flush(timeout)
        self._check_fatal()
        return remaining

    def close(self) -> None:
        if self._closed:
            return
        remaining = self._producer.flush(30.0)
        self._closed = True
        if remaining:
            logger.error("Kafka publisher closed with %d message(s) still undelivered", remaining)


# --- consumer -------------------------------------------------------------------------------------


class KafkaConsumer(Consumer):
    """Group consumer with manual commits; see the module docstring for the guarantees.

    ``Batch.token`` maps ``(topic, partition)`` to the offset to commit: the last offset consumed + 1.
    """

    def __init__(self, bootstrap: str, topic: str, group: str, *, dlq_topic: str | None = None,
                 client_id: str = "cryptoviz-consumer", config: Mapping[str, Any] | None = None) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            # Bounded prefetch: by default librdkafka queues up to 64 MB of fetched messages (and asks for up
            # to 50 MB per fetch), which dominated the writer's memory while draining a backlog. 16 MB is
            # still several full batches ahead of the writer.
            "queued.max.messages.kbytes": 16_384,
            "fetch.max.bytes": 16 * 1024 * 1024,
            "error_cb": self._on_error,
        }
        conf.update(config or {})
        self.topic = topic
        self.group = group
        self.dlq_topic = dlq_topic or dlq_topic_of(topic)
        self.dead_lettered = 0
        self._assigned: set[TokenKey] = set()
        self._fatal: KafkaError | None = None
        self._closed = False
        self._dlq_failed = 0
        self._dlq_error: str = ""
        self._consumer = _RdConsumer(conf)
        self._dlq = Producer({
            "bootstrap.servers": bootstrap,
            "client.id": f"{client_id}-dlq",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        })
        self._consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)

    # --- rebalance callbacks (run inside consume()) ---

    def _on_assign(self, _consumer: _RdConsumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((p.topic, p.partition) for p in partitions)
        logger.info("Kafka group %s: assigned %s", self.group, _names(partitions))

    def _on_revoke(self, _consumer: _RdConsumer, partitions: list[TopicPartition]) -> None:
        # Nothing is committed here: offsets of batches not yet committed are delivered again to the
        # partitions' next owner (at least once; the database writes are idempotent).
        self._assigned.difference_update((p.topic, p.partition) for p in partitions)
        logger.info("Kafka group %s: revoked %s (uncommitted messages will be redelivered)",
                    self.group, _names(partitions))

    def _on_lost(self, _consumer: _RdConsumer, partitions: list[TopicPartition]) -> None:
        self._assigned.difference_update((p.topic, p.partition) for p in partitions)
        logger.warning("Kafka group %s: lost %s (session expired; uncommitted messages will be redelivered)",
                       self.group, _names(partitions))

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            logger.error("Kafka consumer fatal error: %s", err)
        else:
            logger.warning("Kafka consumer: %s", err)

    def _on_dlq_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._dlq_failed += 1
            self._dlq_error = str(err)
            key = msg.key()
            logger.error("Kafka DLQ copy to %s failed for key=%s: %s", msg.topic(),
                         key.decode("utf-8", "replace") if key is not None else None, err)

    # --- Consumer interface ---

    @property
    def assignment(self) -> set[TokenKey]:
        """Partitions this member owns right now."""
        return set(self._assigned)

    def poll_batch(self, max_records: int, timeout: float) -> Batch | None:
        if self._closed:
            return None
        if self._fatal is not None:
            raise KafkaBusError(f"Kafka consumer is unusable: {self._fatal}")
        batch = Batch(token={})
        token: dict[TokenKey, int] = batch.token
        taken = 0
        deadline = time.monotonic() + timeout
        while taken < max_records:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            messages = self._consumer.consume(num_messages=min(max_records - taken, _MAX_CONSUME),
                                              timeout=remaining)
            for msg in messages:
                err = msg.error()
                if err is not None:
                    self._handle_consume_error(err)
                    continue
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                if topic is None or partition is None or offset is None:
                    continue
                try:
                    batch.snapshots.append(decode_snapshot(msg.value()))
                except MessageError as exc:
                    self._dead_letter(msg, topic, partition, offset, str(exc))
                    key = msg.key()
                    batch.dead_letters.append(DeadLetterRecord(
                        topic, partition, offset, key.decode("utf-8", "replace") if key is not None else None,
                        str(exc)))
                token[(topic, partition)] = offset + 1
                taken += 1
        if batch.dead_lettered:
            self._dlq.poll(0)
        return batch

    def _handle_consume_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            self._fatal = err
            raise KafkaBusError(f"Kafka consumer fatal error: {err}")
        logger.warning("Kafka consumer: %s", err)

    def _dead_letter(self, msg: Message, topic: str, partition: int, offset: int, reason: str) -> None:
        key = msg.key()
        logger.error("bus message %s[%d]@%d key=%s rejected, sent to %s: %s", topic, partition, offset,
                     key.decode("utf-8", "replace") if key is not None else None, self.dlq_topic, reason)
        headers: list[tuple[str, str | bytes | None]] = [
            ("error", reason[:_MAX_ERROR_HEADER].encode("utf-8")),
            ("original_topic", topic.encode("utf-8")),
            ("original_partition", str(partition).encode("utf-8")),
            ("original_offset", str(offset).encode("utf-8")),
        ]
        while True:
            try:
                self._dlq.produce(self.dlq_topic, value=msg.value(), key=key, headers=headers,
                                  on_delivery=self._on_dlq_delivery)
                break
            except BufferError:
                self._dlq.poll(0.5)
        self.dead_lettered += 1

    def commit(self, batch: Batch) -> None:
        """Commit exactly ``batch.token`` (synchronously), after the batch's DLQ copies are acknowledged.

        Offsets of partitions that were revoked since the poll are skipped (their new owner will
        redeliver them). Raises ``KafkaBusError`` when the DLQ copies or the commit failed; the batch is
        then not acknowledged and will be delivered again.
        """
        token: Mapping[TokenKey, int] = batch.token or {}
        if batch.dead_lettered or len(self._dlq):
            remaining = self._dlq.flush(30.0)
            if remaining:
                raise KafkaBusError(
                    f"{remaining} dead-letter message(s) not acknowledged; batch not committed")
        if self._dlq_failed:
            failed, self._dlq_failed = self._dlq_failed, 0
            raise KafkaBusError(f"{failed} dead-letter message(s) failed ({self._dlq_error}); "
                                "batch not committed")
        if not token:
            return
        owned = [TopicPartition(t, p, o) for (t, p), o in sorted(token.items()) if (t, p) in self._assigned]
        skipped = len(token) - len(owned)
        if skipped:
            logger.warning("Kafka group %s: %d partition(s) of this batch were revoked; not committing them "
                           "(their new owner redelivers)", self.group, skipped)
        if not owned:
            return
        try:
            results = self._consumer.commit(offsets=owned, asynchronous=False)
        except KafkaException as exc:
            err = _error_of(exc)
            if err is not None and err.code() in _REBALANCE_CODES:
                logger.warning("Kafka group %s: commit refused after a rebalance (%s); the batch will be "
                               "redelivered", self.group, err)
                return
            if err is not None and (err.code() in _UNAVAILABLE_CODES or err.retriable()):
                logger.warning("Kafka group %s: commit not possible now (%s); the next commit covers this "
                               "batch, or it is redelivered", self.group, err)
                return
            raise KafkaBusError(f"Kafka commit failed: {exc}") from exc
        bad = [tp for tp in results if tp.error is not None
               and not (tp.error.code() in _UNAVAILABLE_CODES or tp.error.retriable())]
        if len(bad) < sum(tp.error is not None for tp in results):
            logger.warning("Kafka group %s: commit not possible now for some partitions; the next commit "
                           "covers them, or they are redelivered", self.group)
        if bad:
            raise KafkaBusError("Kafka commit failed for " + ", ".join(
                f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in bad))

    def lag(self) -> int | None:
        """Messages behind the end of the owned partitions, from the last fetch's high watermarks (no
        request to the broker)."""
        try:
            positions = self._consumer.position([TopicPartition(t, p) for t, p in sorted(self._assigned)])
            # A partition that has delivered nothing yet has no position: it starts at its committed
            # offset (one request to the group coordinator), else at its beginning.
            unstarted = [tp for tp in positions if tp.offset < 0]
            starts = {(tp.topic, tp.partition): tp.offset
                      for tp in (self._consumer.committed(unstarted, timeout=2.0) if unstarted else [])}
            behind = 0
            for tp in positions:
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    continue
                start = tp.offset if tp.offset >= 0 else starts.get((tp.topic, tp.partition), -1)
                behind += max(0, high - (start if start >= 0 else max(low, 0)))
            return behind
        except KafkaException:
            return None

    def rewind(self) -> None:
        """Drop what was polled but not committed: seek every owned partition back to its committed offset.

        For a caller that gives up on a batch without stopping (e.g. the database refused it): the next
        ``poll_batch`` then delivers those messages again.
        """
        assigned = self._consumer.assignment()
        if not assigned:
            return
        for tp in self._consumer.committed(assigned, timeout=10.0):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                logger.warning("Kafka rewind of %s[%d] failed: %s", tp.topic, tp.partition, exc)

    def close(self) -> None:
        """Leave the group without committing anything (an uncommitted batch is redelivered)."""
        if self._closed:
            return
        self._closed = True
        remaining = self._dlq.flush(30.0)
        if remaining:
            logger.error("Kafka DLQ producer closed with %d message(s) undelivered", remaining)
        self._consumer.close()


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"


# --- dead letters and lag -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    key: str | None
    error: str
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    timestamp: datetime | None
    value_preview: str


def _header_map(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    raw = msg.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    for name, value in items:
        if isinstance(value, bytes):
            out[name] = value.decode("utf-8", "replace")
        elif value is not None:
            out[name] = str(value)
    return out


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _dead_letter_of(msg: Message, preview: int) -> DeadLetter:
    headers = _header_map(msg)
    ts_type, ts_ms = msg.timestamp()
    key = msg.key()
    value = msg.value()
    return DeadLetter(
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=key.decode("utf-8", "replace") if key is not None else None,
        error=headers.get("error", ""),
        original_topic=headers.get("original_topic"),
        original_partition=_int_or_none(headers.get("original_partition")),
        original_offset=_int_or_none(headers.get("original_offset")),
        timestamp=datetime.fromtimestamp(ts_ms / 1000, UTC) if ts_ms > 0 and ts_type != 0 else None,
        value_preview=value[:preview].decode("utf-8", "replace") if value is not None else "",
    )


def list_dlq(bootstrap: str, dlq_topic: str, limit: int = 100, *, preview: int = 200,
             timeout: float = 10.0) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters of ``dlq_topic`` (read with ``assign()``; nothing is committed)."""
    consumer = _RdConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"cryptoviz-dlq-reader-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    })
    try:
        meta = consumer.list_topics(dlq_topic, timeout=timeout).topics.get(dlq_topic)
        if meta is None or meta.error is not None:
            return []
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(dlq_topic, partition), timeout=timeout)
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(dlq_topic, partition, low))
        if not starts:
            return []
        consumer.assign(starts)
        letters: list[DeadLetter] = []
        per_partition: dict[int, int] = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=min(1.0, deadline - time.monotonic())):
                if msg.error() is not None:
                    continue
                partition, offset = msg.partition(), msg.offset()
                if partition is None or offset is None or partition not in ends:
                    continue
                if per_partition[partition] < limit:
                    letters.append(_dead_letter_of(msg, preview))
                    per_partition[partition] += 1
                if offset + 1 >= ends[partition] or per_partition[partition] >= limit:
                    del ends[partition]
        letters.sort(key=lambda d: (d.timestamp or datetime.min.replace(tzinfo=UTC), d.partition, d.offset))
        return letters[:limit]
    finally:
        consumer.close()


def consumer_lag(bootstrap: str, topic: str, group: str, *, timeout: float = 10.0) -> dict[int, int]:
    """Messages not yet committed by ``group``, per partition of ``topic``."""
    consumer = _RdConsumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise KafkaBusError(f"unknown Kafka topic {topic!r}")
        partitions = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        lag: dict[int, int] = {}
        for tp in consumer.committed(partitions, timeout=timeout):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout)
            done = tp.offset if tp.offset not in (OFFSET_INVALID,) and tp.offset >= 0 else low
            lag[tp.partition] = max(0, high - done)
        return lag
    finally:
        consumer.close()
