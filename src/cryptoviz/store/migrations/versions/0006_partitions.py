"""daily partitions of currency_data_history and source_quotes (PostgreSQL)

The raw tables become range-partitioned by ``observed_at``, one partition a UTC day, converted in place:
each table is renamed aside, its partitioned twin created with the same columns, keys, index and foreign
key, a partition made for every day that holds rows (and the days ahead, and a default partition), the
rows copied over, and the old table dropped. Retention then drops whole days. SQLite keeps plain tables.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# table -> (primary key columns, foreign key to currencies?)
TABLES = {
    "currency_data_history": (("currency_id", "observed_at"), True),
    "source_quotes": (("currency_id", "source", "observed_at"), False),
}


def _days(conn: sa.Connection, table: str) -> list[date]:
    rows = conn.execute(sa.text(
        f"SELECT DISTINCT (observed_at AT TIME ZONE 'UTC')::date FROM {table}_unpartitioned")).all()
    return [r[0] for r in rows]


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    from cryptoviz.store.partitions import ahead, create_default, ensure_days

    days: set[date] = set(ahead(datetime.now(UTC)))
    for table, (key, foreign) in TABLES.items():
        old = f"{table}_unpartitioned"
        op.execute(f"ALTER TABLE {table} RENAME TO {old}")
        op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
        op.execute(f"ALTER INDEX ix_{table}_observed_at RENAME TO ix_{old}_observed_at")
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING COMMENTS) "
                   "PARTITION BY RANGE (observed_at)")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({', '.join(key)})")
        op.execute(f"CREATE INDEX ix_{table}_observed_at ON {table} (observed_at)")
        if foreign:
            op.execute(f"ALTER TABLE {old} DROP CONSTRAINT fk_{table}_currency_id_currencies")
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_currency_id_currencies "
                       "FOREIGN KEY (currency_id) REFERENCES currencies (id) ON DELETE CASCADE")
        create_default(conn, table)
        days.update(_days(conn, table))
    ensure_days(conn, sorted(days))
    for table in TABLES:
        op.execute(f"INSERT INTO {table} SELECT * FROM {table}_unpartitioned")
        op.execute(f"DROP TABLE {table}_unpartitioned")
    _grant_reader()


def _grant_reader() -> None:
    """Dashboards read as cryptoviz_reader (SELECT only) when the role exists."""
    op.execute("DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cryptoviz_reader') THEN "
               "GRANT SELECT ON currency_data_history, source_quotes TO cryptoviz_reader; END IF; END $$")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for table, (key, foreign) in TABLES.items():
        old = f"{table}_partitioned"
        op.execute(f"ALTER TABLE {table} RENAME TO {old}")
        op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
        op.execute(f"ALTER INDEX ix_{table}_observed_at RENAME TO ix_{old}_observed_at")
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING COMMENTS)")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({', '.join(key)})")
        op.execute(f"CREATE INDEX ix_{table}_observed_at ON {table} (observed_at)")
        op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
        if foreign:
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_currency_id_currencies "
                       "FOREIGN KEY (currency_id) REFERENCES currencies (id) ON DELETE CASCADE")
        op.execute(f"DROP TABLE {old} CASCADE")  # its day and default partitions go with it
    _grant_reader()
