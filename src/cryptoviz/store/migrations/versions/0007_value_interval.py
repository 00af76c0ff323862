"""a value's interval, verification and age: price_low, price_high, unverified, price_at; candles' band

``currency_data`` and ``currency_data_history`` get the nominal 95 % interval around the price
(``price_low``, ``price_high``), ``unverified`` (two sources disagree beyond tolerance and nothing settles
which is right) and ``price_at`` (when the newest price used was quoted at its source). The candle tiers get
the band of their rows (lowest ``price_low``, highest ``price_high``) and ``unverified_n``.

Rows stored before hold no interval (NULL) and count as verified, which is what their candles already say:
the candles need no rebuild. On PostgreSQL the columns are added to the partitioned parent, which adds them
to every partition (a catalogue change: no row is rewritten).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

VALUE_TABLES = ("currency_data", "currency_data_history")
CANDLE_TABLES = ("candles_5m", "candles_1h", "candles_1d")


def _value_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("price_low", sa.Double(), nullable=True,
                  comment="low end of the nominal 95 % interval around price (NULL: none)"),
        sa.Column("price_high", sa.Double(), nullable=True,
                  comment="high end of the nominal 95 % interval around price (NULL: none)"),
        sa.Column("unverified", sa.Boolean(), server_default=sa.false(), nullable=False,
                  comment="two sources disagree beyond tolerance and nothing settles which is right"),
        sa.Column("price_at", sa.DateTime(timezone=True), nullable=True,
                  comment="when the newest price used was quoted at its source (the value's age)"),
    ]


def _candle_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("price_low", sa.Double(), nullable=True,
                  comment="lowest low end of the history rows' intervals (NULL: none)"),
        sa.Column("price_high", sa.Double(), nullable=True,
                  comment="highest high end of the history rows' intervals (NULL: none)"),
        sa.Column("unverified_n", sa.Integer(), server_default="0", nullable=False,
                  comment="history rows in the bucket whose value was unverified"),
    ]


def upgrade() -> None:
    # Plain ADD COLUMN on both dialects (SQLite adds a column with a constant default in place).
    for table in VALUE_TABLES:
        for column in _value_columns():
            op.add_column(table, column)
    for table in CANDLE_TABLES:
        for column in _candle_columns():
            op.add_column(table, column)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # DROP COLUMN on the partitioned parent drops it from every partition.
        for table in (*VALUE_TABLES, *CANDLE_TABLES):
            names = [c.name for c in (_candle_columns() if table in CANDLE_TABLES else _value_columns())]
            op.execute(f"ALTER TABLE {table} " + ", ".join(f"DROP COLUMN {name}" for name in names))
        return
    # SQLite: batch mode copies each table without the columns (keys, indexes and foreign keys kept).
    for table in (*VALUE_TABLES, *CANDLE_TABLES):
        names = [c.name for c in (_candle_columns() if table in CANDLE_TABLES else _value_columns())]
        with op.batch_alter_table(table) as batch:
            for name in names:
                batch.drop_column(name)
