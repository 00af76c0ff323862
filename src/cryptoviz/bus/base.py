"""Publisher and consumer interfaces that the pipeline talks to."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptoviz.models import CoinSnapshot


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A message the consumer could not decode or validate, and where it came from."""

    topic: str
    partition: int
    offset: int
    key: str | None
    error: str


@dataclass(slots=True)
class Batch:
    """Snapshots decoded from one poll, plus what ``commit`` needs (offsets for Kafka)."""

    snapshots: list[CoinSnapshot] = field(default_factory=list)
    token: Any = None
    dead_letters: list[DeadLetterRecord] = field(default_factory=list)  # went to the DLQ instead

    @property
    def dead_lettered(self) -> int:
        return len(self.dead_letters)


class Publisher(ABC):
    @abstractmethod
    def publish(self, snapshots: Sequence[CoinSnapshot]) -> None:
        """Send one message per snapshot, keyed by coin id. May block (back-pressure)."""

    @abstractmethod
    def flush(self, timeout: float = 30.0) -> int:
        """Wait for outstanding messages; return how many are still undelivered."""

    def close(self) -> None:
        self.flush()


class Consumer(ABC):
    @abstractmethod
    def poll_batch(self, max_records: int, timeout: float) -> Batch | None:
        """Up to ``max_records`` snapshots gathered for at most ``timeout`` seconds.

        ``None`` means the bus is closed and drained: the consumer loop can stop.
        """

    @abstractmethod
    def commit(self, batch: Batch) -> None:
        """Acknowledge a batch once the database transaction holding it has committed."""

    def lag(self) -> int | None:
        """Messages on the bus this consumer has not taken yet (``None``: not known)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class NullPublisher(Publisher):
    """Publishes nowhere: for a collector whose output is not wanted (``cryptoviz record``)."""

    def publish(self, snapshots: Sequence[CoinSnapshot]) -> None:
        """Drop the snapshots."""

    def flush(self, timeout: float = 30.0) -> int:
        return 0
