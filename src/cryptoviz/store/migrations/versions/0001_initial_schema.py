"""initial schema: currencies, current values, history, source quotes, runs, rejections

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "currencies",
        sa.Column(
            "id", sa.String(length=200), nullable=False, comment="canonical coin id (CoinGecko id, else slug)"
        ),
        sa.Column(
            "symbol", sa.String(length=64), nullable=False, comment="not unique: several coins share a symbol"
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=True),
        sa.Column("coingecko_id", sa.String(length=200), nullable=True),
        sa.Column("coinmarketcap_id", sa.String(length=64), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_currencies")),
    )
    op.create_index("ix_currencies_symbol", "currencies", ["symbol"])
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False, comment="ok, partial, failed, skipped"),
        sa.Column("fetched", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rejected", sa.Integer(), server_default="0", nullable=False),
        sa.Column("published", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "sources",
            sa.JSON(),
            nullable=False,
            comment="per source: fetched, rejected, used, error, ms, breaker",
        ),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_runs")),
    )
    op.create_index("ix_pipeline_runs_started_at", "pipeline_runs", ["started_at"])
    op.create_table(
        "currency_data",
        sa.Column("currency_id", sa.String(length=200), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("market_cap", sa.Double(), nullable=True),
        sa.Column("volume_24h", sa.Double(), nullable=True),
        sa.Column("change_1h", sa.Double(), nullable=True),
        sa.Column("change_24h", sa.Double(), nullable=True),
        sa.Column("change_7d", sa.Double(), nullable=True),
        sa.Column("circulating_supply", sa.Double(), nullable=True),
        sa.Column("total_supply", sa.Double(), nullable=True),
        sa.Column("max_supply", sa.Double(), nullable=True),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("n_sources", sa.SmallInteger(), nullable=False),
        sa.Column("sources", sa.String(length=200), nullable=False, comment="comma list of the sources used"),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["currency_id"],
            ["currencies.id"],
            name=op.f("fk_currency_data_currency_id_currencies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("currency_id", name=op.f("pk_currency_data")),
    )
    op.create_table(
        "currency_data_history",
        sa.Column("currency_id", sa.String(length=200), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("market_cap", sa.Double(), nullable=True),
        sa.Column("volume_24h", sa.Double(), nullable=True),
        sa.Column("change_1h", sa.Double(), nullable=True),
        sa.Column("change_24h", sa.Double(), nullable=True),
        sa.Column("change_7d", sa.Double(), nullable=True),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("n_sources", sa.SmallInteger(), nullable=False),
        sa.Column("sources", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(
            ["currency_id"],
            ["currencies.id"],
            name=op.f("fk_currency_data_history_currency_id_currencies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("currency_id", "observed_at", name=op.f("pk_currency_data_history")),
    )
    op.create_index("ix_currency_data_history_observed_at", "currency_data_history", ["observed_at"])
    op.create_table(
        "quote_rejections",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("coin", sa.String(length=200), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pipeline_runs.id"],
            name=op.f("fk_quote_rejections_run_id_pipeline_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quote_rejections")),
    )
    op.create_index("ix_quote_rejections_rejected_at", "quote_rejections", ["rejected_at"])
    op.create_table(
        "source_quotes",
        sa.Column("currency_id", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("market_cap", sa.Double(), nullable=True),
        sa.Column("volume_24h", sa.Double(), nullable=True),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("dropped_reason", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["currency_id"],
            ["currencies.id"],
            name=op.f("fk_source_quotes_currency_id_currencies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("currency_id", "source", "observed_at", name=op.f("pk_source_quotes")),
    )
    op.create_index("ix_source_quotes_observed_at", "source_quotes", ["observed_at"])

    # Dashboards read as cryptoviz_reader (SELECT only) when the role exists.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cryptoviz_reader') THEN "
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO cryptoviz_reader; END IF; END $$"
        )


def downgrade() -> None:
    op.drop_index("ix_source_quotes_observed_at", table_name="source_quotes")
    op.drop_table("source_quotes")
    op.drop_index("ix_quote_rejections_rejected_at", table_name="quote_rejections")
    op.drop_table("quote_rejections")
    op.drop_index("ix_currency_data_history_observed_at", table_name="currency_data_history")
    op.drop_table("currency_data_history")
    op.drop_table("currency_data")
    op.drop_index("ix_pipeline_runs_started_at", table_name="pipeline_runs")
    op.drop_table("pipeline_runs")
    op.drop_index("ix_currencies_symbol", table_name="currencies")
    op.drop_table("currencies")
