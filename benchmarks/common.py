"""What every benchmark needs: the service addresses, fresh databases and topics, progress on stderr."""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / ".services" / "env"
_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One line of progress on stderr (stdout carries only the JSON result)."""
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def _services_env() -> dict[str, str]:
    values: dict[str, str] = {}
    if ENV_FILE.is_file():
        for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
            line = line.strip().removeprefix("export ")
            name, sep, value = line.partition("=")
            if sep and name.strip():
                values[name.strip()] = value.strip().strip("'\"")
    return values


def setting(name: str) -> str | None:
    """``name`` from the environment, else from ``.services/env`` (written by ``scripts/services.sh up``)."""
    return os.environ.get(name) or _services_env().get(name)


def plain_pg_url(url: str) -> str:
    """A libpq URL (``postgresql://``) from a SQLAlchemy one (``postgresql+psycopg://``)."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


@dataclass(frozen=True, slots=True)
class Services:
    pg_url: str  # SQLAlchemy URL of an existing database; benchmarks create their own beside it
    bootstrap: str

    @classmethod
    def from_env(cls) -> Services:
        pg = setting("CRYPTOVIZ_DATABASE_URL") or setting("CRYPTOVIZ_TEST_DATABASE_URL")
        bootstrap = setting("CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS")
        missing = [name for name, value in (("CRYPTOVIZ_DATABASE_URL", pg),
                                            ("CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS", bootstrap)) if not value]
        if missing or pg is None or bootstrap is None:
            raise SystemExit(f"benchmarks need {' and '.join(missing)}: run `make bench` "
                             "(or `bash scripts/services.sh up` and source .services/env)")
        if not plain_pg_url(pg).startswith("postgresql://"):
            raise SystemExit("CRYPTOVIZ_DATABASE_URL must point at PostgreSQL for the benchmarks")
        return cls(pg, bootstrap)

    def database_url(self, name: str) -> str:
        """The SQLAlchemy URL of database ``name`` on the same server."""
        base = self.pg_url.split("?", 1)[0].rsplit("/", 1)[0]
        return f"{base}/{name}"


@contextmanager
def fresh_database(services: Services, label: str, revision: str = "head") -> Iterator[str]:
    """An empty database at the latest schema (or at migration ``revision``) for one benchmark, dropped
    afterwards; yields its URL."""
    import psycopg

    from cryptoviz.store import migrate

    name = f"cv_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = plain_pg_url(services.pg_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = services.database_url(name)
    try:
        migrate.upgrade(url, revision)
        yield url
    finally:
        _drop_database(admin, name)


def _drop_database(admin: str, name: str, patience: float = 180.0) -> None:
    """Drop ``name``, retrying while an autovacuum worker (which FORCE may not end) still holds it: after a
    million-row load, one can take a minute or two."""
    import psycopg

    deadline = time.monotonic() + patience
    waited = False
    while True:
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.Error as exc:
            if time.monotonic() >= deadline:
                progress(f"could not drop benchmark database {name} (drop it by hand): {str(exc).strip()}")
                return
            if not waited:
                progress(f"{name}: waiting for autovacuum to leave it before dropping it")
                waited = True
            time.sleep(1.0)


@contextmanager
def fresh_topic(services: Services, label: str, partitions: int = 6) -> Iterator[str]:
    """A new topic (and its ``.dlq``) for one benchmark, deleted afterwards."""
    from confluent_kafka.admin import AdminClient

    from cryptoviz.bus.kafka import dlq_topic_of, ensure_topics

    topic = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    ensure_topics(services.bootstrap, topic, partitions)
    try:
        yield topic
    finally:
        admin = AdminClient({"bootstrap.servers": services.bootstrap})
        for name, future in admin.delete_topics([topic, dlq_topic_of(topic)], operation_timeout=30).items():
            try:
                future.result(timeout=30)
            except Exception as exc:  # noqa: BLE001 - cleanup only
                progress(f"could not delete topic {name}: {exc}")


def group_name(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:8]}"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, linear between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def rounded(value: Any, digits: int = 1) -> Any:
    return round(value, digits) if isinstance(value, float) else value
