"""``/api/stream`` on PostgreSQL read as the dashboards' role (``cryptoviz_reader``): while that role may not
read the table the stream reads, every client gets ``event: error``; once it may again, a snapshot."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from cryptoviz.api.app import create_app
from cryptoviz.api.server import serve_in_thread
from cryptoviz.config import load_settings
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from tests.integration.conftest import service_setting
from tests.unit.test_sse_error import ERROR, events, price_of, until, write

pytestmark = pytest.mark.integration


def as_owner(url: str, statement: str) -> None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(statement)


@pytest.mark.parametrize("mode", ["hub", "per-client"])
def test_the_stream_says_error_while_the_reader_role_is_refused_then_a_snapshot(mode: str,
                                                                                 pg_database: str) -> None:
    reader_setting = service_setting("CRYPTOVIZ_READER_DATABASE_URL")
    assert reader_setting, "CRYPTOVIZ_READER_DATABASE_URL is not set (scripts/services.sh up writes it)"
    migrate.upgrade(pg_database)
    owner = make_engine(pg_database)
    write(owner, 100.0, 0)
    reader_url = make_url(reader_setting).set(database=make_url(pg_database).database)
    reader = make_engine(reader_url.render_as_string(hide_password=False))
    role = reader_url.username
    app = create_app(reader, load_settings(), poll_interval=0.2)
    app.state.stream_mode = mode
    handle = serve_in_thread(app, port=0)
    try:
        with httpx.Client(base_url=handle.url, timeout=10) as http, http.stream("GET", "/api/stream") as response:
            stream = events(response)
            name, data = next(stream)
            assert name == "snapshot" and price_of(data, "bitcoin") == 100.0
            as_owner(pg_database, f'REVOKE SELECT ON currency_data FROM "{role}"')
            try:
                assert next(stream) == ERROR
                assert next(stream) == ERROR
            finally:
                as_owner(pg_database, f'GRANT SELECT ON currency_data TO "{role}"')
            write(owner, 120.0, 1)
            name, data = until(stream, "snapshot")
            if price_of(data, "bitcoin") != 120.0:  # read before the write: the new price follows
                name, data = next(stream)
                assert name in ("delta", "snapshot") and price_of(data, "bitcoin") == 120.0
    finally:
        handle.stop()
        reader.dispose()
        owner.dispose()
