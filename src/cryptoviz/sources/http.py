"""The HTTP edge of every source: one client, per-source rate limits, retries and circuit breakers.

    HttpClient.get(source, url, ...)
      ├── CircuitBreaker(source)   open -> fail fast, no request
      ├── RateLimiter(source)      one token per request attempt
      └── retries                  timeouts, connection errors, 5xx: exponential backoff + jitter
                                   429: wait ``Retry-After`` when short, else give up with ``retry_after``

Failures become ``TransientSourceError`` / ``TerminalSourceError``. Requests carry API keys in headers, so
every message built here goes through ``redact`` first: a key must never reach a log or an error.
``fetch_pages`` (stop at a short page, keep earlier pages when a later one fails) and
``http_status_error`` are shared by the sources.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
import orjson

from cryptoviz import progress
from cryptoviz.config import Settings
from cryptoviz.errors import SourceError, TerminalSourceError, TransientSourceError
from cryptoviz.sources.base import RawPage, brief_text

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Check = Callable[[httpx.Response], object]  # raises the SourceError a response stands for
BreakerState = Literal["closed", "open", "half-open"]

USER_AGENT = "cryptoviz/0.1"
RETRY_AFTER_CAP = 60.0  # seconds we are willing to block one worker for a 429
MAX_BUDGET_WAIT = 15.0  # seconds a request may wait for its rate-limit token; longer: the budget is used up
_TOKEN_EPSILON = 1e-6
_SENSITIVE_HEADER_WORDS = ("key", "token", "auth", "secret", "cookie")
_E = TypeVar("_E", bound=SourceError)


# --- redaction -----------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every secret value in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:  # a 1-3 char "secret" would mangle ordinary words
            text = text.replace(secret, "***")
    return text


def sensitive_values(headers: Mapping[str, str] | None) -> list[str]:
    """Values of headers whose name suggests a credential (API keys, tokens, cookies)."""
    if not headers:
        return []
    return [v for k, v in headers.items() if any(w in k.lower() for w in _SENSITIVE_HEADER_WORDS)]


def redact_error(exc: _E, secrets: Iterable[str | None]) -> _E:
    """The same error with any secret removed from its message (for messages echoed from servers)."""
    message = str(exc).removeprefix(f"{exc.source}: ")
    clean = redact(message, secrets)
    if clean == message:
        return exc
    return type(exc)(exc.source, clean, status=exc.status, retry_after=exc.retry_after)


# --- rate limiter --------------------------------------------------------------------------------


class RateLimiter:
    """Token bucket: ``rate_per_minute`` tokens a minute, at most ``burst`` saved up.

    Thread-safe; ``acquire`` sleeps outside the lock so other threads can refill-check meanwhile.
    """

    def __init__(self, rate_per_minute: float, burst: int = 1, *, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep) -> None:
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate_per_minute = rate_per_minute
        self.burst = burst
        self._per_second = rate_per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)  # start full: the first requests of a run need not wait
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self._per_second)
        self._updated = now

    def try_acquire(self) -> float:
        """Take a token if one is there and return 0.0; otherwise return the seconds until one is."""
        with self._lock:
            self._refill()
            # The epsilon absorbs float rounding: after sleeping exactly the wait returned below, the bucket
            # may hold 0.9999999999 tokens, and a loop of ever tinier sleeps must not follow.
            if self._tokens >= 1.0 - _TOKEN_EPSILON:
                self._tokens = max(0.0, self._tokens - 1.0)
                return 0.0
            return (1.0 - self._tokens) / self._per_second

    def acquire(self) -> float:
        """Block until a token is available; return the total seconds waited."""
        waited = 0.0
        while (wait := self.try_acquire()) > 0.0:
            self._sleep(wait)
            waited += wait
        return waited

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens


# --- circuit breaker -----------------------------------------------------------------------------


class CircuitBreaker:
    """Stop calling a source that keeps failing, then probe it again after a cool-down.

    closed --(``failure_threshold`` consecutive failures)--> open --(``cooldown`` s)--> half-open;
    half-open --success--> closed, half-open --failure--> open again.
    """

    def __init__(self, failure_threshold: int = 3, cooldown: float = 120.0, *,
                 clock: Clock = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold!r}")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._unusable = 0  # answers in a row that held nothing usable (an HTTP success does not reset it)
        self._opened_at: float | None = None

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cooldown:
            return "open"
        return "half-open"

    def retry_in(self) -> float:
        """Seconds until the breaker lets a probe through (0.0 when it already does)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        return self.state != "open"

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state() == "half-open" or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()

    def record_usable(self, usable: bool) -> None:
        """Whether a successful answer held anything usable: ``failure_threshold`` useless answers in a row
        open the breaker like failures (a layout nobody can read is not fetched every cycle)."""
        with self._lock:
            if usable:
                self._unusable = 0
                return
            self._unusable += 1
            if self._unusable >= self.failure_threshold:
                self._opened_at = self._clock()


# --- HTTP client ---------------------------------------------------------------------------------


def default_client(settings: Settings) -> httpx.Client:
    """An ``httpx.Client`` with the configured timeouts; connecting should never take the full read time."""
    timeout = httpx.Timeout(settings.http_timeout, connect=min(settings.http_timeout, 10.0))
    return httpx.Client(timeout=timeout, follow_redirects=True, headers={"User-Agent": USER_AGENT})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_detail(response: httpx.Response, limit: int = 200) -> str:
    """A short server-side reason from a JSON error body (CoinGecko/CoinMarketCap envelopes), or ""."""
    try:
        doc: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    message: Any = None
    if isinstance(doc, dict):
        status = doc.get("status")
        if isinstance(status, dict):
            message = status.get("error_message")
        for name in ("error", "error_message", "message"):
            if not message:
                message = doc.get(name)
    return brief_text(message, limit) if message else ""


class HttpClient:
    """GET with per-source rate limiting, retries and a circuit breaker, over an injected ``httpx.Client``.

    ``get`` returns the response for any status below 500 except 429 (the caller reads its own error
    envelopes); it raises ``TransientSourceError`` when the service stays unreachable, slow, 5xx or
    rate-limited, and ``TerminalSourceError`` for a URL that can never work.
    """

    def __init__(self, settings: Settings, client: httpx.Client | None = None, *,
                 sleep: Sleep = time.sleep, clock: Clock = time.monotonic,
                 rng: random.Random | None = None, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 retry_after_cap: float = RETRY_AFTER_CAP, breaker_threshold: int = 3,
                 breaker_cooldown: float = 120.0) -> None:
        self._owns_client = client is None
        self._client = client if client is not None else default_client(settings)
        self.retries = settings.http_retries
        self._secrets = [s.get_secret_value() for s in (settings.coingecko_api_key,
                                                        settings.coinmarketcap_api_key) if s is not None]
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # jitter only, not cryptography
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._retry_after_cap = retry_after_cap
        self._breaker_threshold = breaker_threshold
        self._breaker_cooldown = breaker_cooldown
        self._lock = threading.Lock()
        self._limiters: dict[str, RateLimiter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}

    # -- per-source state --

    def set_rate_limit(self, source: str, rate_per_minute: float, burst: int = 1) -> RateLimiter:
        """Give ``source`` its own token bucket (replacing any previous one)."""
        limiter = RateLimiter(rate_per_minute, burst, clock=self._clock, sleep=self._sleep)
        with self._lock:
            self._limiters[source] = limiter
        return limiter

    def limiter(self, source: str) -> RateLimiter | None:
        with self._lock:
            return self._limiters.get(source)

    def breaker(self, source: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(source)
            if breaker is None:
                breaker = CircuitBreaker(self._breaker_threshold, self._breaker_cooldown, clock=self._clock)
                self._breakers[source] = breaker
            return breaker

    # -- requests --

    def get(self, source: str, url: str, params: Mapping[str, str | int] | None = None,
            headers: Mapping[str, str] | None = None, *,
            passthrough: Collection[int] = (), check: Check | None = None) -> httpx.Response:
        """GET ``url`` for ``source``. Statuses in ``passthrough`` are returned as-is, never retried.

        ``check(response)`` reads a response that would be returned and raises the ``SourceError`` its body
        stands for (an error envelope, a body cut short). A ``TransientSourceError`` from it is a failed
        attempt like a 5xx: retried (unless the status is in ``passthrough`` or the error carries
        ``retry_after``) and counted by the circuit breaker, so a source that keeps answering 200 with
        garbage, or 429 envelopes, is backed off too. A ``TerminalSourceError`` is raised at once.
        """
        secrets = [*self._secrets, *sensitive_values(headers)]
        breaker = self.breaker(source)
        if not breaker.allow():
            wait = breaker.retry_in()
            raise TransientSourceError(
                source, f"skipped: {breaker.failures} consecutive failed requests, circuit open for "
                        f"another {wait:.0f}s; the source is probably down, nothing to do but wait",
                retry_after=wait)
        try:
            response = self._get_with_retries(source, url, params, headers, passthrough, secrets, check)
        except TransientSourceError as exc:
            breaker.record_failure()
            raise redact_error(exc, secrets) from None
        except TerminalSourceError as exc:
            raise redact_error(exc, secrets) from None
        breaker.record_success()
        return response

    def _get_with_retries(self, source: str, url: str, params: Mapping[str, str | int] | None,
                          headers: Mapping[str, str] | None, passthrough: Collection[int],
                          secrets: list[str], check: Check | None = None) -> httpx.Response:
        host = httpx.URL(url).host or url
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            limiter = self.limiter(source)
            if limiter is not None:
                self._take_token(source, limiter)
            outcome, delay = self._attempt(source, host, url, params, headers, passthrough, attempt, check)
            if isinstance(outcome, httpx.Response):
                return outcome
            if attempt == attempts or delay is None:
                raise outcome
            # Log what failed, not the advice: advice is for the final error, and we are retrying.
            what = _reason(outcome).split("; ")[0]
            logger.warning("%s: %s; retrying in %.1fs (attempt %d of %d)",
                           source, redact(what, secrets), delay, attempt, attempts)
            self._sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _take_token(self, source: str, limiter: RateLimiter) -> None:
        """Wait for the source's next request token, unless that is long: then the request budget is used up
        (a monthly plan spent on retries, say) and the cycle goes on without this source until it refills."""
        wait = limiter.try_acquire()
        while wait > 0.0:
            if wait > MAX_BUDGET_WAIT:
                raise TransientSourceError(
                    source, f"request budget used up ({limiter.rate_per_minute:g} a minute, {limiter.burst} at "
                            f"once): next request possible in {wait:.0f}s; the source is asked less often "
                            "(CRYPTOVIZ_SOURCE_INTERVALS) or a paid plan's key raises the budget",
                    retry_after=wait)
            self._sleep(wait)
            wait = limiter.try_acquire()

    def _attempt(self, source: str, host: str, url: str, params: Mapping[str, str | int] | None,
                 headers: Mapping[str, str] | None, passthrough: Collection[int],
                 attempt: int, check: Check | None = None) -> tuple[httpx.Response | SourceError, float | None]:
        """One request: the response to return, or the error to raise with the delay before a retry
        (``None``: do not retry)."""
        tried = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
        try:
            response = self._client.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            error = _transport_error(source, host, exc, tried)
            return error, (self._backoff(attempt) if isinstance(error, TransientSourceError) else None)
        status = response.status_code
        if status in passthrough or (status < 500 and status != 429):
            if check is not None:
                try:
                    check(response)
                except TransientSourceError as exc:
                    retry = status not in passthrough and exc.retry_after is None
                    return exc, (self._backoff(attempt) if retry else None)
                except SourceError as exc:
                    return exc, None
            return response, None
        detail = error_detail(response)
        detail = f" ({detail})" if detail else ""
        if status == 429:
            return self._rate_limited(source, host, response, detail, tried, attempt)
        return TransientSourceError(
            source, f"{host} answered HTTP {status} {tried}{detail}; the service is having trouble, "
                    "retry later", status=status), self._backoff(attempt)

    def _rate_limited(self, source: str, host: str, response: httpx.Response, detail: str,
                      tried: str, attempt: int) -> tuple[SourceError, float | None]:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = TransientSourceError(
            source, f"{host} rate limit hit (HTTP 429) {tried}{detail}; wait "
                    f"{'a minute' if retry_after is None else f'{retry_after:.0f}s'}, collect less often "
                    "(CRYPTOVIZ_INTERVAL) or use an API key", status=429, retry_after=retry_after)
        if retry_after is None:
            return error, self._backoff(attempt)
        # A long Retry-After would block a worker for minutes: hand it to the scheduler instead.
        return error, (retry_after if retry_after <= self._retry_after_cap else None)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of base * 2^(attempt-1)."""
        ceiling = min(self._backoff_max, self._backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    # -- lifecycle --

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- helpers for the sources -----------------------------------------------------------------------


def http_status_error(source: str, status: int, *, key_hint: str, base_url_var: str) -> SourceError:
    """The error for an HTTP error status whose body said nothing more useful."""
    if status in (401, 403):
        return TerminalSourceError(source, f"request refused (HTTP {status}); {key_hint}", status=status)
    if status == 404:
        return TerminalSourceError(source, f"endpoint not found (HTTP 404); check {base_url_var}",
                                   status=status)
    if status in (408, 425, 429) or status >= 500:
        return TransientSourceError(source, f"HTTP {status}; retry later", status=status,
                                    retry_after=60.0 if status == 429 else None)
    return TerminalSourceError(source, f"request refused (HTTP {status})", status=status)


def fetch_pages(source: str, limits: Sequence[int], fetch_one: Callable[[int, int], tuple[RawPage, int]], *,
                capped: bool = False) -> list[RawPage]:
    """Pages 1..n, page i asking for ``limits[i-1]`` coins; ``fetch_one(i, limit)`` returns the page and
    how many coins it holds. A short page is the last one. A failed first page raises; a later failure
    keeps the pages already fetched (a partial cycle beats none). ``capped``: ``limits`` is a safety
    limit, not the plan, so running out of it is worth a warning."""
    pages: list[RawPage] = []
    total = None if capped else len(limits)
    try:
        for number, limit in enumerate(limits, start=1):
            try:
                raw, count = fetch_one(number, limit)
            except SourceError as exc:
                if not pages:
                    raise
                logger.warning("%s: page %d failed, keeping the %d page(s) already fetched: %s",
                               source, number, len(pages), exc)
                return pages
            pages.append(raw)
            progress.page_fetched(source, number, total)
            if count < limit:
                return pages
    finally:
        progress.walk_ended(source)
    if capped:
        logger.warning("%s: stopped after %d pages (safety limit); later coins are not collected",
                       source, len(limits))
    return pages


def _transport_error(source: str, host: str, exc: httpx.HTTPError, tried: str) -> SourceError:
    """An httpx exception as a source error that says what failed and what to do."""
    if isinstance(exc, httpx.TimeoutException):
        return TransientSourceError(
            source, f"no answer from {host} in time ({type(exc).__name__}) {tried}; the service is slow "
                    "or overloaded: retry later or raise CRYPTOVIZ_HTTP_TIMEOUT")
    if isinstance(exc, httpx.ConnectError):
        return TransientSourceError(
            source, f"cannot reach {host} ({exc}) {tried}; check the network connection and the source's "
                    "base URL setting")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return TerminalSourceError(
            source, f"invalid URL for {host} ({exc}); check the source's CRYPTOVIZ_*_BASE_URL setting")
    return TransientSourceError(
        source, f"request to {host} failed ({type(exc).__name__}: {exc}) {tried}; retry later")


def _reason(error: SourceError) -> str:
    return str(error).removeprefix(f"{error.source}: ")
