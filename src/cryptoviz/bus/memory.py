"""In-process bus: a bounded queue between the collector thread and the writer thread.

Messages are encoded exactly as on Kafka (JSON with ``schema_version``) so both paths share one codec;
a full queue blocks the publisher (back-pressure) instead of growing memory.

Each message gets a running number, as Kafka gives an offset, and the bus keeps the acknowledged ranges
(the most recent ones) so that the delivery order of a writer can be checked: which batches it
acknowledged, and in which order. One consumer reads a bus (the embedded writer).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from cryptoviz.bus.base import Batch, Consumer, DeadLetterRecord, Publisher
from cryptoviz.errors import MessageError
from cryptoviz.models import CoinSnapshot, decode_snapshot, encode_snapshot

logger = logging.getLogger(__name__)

_CLOSED = object()
_KEPT_COMMITS = 10_000  # acknowledged ranges remembered; older ones are forgotten (a long run stays bounded)


@dataclass(frozen=True, slots=True)
class Commit:
    """One acknowledged batch: the running numbers of its first and last message (both included)."""

    first: int
    last: int


class MemoryBus:
    def __init__(self, maxsize: int = 10_000) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        self._closed = threading.Event()
        self.dead_letters: list[tuple[bytes, str]] = []
        self._commit_lock = threading.Lock()
        self.commits: deque[Commit] = deque(maxlen=_KEPT_COMMITS)
        self.committed = 0  # running number of the last acknowledged message (0: none yet)

    def publisher(self) -> MemoryPublisher:
        return MemoryPublisher(self)

    def consumer(self) -> MemoryConsumer:
        return MemoryConsumer(self)

    def put_raw(self, key: str, value: bytes) -> None:
        self._queue.put((key, value))

    def close(self) -> None:
        """No more messages: the consumer drains what is queued, then sees ``None``."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(_CLOSED)

    def qsize(self) -> int:
        return self._queue.qsize()

    def acknowledge(self, first: int, last: int) -> None:
        """Record that messages ``first`` to ``last`` were acknowledged; ranges must come in order.

        An acknowledgement out of order (a gap, or a range already acknowledged) is a bug of the consumer
        loop: it would, on Kafka, skip messages or move the committed offset back. It raises.
        """
        with self._commit_lock:
            if first != self.committed + 1 or last < first:
                raise RuntimeError(f"in-process bus: acknowledgement of messages {first}..{last} out of order; "
                                   f"the last acknowledged message is {self.committed}")
            self.commits.append(Commit(first, last))
            self.committed = last


class MemoryPublisher(Publisher):
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    def publish(self, snapshots: Sequence[CoinSnapshot]) -> None:
        for snapshot in snapshots:
            self._bus.put_raw(snapshot.coin_id, encode_snapshot(snapshot))

    def flush(self, timeout: float = 30.0) -> int:
        return 0  # put() already handed every message to the queue

    def close(self) -> None:
        self._bus.close()


class MemoryConsumer(Consumer):
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._drained = False
        self._position = 0  # a running message number stands in for Kafka's offset

    def poll_batch(self, max_records: int, timeout: float) -> Batch | None:
        if self._drained:
            return None
        batch = Batch()
        first = self._position + 1
        deadline = time.monotonic() + timeout
        while len(batch.snapshots) + batch.dead_lettered < max_records:
            remaining = deadline - time.monotonic()
            try:
                item = self._bus._queue.get(timeout=max(remaining, 0.0)) if remaining > 0 else \
                    self._bus._queue.get_nowait()
            except queue.Empty:
                break
            if item is _CLOSED:
                self._drained = True
                break
            assert isinstance(item, tuple)
            key: str = item[0]
            value: bytes = item[1]
            self._position += 1
            try:
                batch.snapshots.append(decode_snapshot(value))
            except MessageError as exc:
                logger.error("bus message key=%s rejected: %s", key, exc)
                self._bus.dead_letters.append((value, str(exc)))
                batch.dead_letters.append(DeadLetterRecord("in-process", 0, self._position, key, str(exc)))
        if self._drained and not batch.snapshots and not batch.dead_lettered:
            return None
        if self._position >= first:
            batch.token = (first, self._position)
        return batch

    def lag(self) -> int:
        return self._bus._queue.qsize()

    def commit(self, batch: Batch) -> None:
        """Record the batch's messages as acknowledged (nothing is redelivered in process: no offsets to keep)."""
        if batch.token is not None:
            first, last = batch.token
            self._bus.acknowledge(first, last)
