"""The shared base of the exchanges' websocket feeds: one connection on a background thread.

:class:`WebSocketFeed` is a :class:`~cryptoviz.sources.base.PushSource`. Its thread connects (within
``open_timeout``), sends the subscription messages the exchange's module gives, and receives with a
timeout. Every frame counts as activity (heartbeats too); the module's ``classify`` says what a frame is:

* ``data``: queued as a ``RawPage(source, body, FRAME, fetched_at=receive time)`` until the collector takes
  it (:meth:`WebSocketFeed.take_frames`). The queue is bounded (frames and bytes): when it is full the
  oldest frame goes and is counted in ``dropped`` (the collector keeps the latest quote per pair, so the
  oldest frame is the least missed);
* ``heartbeat`` and ``control`` (acknowledgements, status): activity only;
* ``error``: the exchange refused something (a subscription); logged once per distinct message and kept
  in ``status().last_error``;
* ``reconnect``: the exchange announces that it will close (Binance's ``serverShutdown``): a new
  connection is opened at once.

A frame that carries a sequence number (Coinbase's ``sequence_num``) is checked against the one before it on
the same connection: a jump counts the numbers skipped in ``gaps``.

The connection is opened again after a close or an error, with exponential backoff and jitter (1 s, then up
to 60 s; a connection that lived long enough starts the backoff again), and never faster than the source's
:class:`~cryptoviz.sources.spec.RequestBudget` of connection attempts allows (a token bucket: ``burst`` plus
a minute's ``per_minute`` stays within the exchange's documented window). A connection silent for
``stall_after`` seconds is given up (a *stall*, with one warning), and one older than ``max_age`` is
replaced before the exchange's own limit closes it (a *rotation*). The client sends at most
``messages_per_second`` messages. A handshake refused with HTTP 451 (unavailable in this region) or 403
switches the feed off with one warning naming the exchange and what to do; the other sources go on.

Exchanges name a few assets their own way; :data:`ASSET_ALIASES` maps them to the usual symbol (Kraken's
``XBT`` is ``BTC``, ``XDG`` is ``DOGE``) wherever a pair is read or written.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from cryptoviz.models import ParseResult, SourceQuote
from cryptoviz.sources.base import (
    FRAME,
    MAX_SOURCE_ID,
    MAX_SYMBOL,
    FeedStatus,
    ParseFn,
    RawPage,
    checked_text,
    printable,
)
from cryptoviz.sources.fields import ItemRejected, got
from cryptoviz.sources.http import RateLimiter, parse_retry_after
from cryptoviz.sources.spec import RequestBudget
from cryptoviz.timeutil import utc_now

if TYPE_CHECKING:
    from cryptoviz.config import Settings
    from cryptoviz.sources.http import HttpClient

logger = logging.getLogger(__name__)

# Exchange-specific asset codes -> the usual symbol.
ASSET_ALIASES: dict[str, str] = {"XBT": "BTC", "XDG": "DOGE"}
# Handshake statuses that mean "not from here": the feed is switched off instead of retried.
REFUSED_STATUSES: dict[int, str] = {
    451: "unavailable for legal reasons: the exchange does not serve this country or region",
    403: "forbidden: the exchange refuses connections from this network or region",
}
# Distinct error messages remembered (each is logged as a warning once); more are logged each time.
MAX_ERRORS_REMEMBERED = 100
_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def canonical_asset(code: str) -> str:
    """An exchange's asset code as the usual symbol: upper case, aliases resolved (``xbt`` -> ``BTC``)."""
    upper = code.strip().upper()
    return ASSET_ALIASES.get(upper, upper)


# --- what a frame is ---------------------------------------------------------------------------------


class FrameKind(StrEnum):
    DATA = "data"
    HEARTBEAT = "heartbeat"
    CONTROL = "control"
    ERROR = "error"
    RECONNECT = "reconnect"


@dataclass(frozen=True, slots=True)
class Classified:
    """What one frame is (an exchange module's ``classify``): its kind, what an error or a control frame
    says, and its sequence number when the exchange numbers its frames."""

    kind: FrameKind
    detail: str = ""
    sequence: int | None = None


DATA = Classified(FrameKind.DATA)
HEARTBEAT = Classified(FrameKind.HEARTBEAT)
CONTROL = Classified(FrameKind.CONTROL)
NOT_JSON = object()


def decode(body: bytes) -> Any:
    """A frame's JSON value, or :data:`NOT_JSON` (classifying never raises: such a frame is data, and its
    parser says what is wrong with it)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return NOT_JSON


def sequence_number(value: Any) -> int | None:
    """A non-negative integer sequence number, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


# --- reading exchange items (shared by the exchanges' parsers) ----------------------------------------


def read_decimal(obj: dict[str, Any], name: str, *, required: bool = False) -> float | None:
    """A number sent as a JSON number or as a decimal string (``"0.0025"``); null or absent -> None (or a
    ``missing_field`` rejection when ``required``). ``NaN``, infinities, ``1_000`` and other text that
    is not a plain decimal reject the item."""
    value = obj.get(name)
    if value is None:
        if required:
            raise ItemRejected(name, "missing_field")
        return None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = float(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            raise ItemRejected(name, "not_a_number", "too large for a float") from None
    else:
        raise ItemRejected(name, "not_a_number", got(value))
    if not math.isfinite(number):
        raise ItemRejected(name, "not_a_number", f"not finite: {value!r:.40}")
    return number


def read_epoch_ms(obj: dict[str, Any], name: str) -> datetime | None:
    """Milliseconds since the epoch (Binance's event time) as a UTC time; absent -> None."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ItemRejected(name, "bad_timestamp", got(value))
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise ItemRejected(name, "bad_timestamp", f"out of range: {value}") from None


def read_pair(obj: dict[str, Any], name: str) -> str:
    """The exchange's name of a pair (``BTCUSDT``, ``BTC-USD``, ``BTC/USD``): a non-blank string that the
    store can keep as a source id."""
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ItemRejected(name, "missing_field" if value is None else "not_a_string",
                           "" if value is None else got(value))
    return checked_text(value.strip(), name, MAX_SOURCE_ID, ItemRejected)


def split_pair(pair: str, separator: str, name: str) -> tuple[str, str]:
    """``BTC-USD`` -> ``("BTC", "USD")`` (aliases resolved); anything else rejects the item (``bad_pair``)."""
    base, sep, quote = pair.partition(separator)
    if not sep or not base.strip() or not quote.strip() or separator in quote:
        raise ItemRejected(name, "bad_pair", f"expected BASE{separator}QUOTE, got {pair!r:.40}")
    return asset(base, name), asset(quote, name)


def asset(code: str, name: str) -> str:
    """One side of a pair as a symbol the store can keep."""
    return checked_text(canonical_asset(code), name, MAX_SYMBOL, ItemRejected)


@dataclass(frozen=True, slots=True)
class PairTicker:
    """One pair's figures as an exchange reports them (volumes: quote asset and base asset)."""

    pair: str
    base: str
    quote: str
    price: float | None
    quote_volume: float | None = None
    base_volume: float | None = None
    change_24h: float | None = None
    last_updated: datetime | None = None


def pair_quote(source: str, ticker: PairTicker, collected_at: datetime) -> SourceQuote:
    """A pair's figures as a quote: ``source_id`` the exchange's pair name, ``symbol`` the base asset,
    ``currency`` the quote asset in lower case (the collector maps pairs to coins and converts stablecoin
    quotes); no name, slug, rank, market cap or supply (an exchange knows none of them)."""
    return SourceQuote(
        source=source, source_id=ticker.pair, symbol=ticker.base, name="", slug=None, rank=None,
        price=ticker.price, market_cap=None, volume_24h=ticker.quote_volume, change_1h=None,
        change_24h=ticker.change_24h, change_7d=None, circulating_supply=None, total_supply=None,
        max_supply=None, last_updated=ticker.last_updated, collected_at=collected_at,
        currency=ticker.quote.lower(), base_volume_24h=ticker.base_volume,
    )


def pair_label(key: str) -> Callable[[Any, int], str]:
    """The rejection label of an item: its pair (``item[key]``), else its position."""
    def label(item: Any, index: int) -> str:
        value = item.get(key) if isinstance(item, dict) else None
        return printable(value.strip())[:MAX_SOURCE_ID] if isinstance(value, str) and value.strip() else f"item {index}"
    return label


def pair_list(values: Iterable[str] | None, default: Sequence[str], separator: str, source: str) -> list[str]:
    """The pairs a feed subscribes to: ``values`` (a setting; ``None``: ``default``), upper case with aliases
    resolved and duplicates removed. A value that is not ``BASE<separator>QUOTE`` is skipped with a warning."""
    chosen: list[str] = []
    for value in default if values is None else values:
        base, sep, quote = value.strip().upper().partition(separator)
        if not sep or not base or not quote or separator in quote:
            logger.warning("%s: %r is not a pair like BTC%sUSD; skipped", source, value, separator)
            continue
        pair = f"{canonical_asset(base)}{separator}{canonical_asset(quote)}"
        if pair not in chosen:
            chosen.append(pair)
    return chosen


# --- the connection ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """How a feed treats its connection; each exchange module sets its own (tests shorten them).

    ``stall_after``: seconds without any frame before the connection is given up. ``max_age``: seconds after
    which a connection is replaced (``None``: never). ``backoff_min``/``backoff_max``: the reconnection
    delays; ``backoff_reset_after``: a connection that lived this long starts the backoff again.
    ``messages_per_second``: what the client may send. ``subscribe_within``: the subscriptions must all be
    sent this soon after connecting (the exchange closes the connection otherwise). ``queue_frames`` and
    ``queue_bytes`` bound the frames waiting for the collector; ``max_frame_bytes`` one frame.
    """

    # the connection
    stall_after: float = 30.0
    max_age: float | None = None
    open_timeout: float = 10.0
    close_timeout: float = 1.0
    poll: float = 0.25  # how often a receiving thread looks up (stop, stall, age)
    # reconnecting
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    backoff_reset_after: float = 30.0
    # what the client sends
    messages_per_second: float = 4.0
    subscribe_within: float | None = None
    # what waits for the collector
    queue_frames: int = 2_000
    queue_bytes: int = 64 * 2**20
    max_frame_bytes: int = 8 * 2**20


def backoff_delay(attempt: int, limits: FeedLimits, rng: random.Random) -> float:
    """The wait before connection attempt ``attempt + 1`` (``attempt`` >= 1 failures so far): doubling
    from ``backoff_min`` up to ``backoff_max``, drawn in the upper half of that (jitter), never below
    ``backoff_min``."""
    ceiling = min(limits.backoff_max, limits.backoff_min * 2.0 ** min(max(attempt, 1) - 1, 30))
    return rng.uniform(max(limits.backoff_min, ceiling / 2), ceiling)


class _Ended:
    """Why a connection ended, and whether the next one may open at once."""

    def __init__(self, reason: str, *, at_once: bool = False, problem: bool = True, stall: bool = False) -> None:
        self.reason = reason
        self.at_once = at_once
        self.problem = problem
        self.stall = stall


@dataclass(frozen=True, slots=True)
class Exchange:
    """What a feed needs from an exchange's module: its name, its budget of connection attempts, its
    limits, and its pure pieces (the URL and the subscription messages for the settings, what a frame is,
    and the parser of data frames)."""

    name: str
    budget: RequestBudget
    limits: FeedLimits
    url: Callable[[Settings], str]
    classify: Callable[[bytes], Classified]
    parse: ParseFn
    subscriptions: Callable[[Settings], list[str]] = field(default=lambda _settings: [])

    def build(self, settings: Settings, http: HttpClient | None = None) -> WebSocketFeed:
        """The exchange's push source (what its ``SourceSpec.build`` is)."""
        return WebSocketFeed(self, settings, http)


class WebSocketFeed:
    """A push source over one websocket connection to ``exchange`` (see the module docstring).

    ``limits`` replaces the exchange's (tests shorten them); ``rng`` draws the backoff jitter.
    """

    def __init__(self, exchange: Exchange, settings: Settings, http: HttpClient | None = None, *,
                 limits: FeedLimits | None = None, rng: random.Random | None = None) -> None:
        self.exchange = exchange
        self.name = exchange.name
        self.limits = limits or exchange.limits
        self._settings = settings
        self._rng = rng or random.Random()  # jitter only, not cryptography
        # connection attempts: the budget's token bucket, kept in the HttpClient beside the other sources'
        budget = exchange.budget
        self._attempts = (http.set_rate_limit(self.name, budget.per_minute, budget.burst)
                          if http is not None else RateLimiter(budget.per_minute, budget.burst))
        self._lock = threading.Lock()
        self._state = FeedStatus()
        self._queue: deque[RawPage] = deque()
        self._queued_bytes = 0
        self._errors_seen: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0  # consecutive failed or short-lived connections (the backoff's attempt)
        self._stalled = False  # the last connection ended in a stall (one warning per run of stalls)
        self._last_sequence: int | None = None
        self._gap_logged = False
        self._url = ""
        self.subscriptions = exchange.subscriptions(settings)
        within, rate = self.limits.subscribe_within, self.limits.messages_per_second
        if within is not None and (len(self.subscriptions) - 1) / rate >= within:
            raise ValueError(f"{self.name}: {len(self.subscriptions)} subscription messages cannot all be sent "
                             f"within {within:g} s at {rate:g} a second")

    def parse(self, page: RawPage) -> ParseResult:
        """Pure: the exchange's parser (each pair comes in its own quote asset)."""
        return self.exchange.parse(page.body, page.fetched_at, self._settings.vs_currency)

    # --- PushSource ---

    def start(self) -> None:
        """Open the connection in the background; returns at once. A feed switched off stays off."""
        thread = self._thread
        if thread is not None and thread.is_alive() and self._stop.is_set():
            thread.join(self.limits.open_timeout + self.limits.close_timeout)  # a stop still under way
        with self._lock:
            if (self._thread is not None and self._thread.is_alive()) or self._state.disabled:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"cryptoviz-{self.name}-feed", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the connection and end the thread (waits at most ``timeout`` seconds)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def take_frames(self) -> list[RawPage]:
        with self._lock:
            frames = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
        return frames

    def status(self) -> FeedStatus:
        with self._lock:
            return replace(self._state)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # --- the thread ---

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            if not self._await_attempt():
                break
            connection = self._connect()
            if connection is None:
                if self._state.disabled or not self._wait(self._next_delay()):
                    break
                continue
            opened = time.monotonic()
            with self._lock:
                self._state.connected = True
                self._state.since = utc_now()
                if not first:
                    self._state.reconnects += 1
            first = False
            self._last_sequence, self._gap_logged = None, False
            try:
                session = self._session(connection, opened)
            finally:
                with self._lock:
                    self._state.connected = False
                    self._state.since = None
                try:
                    connection.close()
                except Exception:  # noqa: BLE001 - the connection is going anyway
                    logger.debug("%s: closing the connection failed", self.name, exc_info=True)
            if session.reason == "stop":
                break
            lived = time.monotonic() - opened
            healthy = lived >= self.limits.backoff_reset_after and not session.stall
            self._failures = 0 if lived >= self.limits.backoff_reset_after or session.at_once else self._failures + 1
            if healthy or session.at_once:
                self._stalled = False  # the next stall is news again
            if session.problem:
                with self._lock:
                    self._state.last_error = session.reason
            if session.at_once:
                continue
            delay = self._next_delay()
            level = logging.DEBUG if self._failures > 1 else logging.INFO
            logger.log(level, "%s: %s; reconnecting in %.1f s", self.name, session.reason, delay)
            if not self._wait(delay):
                break

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; False when stopped."""
        return not self._stop.wait(max(0.0, seconds))

    def _next_delay(self) -> float:
        return backoff_delay(max(self._failures, 1), self.limits, self._rng)

    def _await_attempt(self) -> bool:
        """Wait for the budget to allow a connection attempt; False when stopped meanwhile."""
        while (wait := self._attempts.try_acquire()) > 0.0:
            if not self._wait(wait):
                return False
        return not self._stop.is_set()

    def _connect(self) -> ClientConnection | None:
        """A new connection, or None (the failure recorded; the feed switched off for 451/403)."""
        url = self._url = self.exchange.url(self._settings)
        try:
            return connect(url, legacy=True, open_timeout=self.limits.open_timeout,
                           close_timeout=self.limits.close_timeout, max_size=self.limits.max_frame_bytes,
                           user_agent_header="cryptoviz")
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in REFUSED_STATUSES:
                self._disable(status)
                return None
            retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
            self._failed(f"the handshake was refused with HTTP {status}", retry_after)
        except (InvalidURI, ValueError) as exc:
            self._disable_for(f"invalid URL {url!r} ({exc}); check the {self.name}_ws_url setting "
                              f"(CRYPTOVIZ_{self.name.upper()}_WS_URL)")
        except Exception as exc:  # noqa: BLE001 - refused, unreachable, timed out, a broken handshake: retried
            self._failed(f"cannot connect to {url} ({type(exc).__name__}: {exc})")
        return None

    def _failed(self, what: str, retry_after: float | None = None) -> None:
        self._failures += 1
        with self._lock:
            self._state.last_error = what
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        logger.log(level, "%s: %s; retrying with backoff", self.name, what)
        if retry_after:
            self._wait(min(retry_after, self.limits.backoff_max))

    def _disable(self, status: int) -> None:
        others = [name for name in self._settings.enabled_sources() if name != self.name]
        example = f" (e.g. CRYPTOVIZ_SOURCES={','.join(others)})" if others else ""
        self._disable_for(f"the exchange refused the connection with HTTP {status} ({REFUSED_STATUSES[status]}); "
                          f"the {self.name} feed is switched off and the other sources go on: set "
                          f"CRYPTOVIZ_SOURCES without {self.name}{example}", f"HTTP {status}")

    def _disable_for(self, why: str, short: str | None = None) -> None:
        with self._lock:
            self._state.disabled = short or why
            self._state.last_error = why
        logger.warning("%s: %s", self.name, why)
        self._stop.set()

    def _session(self, connection: ClientConnection, opened: float) -> _Ended:
        """Subscribe, then receive until the connection ends, stalls, ages out or the feed stops."""
        limits = self.limits
        try:
            self._subscribe(connection)
        except ConnectionClosed as exc:
            return _Ended(f"the connection closed while subscribing ({_closed(exc)})")
        except OSError as exc:
            return _Ended(f"the connection failed while subscribing ({exc})")
        if self._stop.is_set():
            return _Ended("stop", problem=False)
        last = time.monotonic()
        while True:
            if self._stop.is_set():
                return _Ended("stop", problem=False)
            now = time.monotonic()
            if limits.max_age is not None and now - opened >= limits.max_age:
                logger.info("%s: the connection is %.0f s old; opening a new one before the exchange closes it",
                            self.name, now - opened)
                return _Ended("rotation", at_once=True, problem=False)
            idle = now - last
            if idle >= limits.stall_after:
                return self._stall(idle)
            wait = min(limits.poll, limits.stall_after - idle)
            if limits.max_age is not None:
                wait = min(wait, opened + limits.max_age - now)
            try:
                message = connection.recv(timeout=max(wait, 0.0), decode=False)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                return _Ended(f"the exchange closed the connection ({_closed(exc)})")
            except OSError as exc:
                return _Ended(f"the connection failed ({exc})")
            last = time.monotonic()
            ended = self._on_frame(message, utc_now())
            if ended is not None:
                return ended

    def _subscribe(self, connection: ClientConnection) -> None:
        spacing = 1.0 / self.limits.messages_per_second
        for number, message in enumerate(self.subscriptions):
            if number and not self._wait(spacing):
                return
            connection.send(message)

    def _stall(self, idle: float) -> _Ended:
        with self._lock:
            self._state.stalls += 1
        what = f"no frame for {idle:.0f} s: the connection is given up as stalled"
        # one warning for a run of stalls; the next ones, until a connection lives well again, at info level
        logger.log(logging.INFO if self._stalled else logging.WARNING, "%s: %s; reconnecting", self.name, what)
        self._stalled = True
        return _Ended(what, stall=True)

    def _on_frame(self, body: bytes, received: datetime) -> _Ended | None:
        try:
            what = self.exchange.classify(body)
        except Exception:  # noqa: BLE001 - classifying is pure and should never fail; if it does, keep the frame
            logger.debug("%s: classifying a frame failed", self.name, exc_info=True)
            what = DATA
        with self._lock:
            self._state.last_message_at = received
        if what.sequence is not None:
            self._check_sequence(what.sequence)
        if what.kind is FrameKind.DATA:
            self._enqueue(RawPage(self.name, body, FRAME, received, url=self._url))
        elif what.kind is FrameKind.ERROR:
            self._exchange_error(what.detail or printable(body[:200].decode("utf-8", "replace")))
        elif what.kind is FrameKind.RECONNECT:
            logger.info("%s: the exchange announces a shutdown (%s); reconnecting now", self.name, what.detail)
            return _Ended(f"the exchange announced a shutdown ({what.detail})", at_once=True, problem=False)
        return None

    def _check_sequence(self, sequence: int) -> None:
        last = self._last_sequence
        if last is not None and sequence > last + 1:
            missed = sequence - last - 1
            with self._lock:
                self._state.gaps += missed
            # the first gap of a connection at info level, the next ones (counted all the same) at debug level
            logger.log(logging.DEBUG if self._gap_logged else logging.INFO,
                       "%s: sequence gap: %d frame(s) numbered %d to %d never arrived", self.name, missed,
                       last + 1, sequence - 1)
            self._gap_logged = True
        if last is None or sequence > last:
            self._last_sequence = sequence  # a lower number arrived late: ignored

    def _enqueue(self, page: RawPage) -> None:
        limits = self.limits
        size = len(page.body)
        with self._lock:
            while self._queue and (len(self._queue) >= limits.queue_frames
                                   or self._queued_bytes + size > limits.queue_bytes):
                self._queued_bytes -= len(self._queue.popleft().body)
                self._state.dropped += 1
            self._queue.append(page)
            self._queued_bytes += size

    def _exchange_error(self, detail: str) -> None:
        with self._lock:
            self._state.last_error = f"the exchange says: {detail}"
            first = detail not in self._errors_seen
            if len(self._errors_seen) < MAX_ERRORS_REMEMBERED:
                self._errors_seen.add(detail)
        logger.log(logging.WARNING if first else logging.DEBUG, "%s: the exchange says: %s", self.name, detail)


def _closed(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "no close frame: the connection dropped"
    return f"code {frame.code}{': ' + frame.reason if frame.reason else ''}"
