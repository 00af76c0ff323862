"""``/api/stream`` while the database fails for real: ``event: error``, then a snapshot once it answers.

Both producers are served over HTTP: the shared hub (:class:`cryptoviz.api.live.LiveHub`) and the
per-client stream (:func:`cryptoviz.api.stream.per_client_events`). The failure is the database's own: from
another connection the table the stream reads is renamed away (every statement on it fails, whichever
pooled connection the API holds), then back.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from cryptoviz.api.app import create_app
from cryptoviz.api.server import serve_in_thread
from cryptoviz.config import load_settings
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from tests.factories import snapshot

ERROR = ("error", {"error": "database unavailable"})


def events(response: httpx.Response) -> Iterator[tuple[str, object]]:
    """(event, JSON data) per SSE event; comments and the retry line are left out."""
    name, data = "message", list[str]()
    for line in response.iter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def until(stream: Iterator[tuple[str, object]], wanted: str, seconds: float = 10.0) -> tuple[str, object]:
    """The next event named ``wanted``, passing over the others (deltas, repeated errors)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        event = next(stream)
        if event[0] == wanted:
            return event
    raise AssertionError(f"no {wanted!r} event within {seconds:.0f}s")


def rename(db: Path, old: str, new: str) -> None:
    with sqlite3.connect(db, timeout=10) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
    conn.close()


def write(engine: sa.Engine, price: float, minute: int) -> None:
    open_sink(engine).write([snapshot("bitcoin", price=price, minutes=minute),
                             snapshot("ethereum", price=10.0, minutes=minute, symbol="ETH")])


def price_of(data: object, coin: str) -> float:
    assert isinstance(data, dict)
    return next(c["price"] for c in data["coins"] if c["id"] == coin)


@pytest.mark.parametrize("mode", ["hub", "per-client"])
def test_the_stream_says_error_while_the_database_fails_then_a_snapshot(mode: str, tmp_path: Path) -> None:
    db = tmp_path / "cryptoviz.db"
    url = f"sqlite:///{db}"
    migrate.upgrade(url)
    engine = make_engine(url)
    write(engine, 100.0, 0)
    app = create_app(engine, load_settings(database_url=url), poll_interval=0.2)
    app.state.stream_mode = mode
    handle = serve_in_thread(app, port=0)
    try:
        with httpx.Client(base_url=handle.url, timeout=10) as http, http.stream("GET", "/api/stream") as response:
            assert response.status_code == 200
            stream = events(response)
            name, data = next(stream)
            assert name == "snapshot" and price_of(data, "bitcoin") == 100.0
            rename(db, "currency_data", "currency_data_away")
            try:
                assert next(stream) == ERROR  # the first event after the failure
                assert next(stream) == ERROR  # and on every read while it lasts
            finally:
                rename(db, "currency_data_away", "currency_data")
            write(engine, 120.0, 1)  # the database answers, with a new price
            name, data = until(stream, "snapshot")
            if price_of(data, "bitcoin") != 120.0:  # read before the write: the new price follows
                name, data = next(stream)
                assert name in ("delta", "snapshot") and price_of(data, "bitcoin") == 120.0
    finally:
        handle.stop()
        engine.dispose()


@pytest.mark.parametrize("mode", ["hub", "per-client"])
def test_a_snapshot_follows_when_the_database_answers_even_if_nothing_changed(mode: str, tmp_path: Path) -> None:
    """A client shows an error until the next snapshot: either stream sends one at once on recovery."""
    db = tmp_path / "cryptoviz.db"
    url = f"sqlite:///{db}"
    migrate.upgrade(url)
    engine = make_engine(url)
    write(engine, 100.0, 0)
    app = create_app(engine, load_settings(database_url=url), poll_interval=0.2)
    app.state.stream_mode = mode
    handle = serve_in_thread(app, port=0)
    try:
        with httpx.Client(base_url=handle.url, timeout=10) as http, http.stream("GET", "/api/stream") as response:
            stream = events(response)
            first = next(stream)
            assert first[0] == "snapshot"
            rename(db, "currency_data", "currency_data_away")
            try:
                assert next(stream) == ERROR
                # A second client joining while it fails gets the error at once.
                with http.stream("GET", "/api/stream") as late:
                    assert next(events(late)) == ERROR
            finally:
                rename(db, "currency_data_away", "currency_data")
            name, data = until(stream, "snapshot")
            assert price_of(data, "bitcoin") == 100.0
            assert isinstance(data, dict) and isinstance(first[1], dict)
            assert [(c["id"], c["price"]) for c in data["coins"]] == [(c["id"], c["price"]) for c in first[1]["coins"]]
            if mode == "hub":
                assert data["seq"] > first[1]["seq"]  # a fresh read, numbered after what came before
    finally:
        handle.stop()
        engine.dispose()
