"""The HTTP edge against a real server on 127.0.0.1: retries, 429, timeouts, rate limits, breakers, redaction.

``ScriptedServer`` is also used by the CoinGecko and CoinMarketCap fetch tests.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest
from pydantic import SecretStr

from cryptoviz.config import Settings
from cryptoviz.errors import TerminalSourceError, TransientSourceError
from cryptoviz.sources.base import RawPage
from cryptoviz.sources.http import (
    CircuitBreaker,
    HttpClient,
    RateLimiter,
    default_client,
    fetch_pages,
    parse_retry_after,
    redact,
)

# --- a scripted local server -----------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes | Any = b"[]"  # bytes as-is, anything else is sent as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Seen:
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lower-cased names


class ScriptedServer:
    """A real HTTP server on 127.0.0.1:<free port>. Replies come from a list (in order, the last one
    repeating) or from a function of the request; every request is recorded in ``seen``."""

    def __init__(self, script: Script) -> None:
        self._func = script if callable(script) else None
        self._replies = [] if callable(script) else list(script)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown (once per test) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _reply_for(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            if self._func is not None:
                return self._func(seen)
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                parts = urlsplit(self.path)
                seen = Seen(parts.path, dict(parse_qsl(parts.query)),
                            {k.lower(): v for k, v in self.headers.items()})
                reply = server._reply_for(seen)
                body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
                time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

        return Handler

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


Script = Iterable[Reply] | Callable[[Seen], Reply]


class ServerPool:
    """Starts scripted servers on demand and stops them all on exit; the ``serve`` fixtures use it."""

    def __init__(self) -> None:
        self._servers: list[ScriptedServer] = []

    def start(self, script: Script) -> ScriptedServer:
        server = ScriptedServer(script).__enter__()
        self._servers.append(server)
        return server

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.__exit__(None, None, None)


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    with ServerPool() as pool:
        yield pool.start


class FakeClock:
    """Monotonic time that only moves when something sleeps (or the test moves it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_http(settings: Settings, clock: FakeClock, **kwargs: Any) -> HttpClient:
    return HttpClient(settings, sleep=clock.sleep, clock=clock, **kwargs)


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- rate limiter --------------------------------------------------------------------------------


def test_rate_limiter_lets_a_burst_through_then_paces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, burst=2, clock=clock, sleep=clock.sleep)
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(1.0)  # 60/min = one token a second
    assert clock.sleeps == [pytest.approx(1.0)]
    assert limiter.try_acquire() == pytest.approx(1.0)


def test_rate_limiter_saves_at_most_burst_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(30, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire()
    clock.now += 3600  # an hour idle refills to the burst, not to 1800 tokens
    assert limiter.tokens == 3.0
    for _ in range(3):
        assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == pytest.approx(2.0)  # 30/min = a token every 2 s


def test_rate_limiter_hands_each_token_to_one_thread_only() -> None:
    clock = FakeClock()  # frozen: no refill while the threads race
    limiter = RateLimiter(60, burst=5, clock=clock, sleep=clock.sleep)
    granted: list[bool] = []
    start = threading.Barrier(20)

    def take() -> None:
        start.wait()
        granted.append(limiter.try_acquire() == 0.0)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 5
    assert granted.count(False) == 15


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (10, 0)])
def test_rate_limiter_refuses_nonsense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


# --- circuit breaker -----------------------------------------------------------------------------


def test_circuit_breaker_opens_after_consecutive_failures_and_probes_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown=60, clock=clock)
    assert breaker.state == "closed"
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # not consecutive any more
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.retry_in() == 60.0
    clock.now += 59.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half-open"
    assert breaker.allow()
    breaker.record_failure()  # the probe failed: open again for a full cool-down
    assert breaker.state == "open"
    assert breaker.retry_in() == 60.0
    clock.now += 60
    assert breaker.state == "half-open"
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.failures == 0


# --- helpers -------------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = datetime(2026, 5, 18, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("Mon, 18 May 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 18 May 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None


def test_redact_replaces_every_secret() -> None:
    assert redact("key abcd1234 and abcd1234", ["abcd1234", None, ""]) == "key *** and ***"


def test_default_client_takes_timeouts_from_settings() -> None:
    with default_client(Settings(http_timeout=30)) as client:
        assert client.timeout.read == 30
        assert client.timeout.connect == 10  # connecting never needs the full read time
    with default_client(Settings(http_timeout=2)) as client:
        assert client.timeout.read == 2
        assert client.timeout.connect == 2


# --- paging policy -------------------------------------------------------------------------------


def _pages_of(counts: list[int | Exception]) -> tuple[list[tuple[int, int]], Any]:
    asked: list[tuple[int, int]] = []

    def fetch_one(number: int, limit: int) -> tuple[RawPage, int]:
        asked.append((number, limit))
        count = counts[number - 1]
        if isinstance(count, Exception):
            raise count
        return RawPage("demo", b"[]", "json", datetime(2026, 1, 1, tzinfo=UTC), f"/p{number}"), count

    return asked, fetch_one


def test_fetch_pages_stops_at_a_short_page() -> None:
    asked, fetch_one = _pages_of([3, 3, 1, 3])
    pages = fetch_pages("demo", [3, 3, 3, 3], fetch_one)
    assert asked == [(1, 3), (2, 3), (3, 3)]
    assert [p.url for p in pages] == ["/p1", "/p2", "/p3"]


def test_fetch_pages_keeps_earlier_pages_when_a_later_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    asked, fetch_one = _pages_of([2, TransientSourceError("demo", "HTTP 503; retry later")])
    with caplog.at_level(logging.WARNING):
        pages = fetch_pages("demo", [2, 2], fetch_one)
    assert len(pages) == 1
    assert "demo: page 2 failed, keeping the 1 page(s) already fetched: demo: HTTP 503" in caplog.text


def test_fetch_pages_raises_when_the_first_page_fails() -> None:
    _, fetch_one = _pages_of([TerminalSourceError("demo", "bad key")])
    with pytest.raises(TerminalSourceError, match="bad key"):
        fetch_pages("demo", [2, 2], fetch_one)


def test_fetch_pages_warns_when_the_safety_cap_is_reached(caplog: pytest.LogCaptureFixture) -> None:
    _, fetch_one = _pages_of([2, 2])
    with caplog.at_level(logging.WARNING):
        assert len(fetch_pages("demo", [2, 2], fetch_one, capped=True)) == 2
    assert "demo: stopped after 2 pages (safety limit)" in caplog.text


# --- HttpClient against a real server ------------------------------------------------------------


def test_retries_5xx_with_exponential_backoff_then_succeeds(serve: Any) -> None:
    server = serve([Reply(500), Reply(502), Reply(200, [1, 2])])
    clock = FakeClock()
    http = make_http(Settings(http_retries=3), clock, backoff_base=0.5)
    response = http.get("demo", f"{server.url}/x", params={"a": 1})
    assert response.status_code == 200
    assert response.json() == [1, 2]
    assert len(server.seen) == 3
    assert server.seen[0].params == {"a": "1"}
    assert len(clock.sleeps) == 2
    assert 0.25 <= clock.sleeps[0] <= 0.5  # half to all of 0.5 s
    assert 0.5 <= clock.sleeps[1] <= 1.0  # then doubled
    assert http.breaker("demo").state == "closed"


def test_gives_up_after_the_configured_retries(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = serve([Reply(503, {"status": {"error_code": 503, "error_message": "maintenance"}})])
    clock = FakeClock()
    http = make_http(Settings(http_retries=2), clock)
    with caplog.at_level(logging.WARNING), pytest.raises(TransientSourceError) as info:
        http.get("demo", f"{server.url}/x")
    assert len(server.seen) == 3  # 1 + 2 retries
    assert len(clock.sleeps) == 2
    assert info.value.status == 503
    assert info.value.source == "demo"
    assert str(info.value).startswith("demo: 127.0.0.1 answered HTTP 503 after 3 attempts (maintenance);")
    assert "retry later" in str(info.value)
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2
    assert retries[0].startswith("demo: 127.0.0.1 answered HTTP 503 after 1 attempt (maintenance); retrying in ")
    assert http.breaker("demo").failures == 1


def test_backoff_is_capped(serve: Any) -> None:
    server = serve([Reply(500)])
    clock = FakeClock()
    http = make_http(Settings(http_retries=6), clock, backoff_base=1.0, backoff_max=4.0)
    with pytest.raises(TransientSourceError):
        http.get("demo", f"{server.url}/x")
    assert len(server.seen) == 7
    assert max(clock.sleeps) <= 4.0
    assert min(clock.sleeps[3:]) >= 2.0  # 1, 2, 4, 4, 4, 4 before jitter


def test_4xx_is_returned_without_retry(serve: Any) -> None:
    server = serve([Reply(404, {"error": "not found"})])
    clock = FakeClock()
    response = make_http(Settings(), clock).get("demo", f"{server.url}/x")
    assert response.status_code == 404
    assert len(server.seen) == 1
    assert clock.sleeps == []


def test_429_waits_retry_after_then_retries(serve: Any) -> None:
    server = serve([Reply(429, {"status": {"error_code": 429}}, headers={"Retry-After": "1"}),
                    Reply(200, [])])
    clock = FakeClock()
    response = make_http(Settings(), clock).get("demo", f"{server.url}/x")
    assert response.status_code == 200
    assert len(server.seen) == 2
    assert clock.sleeps == [1.0]


def test_429_with_a_long_retry_after_is_handed_back(serve: Any) -> None:
    server = serve([Reply(429, {"status": {"error_code": 429, "error_message": "slow down"}},
                          headers={"Retry-After": "120"})])
    clock = FakeClock()
    with pytest.raises(TransientSourceError) as info:
        make_http(Settings(), clock).get("demo", f"{server.url}/x")
    assert len(server.seen) == 1
    assert clock.sleeps == []
    assert info.value.status == 429
    assert info.value.retry_after == 120.0
    assert "rate limit hit (HTTP 429) after 1 attempt (slow down)" in str(info.value)
    assert "wait 120s" in str(info.value)


def test_429_without_retry_after_backs_off(serve: Any) -> None:
    server = serve([Reply(429), Reply(200)])
    clock = FakeClock()
    make_http(Settings(http_retries=1), clock).get("demo", f"{server.url}/x")
    assert len(server.seen) == 2
    assert len(clock.sleeps) == 1


def test_passthrough_statuses_are_returned_as_is(serve: Any) -> None:
    server = serve([Reply(429, {"status": {"error_code": 1008}})])
    clock = FakeClock()
    response = make_http(Settings(), clock).get("demo", f"{server.url}/x", passthrough={429})
    assert response.status_code == 429
    assert len(server.seen) == 1


def test_timeout_is_retried_then_reported(serve: Any) -> None:
    server = serve([Reply(200, delay=0.5)])
    clock = FakeClock()
    http = make_http(Settings(http_timeout=0.1, http_retries=1), clock)
    with pytest.raises(TransientSourceError) as info:
        http.get("demo", f"{server.url}/slow")
    assert len(server.seen) == 2
    assert len(clock.sleeps) == 1
    message = str(info.value)
    assert message.startswith("demo: no answer from 127.0.0.1 in time (ReadTimeout) after 2 attempts;")
    assert "CRYPTOVIZ_HTTP_TIMEOUT" in message


def test_connection_refused_says_it_cannot_reach_the_host() -> None:
    clock = FakeClock()
    http = make_http(Settings(http_retries=2), clock)
    with pytest.raises(TransientSourceError) as info:
        http.get("demo", f"http://127.0.0.1:{free_port()}/x")
    assert "demo: cannot reach 127.0.0.1" in str(info.value)
    assert "after 3 attempts" in str(info.value)
    assert len(clock.sleeps) == 2


def test_an_unusable_url_is_terminal() -> None:
    clock = FakeClock()
    with pytest.raises(TerminalSourceError) as info:
        make_http(Settings(), clock).get("demo", "ftp://127.0.0.1/x")
    assert "BASE_URL" in str(info.value)
    assert clock.sleeps == []


def test_breaker_fails_fast_while_open_then_probes(serve: Any) -> None:
    server = serve([Reply(500), Reply(500), Reply(500), Reply(200)])
    clock = FakeClock()
    http = make_http(Settings(http_retries=0), clock, breaker_threshold=3, breaker_cooldown=60)
    for _ in range(3):
        with pytest.raises(TransientSourceError):
            http.get("demo", f"{server.url}/x")
    assert http.breaker("demo").state == "open"
    with pytest.raises(TransientSourceError) as info:
        http.get("demo", f"{server.url}/x")
    assert len(server.seen) == 3  # no request while open
    assert "circuit open" in str(info.value)
    assert info.value.retry_after == 60.0
    assert http.breaker("other").state == "closed"  # one breaker per source
    clock.now += 60
    assert http.breaker("demo").state == "half-open"
    assert http.get("demo", f"{server.url}/x").status_code == 200
    assert http.breaker("demo").state == "closed"


def test_each_request_attempt_takes_a_rate_limit_token(serve: Any) -> None:
    server = serve([Reply(200)])
    clock = FakeClock()
    http = make_http(Settings(), clock)
    http.set_rate_limit("demo", 60, burst=1)
    for _ in range(3):
        http.get("demo", f"{server.url}/x")
    assert len(server.seen) == 3
    assert clock.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]
    assert http.limiter("other") is None


def test_api_keys_never_reach_errors_or_logs(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    cg_key, cmc_key = "CG-demo-key-0123456789", "cmc-key-aaaa-bbbb-cccc"
    echo = {"status": {"error_code": 500, "error_message": f"bad things with key {cmc_key} and {cg_key}"}}
    server = serve([Reply(500, echo)])
    settings = Settings(coingecko_api_key=SecretStr(cg_key), coinmarketcap_api_key=SecretStr(cmc_key),
                        http_retries=1)
    clock = FakeClock()
    with caplog.at_level(logging.DEBUG), pytest.raises(TransientSourceError) as info:
        make_http(settings, clock).get("demo", f"{server.url}/x",
                                       headers={"X-CMC_PRO_API_KEY": cmc_key, "x-other-token": "tok-12345"})
    assert server.seen[0].headers["x-cmc_pro_api_key"] == cmc_key  # the key did go out
    text = str(info.value) + "\n" + caplog.text
    assert "bad things with key ***" in str(info.value)
    for secret in (cg_key, cmc_key):
        assert secret not in text


def test_context_manager_closes_the_client_it_built() -> None:
    with HttpClient(Settings()) as http:
        client = http._client
    assert client.is_closed


def test_an_injected_client_is_left_open() -> None:
    client = httpx.Client()
    with HttpClient(Settings(), client):
        pass
    assert not client.is_closed
    client.close()
