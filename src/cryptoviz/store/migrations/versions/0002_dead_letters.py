"""dead_letters: bus messages the writer could not decode or validate (also kept in the DLQ topic)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_position"),
    )
    op.create_index("ix_dead_letters_dead_at", "dead_letters", ["dead_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cryptoviz_reader') THEN "
            "GRANT SELECT ON dead_letters TO cryptoviz_reader; END IF; END $$"
        )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_dead_at", table_name="dead_letters")
    op.drop_table("dead_letters")
