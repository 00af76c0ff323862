"""Every migration, one at a time, down to base and back up, with data in the tables (SQLite here; the same
walk runs on PostgreSQL in tests/integration/test_migration_steps_pg.py).

The revisions are read from Alembic's script directory, so a new migration is walked without editing this
file. After each step down, every table still there holds the same rows over the columns it still has (a
downgrade drops what its revision added, never other data); the walk back up must rebuild the very schema
the first upgrade made, which the writer then fills again.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from cryptoviz.bus.base import DeadLetterRecord
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.runs import RunReport, SourceReport, record_run
from cryptoviz.store.sink import DeadLetterTable, open_sink
from tests.factories import T0, snapshot

Rows = dict[str, tuple[list[str], Counter[tuple[Any, ...]]]]  # table -> (columns, rows)


def revisions(url: str) -> list[str]:
    """Base to head, as Alembic's script directory lists them."""
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def fill(engine: sa.Engine) -> None:
    """Rows in every table the writer, the dead-letter sink and the run log write."""
    coins = [("bitcoin", 91_000.5), ("ethereum", 3_000.25), ("dust", 1e-9)]
    open_sink(engine).write([snapshot(c, price=p * (1 + m / 100), minutes=m, symbol=c[:3].upper())
                             for m in range(0, 12, 3) for c, p in coins])
    DeadLetterTable(engine).record([DeadLetterRecord("crypto_viz", 2, 41, "bitcoin", "invalid JSON")], T0)
    run = RunReport(started_at=T0, finished_at=datetime(2026, 11, 27, 12, 0, 3, tzinfo=UTC))
    run.sources["coingecko"] = SourceReport("coingecko", fetched=3, rejected=0)
    record_run(engine, run)


def tables(engine: sa.Engine) -> Rows:
    """Each table's columns and rows (as a multiset), alembic's own table left out."""
    inspector = sa.inspect(engine)
    found: Rows = {}
    with engine.connect() as conn:
        for table in inspector.get_table_names():
            if table == "alembic_version":
                continue
            columns = sorted(c["name"] for c in inspector.get_columns(table))
            quoted = ", ".join(f'"{c}"' for c in columns)
            rows = conn.execute(sa.text(f'SELECT {quoted} FROM "{table}"')).all()  # noqa: S608
            found[table] = (columns, Counter(tuple(hashable(v) for v in r) for r in rows))
    return found


def hashable(value: Any) -> Any:
    """A JSON value (a source-ids map) as canonical text, anything else as it is."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if isinstance(value, dict | list) else value


def project(rows: Counter[tuple[Any, ...]], columns: list[str], keep: list[str]) -> Counter[tuple[Any, ...]]:
    index = [columns.index(c) for c in keep]
    return Counter({tuple(row[i] for i in index): n for row, n in rows.items()})


def assert_kept(before: Rows, after: Rows, step: str) -> None:
    """Every table still there keeps its rows over the columns it still has."""
    for table, (columns, rows) in after.items():
        if table not in before:
            continue  # made by an older revision's layout (a table put back as it was)
        old_columns, old_rows = before[table]
        common = [c for c in columns if c in old_columns]
        assert common, f"{step}: {table} shares no column with what it was"
        now, then = project(rows, columns, common), project(old_rows, old_columns, common)
        assert now == then, (f"{step}: {table} had {sum(then.values())} rows, has {sum(now.values())}; "
                             f"{sum((then - now).values())} lost or changed (compared over {len(common)} columns)")


def walk_down_and_up(url: str) -> list[str]:
    """The whole walk on the database at ``url`` (empty); returns the revisions walked, base to head."""
    walked = revisions(url)
    assert len(walked) >= 2 and walked[-1] == migrate.head_revision()
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        fill(engine)
        at_head = tables(engine)
        assert all(rows for table, (_, rows) in at_head.items()
                   if table in ("currencies", "currency_data", "currency_data_history", "source_quotes",
                                "dead_letters", "pipeline_runs", "candles_5m")), {
            t: sum(r.values()) for t, (_, r) in at_head.items()}
        before = at_head
        history = sum(at_head["currency_data_history"][1].values())
        for revision, below in zip(reversed(walked), [*reversed(walked[:-1]), None], strict=True):
            migrate.downgrade(url, "-1")
            engine.dispose()
            assert migrate.current(url) == below, f"down from {revision}"
            now = tables(engine)
            assert_kept(before, now, f"down from {revision}")
            if "currency_data_history" in now:  # the rows themselves, not only the table
                assert sum(now["currency_data_history"][1].values()) == history, f"down from {revision}"
            before = now
        assert before == {}, f"tables left at base: {sorted(before)}"
        for revision in walked:
            migrate.upgrade(url, "+1")
            assert migrate.current(url) == revision
        engine.dispose()
        rebuilt = tables(engine)
        assert {t: c for t, (c, _) in rebuilt.items()} == {t: c for t, (c, _) in at_head.items()}
        fill(engine)  # the rebuilt schema takes the same writes
        refilled = tables(engine)
        assert {t: sum(r.values()) for t, (_, r) in refilled.items()} == {
            t: sum(r.values()) for t, (_, r) in at_head.items()}
    finally:
        engine.dispose()
    return walked


def test_every_migration_steps_down_to_base_and_up_again_with_data_on_sqlite(tmp_path: Path) -> None:
    walked = walk_down_and_up(f"sqlite:///{tmp_path / 'steps.db'}")
    assert walked[0] == "0001"
