"""``cryptoviz db upgrade|downgrade|current``: Alembic driven from code, no alembic.ini needed."""

from __future__ import annotations

import io
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from cryptoviz.errors import StoreError
from cryptoviz.store.engine import make_engine, normalise_url, redact

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' must be doubled for configparser interpolation (passwords may contain it).
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def _run(url: str, action: str, revision: str) -> None:
    cfg = alembic_config(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # A batch migration rebuilds a table (copy, drop, rename): with foreign keys on, dropping
                # the old table would cascade into every row that references it. SQLite ignores this
                # pragma inside a transaction, so it goes before BEGIN; the keys are checked at the end.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Several processes may start at once (two consumers): one migrates, the others wait.
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(427091)"))
                cfg.attributes["connection"] = conn
                if action == "upgrade":
                    command.upgrade(cfg, revision)
                else:
                    command.downgrade(cfg, revision)
                if sqlite:
                    _check_foreign_keys(conn, url, action)
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot {action} database {redact(url)}: {exc.orig}") from None
    finally:
        engine.dispose()


def _check_foreign_keys(conn: sa.Connection, url: str, action: str) -> None:
    """Refuse to commit a migration that left a row pointing at nothing (SQLite, keys checked late)."""
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise StoreError(f"cannot {action} database {redact(url)}: {len(broken)} row(s) of {', '.join(tables)} "
                         "would reference missing rows; nothing was changed")


def upgrade(url: str, revision: str = "head") -> None:
    _run(url, "upgrade", revision)


def downgrade(url: str, revision: str = "-1") -> None:
    _run(url, "downgrade", revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot read the schema version of {redact(url)}: {exc.orig}") from None
    finally:
        engine.dispose()
