"""Server-Sent Events: the frame format, and the per-client stream.

The API serves ``/api/stream`` from one shared producer (:mod:`cryptoviz.api.live`). The per-client
stream here polls the database for each connection and encodes its own snapshots; it stays available
(``app.state.stream_mode = "per-client"``) to compare the two under load (``benchmarks/sse_clients.py``).
Polling the database (not only an in-process hook) means either works whatever process writes: the
embedded job, a Kafka consumer elsewhere, or a replay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import anyio
import anyio.to_thread
import sqlalchemy as sa

from cryptoviz.api import queries
from cryptoviz.api.schemas import CoinRow, StreamSnapshot

logger = logging.getLogger(__name__)

RETRY_MS = 3000  # how long a browser waits before reconnecting
_TICK = 0.2  # the longest a stream takes to notice the server is stopping

SnapshotEncoder = Callable[[datetime | None], str]
SNAPSHOT_ROWS = 100  # the top coins by market cap


def format_event(event: str, data: str, *, event_id: str | None = None) -> bytes:
    """One SSE event; ``data`` may hold several lines."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode("utf-8")


KEEPALIVE = b": keepalive\n\n"


async def _pause(seconds: float, stop: threading.Event) -> None:
    remaining = seconds
    while remaining > 0 and not stop.is_set():
        step = min(_TICK, remaining)
        await anyio.sleep(step)
        remaining -= step


async def snapshot_events(engine: sa.Engine, encode: SnapshotEncoder, *, poll_interval: float,
                          stop: threading.Event) -> AsyncIterator[bytes]:
    """Yield SSE bytes: a ``snapshot`` event at once, whenever ``max(currency_data.observed_at)``
    changes and when the database answers again after failing; a ``: keepalive`` comment on the other
    polls, an ``error`` event while the database fails.

    ``encode(observed_at)`` reads and serialises the snapshot (it runs in a worker thread). Ends when
    ``stop`` is set; the server cancels it when the client goes away.
    """
    yield f"retry: {RETRY_MS}\n\n".encode()
    unset = object()
    last: object = unset
    failing = False
    while not stop.is_set():
        try:
            observed = await anyio.to_thread.run_sync(queries.latest_observed_at, engine)
            if observed != last or failing:  # after an error the client needs the state again
                data = await anyio.to_thread.run_sync(encode, observed)
                last = observed
                yield format_event("snapshot", data, event_id=observed.isoformat() if observed else None)
            else:
                yield KEEPALIVE
            failing = False
        except sa.exc.SQLAlchemyError as exc:
            if not failing:
                logger.warning("stream: the database does not answer (%s)", type(exc).__name__)
            failing = True
            yield format_event("error", '{"error": "database unavailable"}')
        await _pause(poll_interval, stop)


def encode_snapshot(engine: sa.Engine, observed_at: datetime | None,
                    max_staleness: float = queries.DEFAULT_MAX_STALENESS) -> str:
    """The top coins by market cap as one JSON snapshot (observed_at, total, coins)."""
    total, rows = queries.list_coins(engine, sort="market_cap", order="desc", limit=SNAPSHOT_ROWS,
                                     max_staleness=max_staleness)
    return StreamSnapshot(observed_at=observed_at, total=total,
                          coins=[CoinRow.model_validate(r) for r in rows]).model_dump_json()


def per_client_events(engine: sa.Engine, *, poll_interval: float, stop: threading.Event,
                      max_staleness: float = queries.DEFAULT_MAX_STALENESS) -> AsyncIterator[bytes]:
    """One connection's own polling stream: ``snapshot_events`` over :func:`encode_snapshot`."""
    return snapshot_events(engine, lambda observed: encode_snapshot(engine, observed, max_staleness),
                           poll_interval=poll_interval, stop=stop)
