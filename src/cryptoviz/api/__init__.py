"""Read-only REST API, live stream (SSE), Prometheus metrics and the built-in dashboard.

``create_app(engine, settings)`` builds the application; ``serve_in_thread`` / ``serve_forever`` run it.
"""

from __future__ import annotations

from cryptoviz.api.app import create_app
from cryptoviz.api.server import ServerHandle, serve_forever, serve_in_thread

__all__ = ["ServerHandle", "create_app", "serve_forever", "serve_in_thread"]
