"""Every migration, one at a time, down to base and back up, with data in the tables, on PostgreSQL (the
walk itself, and what it checks, is in tests/unit/test_migration_steps.py)."""

from __future__ import annotations

import pytest

from tests.unit.test_migration_steps import walk_down_and_up

pytestmark = pytest.mark.integration


def test_every_migration_steps_down_to_base_and_up_again_with_data_on_postgres(pg_database: str) -> None:
    walked = walk_down_and_up(pg_database)
    assert walked[0] == "0001"
