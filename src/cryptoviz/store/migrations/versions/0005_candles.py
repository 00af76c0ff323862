"""candles: OHLC tiers of 5 minutes, 1 hour and 1 day, kept up to date as batches are stored; write on change

A candle holds the open/high/low/close of the consensus price of its history rows, the market cap, 24 h
volume and each source's own price of its last one, how many rows (``n``) and backfilled points
(``n_backfill``) it sums, its lowest confidence and the sources behind it. Existing history is folded into
the tiers here, so charts of a filled database keep their past. ``pipeline_runs.recorded`` counts the
snapshots of a cycle that made a history row (written on change, or every heartbeat).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIERS = (("candles_5m", "5-minute", 300), ("candles_1h", "1-hour", 3600), ("candles_1d", "1-day", 86_400))


def upgrade() -> None:
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.add_column(sa.Column("recorded", sa.Integer(), server_default="0", nullable=False,
                                   comment="of the published, those that made a history row (write on change)"))
    json = postgresql.JSONB() if op.get_bind().dialect.name == "postgresql" else sa.JSON()
    for name, width, _seconds in TIERS:
        op.create_table(
            name,
            sa.Column("currency_id", sa.String(length=200), nullable=False),
            sa.Column("bucket", sa.DateTime(timezone=True), nullable=False,
                      comment=f"start of the {width} bucket (UTC, epoch-aligned)"),
            sa.Column("open", sa.Double(), nullable=False),
            sa.Column("high", sa.Double(), nullable=False),
            sa.Column("low", sa.Double(), nullable=False),
            sa.Column("close", sa.Double(), nullable=False),
            sa.Column("open_at", sa.DateTime(timezone=True), nullable=False, comment="time of the first observation"),
            sa.Column("close_at", sa.DateTime(timezone=True), nullable=False, comment="time of the last observation"),
            sa.Column("market_cap", sa.Double(), nullable=True, comment="of the last observation"),
            sa.Column("volume_24h", sa.Double(), nullable=True, comment="of the last observation"),
            sa.Column("n", sa.Integer(), nullable=False, comment="history rows in the bucket"),
            sa.Column("n_backfill", sa.Integer(), server_default="0", nullable=False,
                      comment="points a backfill added (0: live data only)"),
            sa.Column("confidence_min", sa.Double(), nullable=True, comment="lowest confidence of the history rows"),
            sa.Column("sources", sa.String(length=200), nullable=False, comment="comma list of the sources behind it"),
            sa.Column("source_close", json, nullable=True, comment="each source's own price at the last observation"),
            sa.PrimaryKeyConstraint("currency_id", "bucket", name=op.f(f"pk_{name}")),
            postgresql_with={"fillfactor": 50},  # updated by every batch reaching the bucket: HOT updates
        )
        op.create_index(f"ix_{name}_bucket", name, ["bucket"])
    from cryptoviz.store.candles import rebuild_from_history

    rebuild_from_history(op.get_bind(), legacy=True)  # the schema of this revision: no interval yet

    # Dashboards read as cryptoviz_reader (SELECT only) when the role exists.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cryptoviz_reader') THEN "
            "GRANT SELECT ON candles_5m, candles_1h, candles_1d TO cryptoviz_reader; END IF; END $$"
        )


def downgrade() -> None:
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.drop_column("recorded")
    for name, _width, _seconds in reversed(TIERS):
        op.drop_index(f"ix_{name}_bucket", table_name=name)
        op.drop_table(name)
