"""currencies.source_ids: each source's own id of the coin, so a coin keeps its id whichever source names it

The coin id comes from CoinGecko when CoinGecko reports the coin. When it misses a cycle, the other
sources' ids (CoinMarketCap's, CoinPaprika's, ...) recorded here find the coin's usual id again. Existing
rows start with the ids of the columns that already hold them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    kind = postgresql.JSONB() if postgres else sa.JSON()
    with op.batch_alter_table("currencies") as batch:
        batch.add_column(sa.Column("source_ids", kind, nullable=True,
                                   comment="source name -> that source's id of the coin"))
    if postgres:
        op.execute("""
            UPDATE currencies SET source_ids = jsonb_strip_nulls(
                jsonb_build_object('coingecko', coingecko_id, 'coinmarketcap', coinmarketcap_id))
        """)
    else:
        op.execute("""
            UPDATE currencies SET source_ids = json_patch('{}', json_object(
                'coingecko', coingecko_id, 'coinmarketcap', coinmarketcap_id))
        """)


def downgrade() -> None:
    with op.batch_alter_table("currencies") as batch:
        batch.drop_column("source_ids")
