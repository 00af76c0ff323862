"""The read-only REST API, the live stream, the metrics and the built-in dashboard.

``create_app(engine, settings)`` builds a FastAPI application over an existing database; it never
writes. Serve it with :mod:`cryptoviz.api.server` (``cryptoviz serve``, or ``cryptoviz run`` alongside
the job). The routes are in :mod:`cryptoviz.api.routers`, one module per resource.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from cryptoviz import __version__
from cryptoviz.api.deps import api_token, require_token, require_token_or_query
from cryptoviz.api.errors import register_error_handlers
from cryptoviz.api.live import LiveHub
from cryptoviz.api.routers import coins, dashboard, operations, sources, stream
from cryptoviz.api.routers.coins import parse_interval
from cryptoviz.config import Settings

__all__ = ["create_app", "parse_interval"]

DESCRIPTION = """\
Read-only access to what CryptoViz stored: the current consensus per coin, its history (raw points or
OHLC candles), each source's own values, the health of the sources, and a live stream.

* Times are ISO-8601 and UTC.
* Errors are JSON: `{"error": ..., "detail": ...}`; a bad parameter adds `"parameter"`.
* When `CRYPTOVIZ_API_TOKEN` is set, `/api/*` and `/metrics` need `Authorization: Bearer <token>`
  (`/api/stream` also accepts `?token=`, since a browser's EventSource cannot send headers).
"""

TAGS = [
    {"name": "coins", "description": "Current values, per-source values and history."},
    {"name": "sources", "description": "Health of the data sources."},
    {"name": "live", "description": "Server-Sent Events."},
    {"name": "operations", "description": "Health check and Prometheus metrics."},
]


def create_app(engine: sa.Engine, settings: Settings, *, poll_interval: float = 2.0) -> FastAPI:
    """The API and dashboard over ``engine`` (read-only). ``poll_interval``: seconds between stream polls."""
    if poll_interval <= 0:
        raise ValueError("poll_interval must be > 0")
    app = FastAPI(title="CryptoViz API", version=__version__, description=DESCRIPTION, openapi_tags=TAGS)
    app.state.engine = engine
    app.state.settings = settings
    app.state.shutdown = threading.Event()  # set by the server on exit: open streams end
    # The stream's one reader; app.state.live.notify() after a commit wakes it (a writer in this process).
    app.state.live = LiveHub.over(engine, poll_interval=poll_interval, stop=app.state.shutdown,
                                  max_staleness=settings.max_staleness)
    app.state.stream_mode = "hub"  # or "per-client": each connection polls on its own (for comparisons)
    register_error_handlers(app)
    secured = api_token(settings) is not None
    protected = [Depends(require_token)] if secured else []
    app.include_router(coins.router, dependencies=protected)
    app.include_router(sources.router, dependencies=protected)
    app.include_router(stream.make_router(poll_interval),
                       dependencies=[Depends(require_token_or_query)] if secured else [])
    app.include_router(operations.router)
    app.include_router(operations.metrics_router, dependencies=protected)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    return app
