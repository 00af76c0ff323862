"""write path: no foreign key on source_quotes; room for HOT updates in currencies and currency_data

``source_quotes`` gets a row per coin, source and cycle and is only ever inserted, in the transaction
that stores the coin itself; its per-row foreign-key check cost as much as the insert. The two tables
updated once per coin per batch keep half of each page free, so those updates stay heap-only (no index
entry per update). Existing pages take the new fill factor as they are rewritten.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_FK = "fk_source_quotes_currency_id_currencies"
_UPDATED_IN_PLACE = ("currencies", "currency_data")


def upgrade() -> None:
    # SQLite cannot drop a constraint in place: batch mode copies the table.
    with op.batch_alter_table("source_quotes") as batch:
        batch.drop_constraint(_FK, type_="foreignkey")
    if op.get_bind().dialect.name == "postgresql":
        for table in _UPDATED_IN_PLACE:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _UPDATED_IN_PLACE:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    # Rows whose coin is gone would block the constraint: they could not have been written with it.
    op.execute("DELETE FROM source_quotes WHERE currency_id NOT IN (SELECT id FROM currencies)")
    with op.batch_alter_table("source_quotes") as batch:
        batch.create_foreign_key(_FK, "currencies", ["currency_id"], ["id"], ondelete="CASCADE")
