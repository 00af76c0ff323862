"""Run the API with uvicorn: in a background thread (beside the job, in tests) or in the foreground.

The socket is bound here, before uvicorn starts, so a taken port is one clear ``CryptoVizError`` and
port 0 gives a free port whose number is known at once. Access logs are off: a ``?token=`` in a URL
must never reach a log file.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from cryptoviz.errors import CryptoVizError

logger = logging.getLogger(__name__)

GRACEFUL_SECONDS = 3


def _signal_app_stop(app: Any) -> None:
    """Tell the application's open streams to end (see ``create_app``: ``app.state.shutdown``)."""
    event = getattr(getattr(app, "state", None), "shutdown", None)
    if isinstance(event, threading.Event):
        event.set()


class _Server(uvicorn.Server):
    """uvicorn's server, ending the app's streams as soon as an exit is requested."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        _signal_app_stop(self._app)
        super().handle_exit(sig, frame)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say so, and without it a
    # response sent as headers then body waits for the client's delayed ACK, 40 ms, every time.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CryptoVizError(f"port {port} on {host} is in use: pass --port with another port "
                                 f"(or set CRYPTOVIZ_API_PORT)") from None
        if exc.errno == errno.EACCES:
            raise CryptoVizError(f"not allowed to listen on port {port} on {host}: pass --port with a port "
                                 f"above 1024") from None
        raise CryptoVizError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _config(app: Any) -> uvicorn.Config:
    # log_config=None keeps CryptoViz's own logging set-up; the sockets are ours (host/port unused).
    return uvicorn.Config(app, log_config=None, access_log=False, lifespan="auto",
                          timeout_graceful_shutdown=GRACEFUL_SECONDS, server_header=False)


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@dataclass
class ServerHandle:
    """A server running in a daemon thread: ``url``, ``host``, ``port`` (the real one) and ``stop()``."""

    host: str
    port: int
    _server: _Server
    _thread: threading.Thread
    _socket: socket.socket
    _app: Any

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    @property
    def app(self) -> Any:
        """The application served (its ``state`` holds the live hub)."""
        return self._app

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """End open streams, stop accepting, wait for the thread (idempotent)."""
        _signal_app_stop(self._app)
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 8000, *,
                    startup_timeout: float = 15.0) -> ServerHandle:
    """Start ``app`` on ``host:port`` (0 = any free port) in a daemon thread; return once it accepts."""
    sock = _bind(host, port)
    real_port = int(sock.getsockname()[1])
    server = _Server(_config(app), app)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread (SystemExit included)
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"api-{real_port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            why = f": {failure[0]!r}" if failure else ""
            raise CryptoVizError(f"the API server on {_url(host, real_port)} did not start{why}")
        time.sleep(0.02)
    logger.info("API and dashboard on %s/", _url(host, real_port))
    return ServerHandle(host, real_port, server, thread, sock, app)


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` in the foreground until SIGINT/SIGTERM (``cryptoviz serve``)."""
    sock = _bind(host, port)
    server = _Server(_config(app), app)
    logger.info("API and dashboard on %s/ (Ctrl+C to stop)", _url(host, int(sock.getsockname()[1])))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the signal it handled once it has shut down
    finally:
        sock.close()
