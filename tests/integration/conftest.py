"""Fixtures for tests against the real services started by ``scripts/services.sh up``.

The addresses come from the environment (``CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS``,
``CRYPTOVIZ_TEST_DATABASE_URL``) or, when unset, from ``.services/env``. A service that does not answer
fails the tests under CI (``CI=true``) and skips them elsewhere.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = REPO_ROOT / ".services" / "env"
HOW_TO_START = "start them with `make services-up` (or `scripts/services.sh up`)"


def _services_env() -> dict[str, str]:
    values: dict[str, str] = {}
    if ENV_FILE.is_file():
        for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line.startswith("export "):
                line = line[len("export "):]
            name, sep, value = line.partition("=")
            if sep and name.strip():
                values[name.strip()] = value.strip().strip("'\"")
    return values


def service_setting(name: str) -> str | None:
    """``name`` from the environment, else from ``.services/env``."""
    return os.environ.get(name) or _services_env().get(name)


def _unavailable(what: str) -> None:
    message = f"{what}; {HOW_TO_START}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` of a Kafka broker that answers a metadata request."""
    bootstrap = service_setting("CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        _unavailable("Kafka is not configured (CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS unset, no .services/env)")
        raise AssertionError("unreachable")
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        brokers = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=10).brokers
    except KafkaException as exc:
        _unavailable(f"Kafka at {bootstrap} does not answer ({exc})")
        raise
    if not brokers:
        _unavailable(f"Kafka at {bootstrap} reports no broker")
    return bootstrap


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL (``postgresql+psycopg://...``) of the test database, checked with a connection."""
    url = service_setting("CRYPTOVIZ_TEST_DATABASE_URL")
    if not url:
        _unavailable("PostgreSQL is not configured (CRYPTOVIZ_TEST_DATABASE_URL unset, no .services/env)")
        raise AssertionError("unreachable")
    import psycopg

    plain = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
    try:
        with psycopg.connect(plain, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL at {url.rsplit('@', 1)[-1]} does not answer ({str(exc).strip()})")
    return url


def _topic_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60].strip("-.")
    return f"test-{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Any:
    """A ``confluent_kafka.admin.AdminClient`` on the test broker."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def delete_topics(admin: Any, topics: list[str]) -> None:
    """Delete ``topics`` and wait (best effort: a failure is only reported as a warning)."""
    futures = admin.delete_topics(topics, operation_timeout=30)
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except Exception as exc:  # noqa: BLE001 - cleanup only
            print(f"could not delete test topic {name}: {exc}")


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, kafka_admin: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh topic with 6 partitions (and its ``.dlq``) for one test, deleted afterwards."""
    from cryptoviz.bus.kafka import dlq_topic_of, ensure_topics

    topic = _topic_name(request)
    ensure_topics(kafka_bootstrap, topic, partitions=6)
    yield topic
    delete_topics(kafka_admin, [topic, dlq_topic_of(topic)])


@pytest.fixture
def drop_topics(kafka_admin: Any) -> Callable[[list[str]], None]:
    """``drop_topics([names])`` deletes topics a test created itself."""
    return lambda topics: delete_topics(kafka_admin, topics)


@pytest.fixture
def kafka_group() -> str:
    """A consumer group id that no other test uses."""
    return f"test-group-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards); yields its URL."""
    import psycopg

    name = f"cv_test_{uuid.uuid4().hex[:10]}"
    admin_url = re.sub(r"^postgresql\+\w+://", "postgresql://", pg_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_url.rsplit("/", 1)[0] + "/" + name
    # An autovacuum worker can hold the database for a moment: FORCE cannot end it as a non-superuser.
    for attempt in range(20):
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.ObjectInUse:
            if attempt == 19:
                raise
            time.sleep(0.5)
