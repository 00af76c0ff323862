"""Where the writer puts batches: the sink protocol, its implementations, and the dead-letter table.

    Sink.write(snapshots) -> WriteResult    one batch, all or nothing (raises StoreError, rolled back)
    Sink.close()                            release connections
    DeadLetterSink.record(letters, at)      bus messages that could not be decoded or validated

:func:`open_sink` picks the implementation for a database, once: PostgreSQL gets
:class:`~cryptoviz.store.pg_copy.PostgresCopySink` (binary COPY into staging tables, one set-based
statement per table), any other database (SQLite) :class:`~cryptoviz.store.writer.SqlSink` (multi-row
``INSERT ... ON CONFLICT``). Both write the same rows. :class:`MemorySink` keeps batches in a list.

Every sink is idempotent on the tables' keys: a redelivered batch updates nothing newer and inserts no
second history row, so at-least-once delivery gives exactly-once effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa

from cryptoviz.bus.base import DeadLetterRecord
from cryptoviz.errors import StoreError
from cryptoviz.models import CoinSnapshot
from cryptoviz.store.engine import insert_for
from cryptoviz.store.tables import dead_letters
from cryptoviz.timeutil import utc


@dataclass(frozen=True, slots=True)
class WriteResult:
    snapshots: int
    history_inserted: int
    source_quotes_inserted: int


class Sink(Protocol):
    def write(self, snapshots: Sequence[CoinSnapshot]) -> WriteResult:
        """Store one batch in one transaction; raise ``StoreError`` (nothing stored) when refused."""
        ...

    def close(self) -> None:
        """Release what the sink holds (connections)."""
        ...


class DeadLetterSink(Protocol):
    def record(self, letters: Sequence[DeadLetterRecord], at: datetime) -> None:
        """Keep messages that went to the dead-letter queue; raise ``StoreError`` when refused."""
        ...


class MemorySink:
    """Keeps every batch in :attr:`batches`; ``fail_next`` makes the next writes raise (for tests)."""

    def __init__(self) -> None:
        self.batches: list[list[CoinSnapshot]] = []
        self.dead_letters: list[DeadLetterRecord] = []
        self.fail_next = 0
        self.closed = False

    @property
    def snapshots(self) -> list[CoinSnapshot]:
        return [s for batch in self.batches for s in batch]

    def write(self, snapshots: Sequence[CoinSnapshot]) -> WriteResult:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise StoreError("memory sink: write refused (fail_next)")
        self.batches.append(list(snapshots))
        return WriteResult(len(snapshots), len(snapshots), sum(len(s.sources) for s in snapshots))

    def record(self, letters: Sequence[DeadLetterRecord], at: datetime) -> None:
        self.dead_letters.extend(letters)

    def close(self) -> None:
        self.closed = True


class DeadLetterTable:
    """Dead letters in the ``dead_letters`` table, queryable by dashboards; a redelivered one is kept once."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def record(self, letters: Sequence[DeadLetterRecord], at: datetime) -> None:
        if not letters:
            return
        rows = [{"dead_at": utc(at), "topic": d.topic[:255], "partition": d.partition, "offset": d.offset,
                 "key": d.key, "error": d.error[:4000]} for d in letters]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert_for(dead_letters, conn.dialect.name).on_conflict_do_nothing().values(rows))
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"recording {len(rows)} dead letter(s) failed: {exc.orig}") from exc


def open_sink(engine: sa.Engine) -> Sink:
    """The sink for ``engine``'s database (the one place that looks at the dialect)."""
    if engine.dialect.name == "postgresql":
        from cryptoviz.store.pg_copy import PostgresCopySink

        return PostgresCopySink(engine)
    from cryptoviz.store.writer import SqlSink

    return SqlSink(engine)
