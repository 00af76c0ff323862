"""The store on a real PostgreSQL: migrations both ways, set-based idempotent writes, the reader role."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from cryptoviz.store.tables import metadata
from tests.factories import snapshot

pytestmark = pytest.mark.integration


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_migrations_upgrade_downgrade_upgrade_on_postgres(pg_database: str) -> None:
    migrate.upgrade(pg_database)
    assert migrate.current(pg_database) == migrate.head_revision()
    engine = make_engine(pg_database)
    assert {t.name for t in metadata.sorted_tables} <= set(sa.inspect(engine).get_table_names())
    migrate.downgrade(pg_database, "base")
    assert migrate.current(pg_database) is None
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    migrate.upgrade(pg_database)
    assert migrate.current(pg_database) == migrate.head_revision()
    engine.dispose()


def test_batches_are_idempotent_and_keep_the_latest_current_value(pg_database: str,
                                                                   request: pytest.FixtureRequest) -> None:
    migrate.upgrade(pg_database)
    engine = make_engine(pg_database)
    request.addfinalizer(engine.dispose)
    writer = open_sink(engine)
    batch = [snapshot(f"coin-{i}", price=float(i + 1), minutes=m) for i in range(300) for m in range(3)]
    result = writer.write(batch)
    assert result.history_inserted == 900
    assert writer.write(batch).history_inserted == 0  # redelivery
    writer.write([snapshot("coin-0", price=999.0, minutes=-10)])  # late, older
    assert _count(engine, "currency_data_history") == 901
    assert _count(engine, "currency_data") == 300
    assert _count(engine, "source_quotes") == 2 * 901
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT price FROM currency_data WHERE currency_id = 'coin-0'")).scalar_one() == 1.0
        tiny = conn.execute(sa.text("SELECT 1e-12::double precision")).scalar_one()
    assert tiny == 1e-12


def test_sql_in_names_is_stored_verbatim(pg_database: str) -> None:
    migrate.upgrade(pg_database)
    engine = make_engine(pg_database)
    evil = "'); DROP TABLE currencies;--"
    open_sink(engine).write([snapshot("evil", name=evil)])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM currencies")).scalar_one() == evil
    engine.dispose()


def test_reader_role_can_select_but_not_write(pg_database: str) -> None:
    migrate.upgrade(pg_database)
    engine = make_engine(pg_database)
    open_sink(engine).write([snapshot("bitcoin")])
    engine.dispose()
    url = pg_database.replace("postgresql+psycopg://", "postgresql://")
    reader = url.replace("cryptoviz:cryptoviz@", "cryptoviz_reader:cryptoviz_reader@")
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT count(*) FROM currency_data").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM currency_data")
