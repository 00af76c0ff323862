"""Daily partitions of the raw tables on PostgreSQL (``currency_data_history``, ``source_quotes``).

Both are range-partitioned by ``observed_at``, one partition a UTC day (``<table>_pYYYYMMDD``), plus a
default partition that catches a row no day partition holds yet (a clock far ahead, a replay of an old
recording), so a write never fails for want of a partition. CryptoViz creates the partitions itself,
ahead of time (:func:`ensure_days`, at start-up and hourly), and retention drops whole partitions
(:mod:`cryptoviz.store.retention`). No extension is needed.

Every function here takes a connection in a transaction of its own, never the writer's: creating or
dropping a partition locks the parent table for a moment.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

logger = logging.getLogger(__name__)

PARTITIONED = ("currency_data_history", "source_quotes")
DAYS_AHEAD = 7
# Serialises partition changes of concurrent processes (several `cryptoviz consume`).
ADVISORY_LOCK = 427_092
_NAME = re.compile(r"_p(\d{8})$")


@dataclass(frozen=True, slots=True)
class Partition:
    table: str
    name: str
    start: datetime | None  # None: the default partition
    end: datetime | None


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def _bound(day: date) -> str:
    return f"{day:%Y-%m-%d} 00:00:00+00"


def is_partitioned(conn: sa.Connection, table: str) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(sa.text("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE c.relname = :t AND n.nspname = current_schema()"), {"t": table}).scalar()
    return found == "p"


def partitions(conn: sa.Connection, table: str) -> list[Partition]:
    """The day partitions of ``table`` in time order, then its default partition (if any)."""
    rows = conn.execute(sa.text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = :t ORDER BY c.relname"), {"t": table}).all()
    days: list[Partition] = []
    default: list[Partition] = []
    for name, bound in rows:
        match = _NAME.search(name)
        if bound == "DEFAULT" or match is None:
            default.append(Partition(table, name, None, None))
            continue
        start = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC)
        days.append(Partition(table, name, start, start + timedelta(days=1)))
    return sorted(days, key=lambda p: p.start or datetime.min.replace(tzinfo=UTC)) + default


def lock(conn: sa.Connection) -> None:
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK})
    # Waiting long for the parent's lock would stall the writer queued behind us: give up, retry later.
    conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))


def create_default(conn: sa.Connection, table: str) -> None:
    conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {default_name(table)} PARTITION OF {table} DEFAULT"))


def ensure_days(conn: sa.Connection, days: Iterable[date]) -> list[str]:
    """Create the missing day partitions of both tables for ``days``; returns the names created.

    Rows of such a day already caught by the default partition are moved into the new partition.
    """
    created: list[str] = []
    wanted = sorted(set(days))
    for table in PARTITIONED:
        have = {p.name for p in partitions(conn, table)}
        for day in wanted:
            name = partition_name(table, day)
            if name in have:
                continue
            _create_day(conn, table, day)
            created.append(name)
    if created:
        logger.info("created partitions %s", ", ".join(created))
    return created


def _create_day(conn: sa.Connection, table: str, day: date) -> None:
    name, default = partition_name(table, day), default_name(table)
    lo, hi = _bound(day), _bound(day + timedelta(days=1))
    in_default = f"observed_at >= '{lo}' AND observed_at < '{hi}'"
    stray = conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {in_default})")).scalar() \
        if _exists(conn, default) else False
    if not stray:
        conn.execute(sa.text(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{lo}') TO ('{hi}')"))
        return
    # The default partition holds rows of that day: a new partition cannot be attached over them. Build it
    # apart, move the rows into it, then attach it.
    conn.execute(sa.text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    conn.execute(sa.text(f"WITH moved AS (DELETE FROM {default} WHERE {in_default} RETURNING *) "
                         f"INSERT INTO {name} SELECT * FROM moved"))
    conn.execute(sa.text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"))


def _exists(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar() is True


def ahead(now: datetime, days_ahead: int = DAYS_AHEAD) -> list[date]:
    """Yesterday (a late row), today and the next ``days_ahead`` days."""
    today = now.astimezone(UTC).date()
    return [today + timedelta(days=d) for d in range(-1, days_ahead + 1)]


def expired(conn: sa.Connection, table: str, cutoff: datetime) -> list[Partition]:
    """Day partitions of ``table`` whose every row is older than ``cutoff``."""
    return [p for p in partitions(conn, table) if p.end is not None and p.end <= cutoff]


def drop(conn: sa.Connection, partition: Partition) -> None:
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {partition.name}"))
