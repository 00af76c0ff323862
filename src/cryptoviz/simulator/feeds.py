"""The simulator's websocket feeds: Binance-, Coinbase- and Kraken-shaped market data on one port of 127.0.0.1.

Paths (``ws://127.0.0.1:<port>``):

* ``/binance/stream?streams=!miniTicker@arr`` (combined stream), ``/binance/ws/!miniTicker@arr`` (raw), and
  ``/binance/ws`` with ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` requests; more than 5
  client messages in a second closes the connection (1008), as Binance does;
* ``/coinbase``: Advanced Trade's ``ticker_batch`` (or ``ticker``) and ``heartbeats`` channels, every message
  numbered by ``sequence_num``; no subscription within ``subscribe_timeout`` (5 s) closes the connection;
  an unknown product is answered with ``{"type": "error", ...}``; ``-USDC`` products answer with the
  ``-USD`` data (``USDT-USDC`` aside), as documented;
* ``/kraken/v2``: the v2 ``ticker`` channel (a status message on connecting, one acknowledgement per pair,
  ``Currency pair not supported`` for an unknown one, a snapshot, then updates; a heartbeat after a
  second without data).

Each tick (``tick_seconds``, 1 s by default) every subscribed pair gets an update, priced from the market's
random walk (the prices the REST routes serve) through the exchange's own small noise, in the pair's quote
asset (USDT and USDC at the stablecoins' simulated prices, BTC at bitcoin's, EUR at the fixed rate). The
exchanges list every coin against USD or USDT and the largest against USDC, BTC or EUR; a symbol two coins
share (``UNI``) is listed once, for the larger coin, and Polygon and Render are listed under their current
tickers (``POL``, ``RENDER``). Prices are computed once per market step and exchange, so a tick costs
little more than encoding its frames.

For load tests, ``max_pairs`` caps the pairs each exchange sends data for (its largest coins' pairs first;
Coinbase's ``-USDC`` aliases of the pairs kept stay listed) and ``on_tick(exchange, pairs, at)`` hears of
every data frame sent: the pairs it updated and a time no later than the frame's own timestamps (``at``,
epoch seconds).

Faults (see :mod:`cryptoviz.simulator.faults`): ``disconnect``, ``stall`` and ``server-close`` hit a
connection ``feed_fault_after`` seconds after it opened; ``sequence-gap`` (Coinbase), ``flood``,
``malformed`` and ``garbage`` hit ticks. Every draw comes from the seed, the exchange and the connection's
number.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from cryptoviz.simulator.coins import CoinSpec
from cryptoviz.simulator.faults import CONNECTION_FAULTS, Faults
from cryptoviz.simulator.market import FIAT_PER_USD, PRICE_NOISE, Market, TickerRow

logger = logging.getLogger(__name__)

EXCHANGES = ("binance", "coinbase", "kraken")
PATHS = {"binance": "/binance", "coinbase": "/coinbase", "kraken": "/kraken/v2"}
BINANCE_STREAM = "!miniTicker@arr"
BINANCE_MESSAGES_PER_SECOND = 5
SUBSCRIBE_TIMEOUT = 5.0
HEARTBEAT_SECONDS = 1.0
# Coins the exchanges list under a newer ticker than the simulated coin list's.
LISTED_AS = {"matic-network": "POL", "render-token": "RENDER"}
# Each exchange's share of a coin's volume (spread over the coin's pairs there).
VOLUME_SHARE = {"binance": 0.25, "coinbase": 0.08, "kraken": 0.04}
# Quote asset -> the coin whose price it is (USD and EUR: fixed).
QUOTE_COINS = {"USDT": "tether", "USDC": "usd-coin", "BTC": "bitcoin"}
MIN_PRICE = 1e-7  # an exchange lists no pair quoted below this (they relist such coins as 1000X)


@dataclass(frozen=True, slots=True)
class Listing:
    """One pair an exchange lists: its name there, the coin (index in the market's rows) and quote asset,
    and (Coinbase's ``-USDC`` products) the product whose data answers a subscription to it."""

    pair: str
    coin: int
    quote: str
    served_as: str | None = None


@dataclass(frozen=True, slots=True)
class Priced:
    """One pair's figures at one market step, in its quote asset."""

    pair: str
    coin: str  # CoinGecko id (the outlier fault)
    price: float
    open: float
    high: float
    low: float
    base_volume: float
    quote_volume: float


def _clean(symbol: str) -> bool:
    return 1 <= len(symbol) <= 12 and symbol.isascii() and symbol.isalnum() and symbol.upper() == symbol


def listings(coins: Sequence[CoinSpec], exchange: str) -> dict[str, Listing]:
    """What ``exchange`` lists of ``coins``, by pair name (deterministic from the coin list)."""
    found: dict[str, Listing] = {}
    seen: set[str] = set()
    ids = {coin.cg_id for coin in coins}
    rank = 0
    for index, coin in enumerate(coins):
        base = LISTED_AS.get(coin.cg_id, coin.symbol)
        if not _clean(base) or base in seen or coin.price < MIN_PRICE:
            continue
        seen.add(base)
        rank += 1
        for quote_asset, pair, served_as in _pairs(exchange, base, rank, coin.stable):
            if QUOTE_COINS.get(quote_asset, coin.cg_id) in ids and pair not in found:
                found[pair] = Listing(pair, index, quote_asset, served_as)
    return found


def _pairs(exchange: str, base: str, rank: int, stable: bool) -> Iterable[tuple[str, str, str | None]]:
    """(quote asset, pair name, served as) of one coin (``rank``: its place among the listed coins)."""
    if exchange == "binance":
        quotes = [q for q in ("USDT", "USDC") if q != base and not (stable and q == "USDC" and base != "FDUSD")]
        quotes += ["BTC"] if rank <= 100 and not stable and base != "BTC" else []
        return [(q, f"{base}{q}", None) for q in quotes]
    if exchange == "coinbase":
        out: list[tuple[str, str, str | None]] = [] if base == "USDC" else [("USD", f"{base}-USD", None)]
        if rank <= 30 and not stable:
            out.append(("USDT", f"{base}-USDT", None))
        if base == "USDT":
            out.append(("USDC", "USDT-USDC", None))
        elif base != "USDC":
            out.append(("USD", f"{base}-USDC", f"{base}-USD"))  # documented: -USDC answers with -USD data
        return out
    quotes = ["USD"]
    quotes += ["USDT"] if (rank <= 30 and not stable) or base == "USDC" else []
    quotes += ["USDC"] if rank <= 15 and not stable else []
    quotes += ["EUR"] if rank <= 20 and not stable else []
    return [(q, f"{base}/{q}", None) for q in quotes if q != base]


def decimal_text(value: float, significant: int = 8) -> str:
    """A decimal string as exchanges send them (``"67012.345"``, ``"0.000024513"``), never in exponent form."""
    if value == 0 or not math.isfinite(value):
        return "0"
    decimals = max(0, significant - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{min(decimals, 20)}f}"


def _round(value: float) -> float:
    return float(f"{value:.8g}")


def _iso_nanos(moment: datetime) -> str:
    """``2023-02-09T20:30:37.167359000Z``: Coinbase's envelope time."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _iso_micros(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Quiet(logging.LoggerAdapter[logging.Logger]):
    """The websocket server's log, its routine lines (a connection opened or closed) at debug level."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)


@dataclass(slots=True)
class _Counts:
    connections: int = 0
    ticks: int = 0
    frames: int = 0
    updates: int = 0  # pair updates sent in ticks (a tick updates every subscribed pair)
    faults: dict[str, int] = field(default_factory=dict)


class FeedServer:
    """The three feeds on one websocket server (``start``/``stop``; ``url`` once started).

    ``market`` gives the simulator's current market and ``lock`` guards it (the HTTP routes share both).
    """

    def __init__(self, market: Callable[[], Market], lock: threading.Lock, faults: Faults, seed: int = 0, *,
                 host: str = "127.0.0.1", port: int = 0, tick_seconds: float = 1.0,
                 subscribe_timeout: float = SUBSCRIBE_TIMEOUT, max_pairs: int | None = None,
                 on_tick: Callable[[str, list[str], float], None] | None = None) -> None:
        if tick_seconds <= 0:
            raise ValueError(f"tick_seconds must be positive, got {tick_seconds}")
        if max_pairs is not None and max_pairs < 1:
            raise ValueError(f"max_pairs must be at least 1, got {max_pairs}")
        self.host, self.port, self.faults, self.seed = host, port, faults, seed
        self.tick_seconds, self.subscribe_timeout = tick_seconds, subscribe_timeout
        self.max_pairs, self.on_tick = max_pairs, on_tick  # set before start(): read on each subscription
        self._market, self._market_lock = market, lock
        self._lock = threading.Lock()  # the caches and counts below
        self._listings: dict[str, dict[str, Listing]] = {}
        self._priced: dict[str, tuple[tuple[int, int], dict[str, Priced]]] = {}
        self._counts = {exchange: _Counts() for exchange in EXCHANGES}
        self._running: tuple[Server, threading.Thread] | None = None

    # --- lifecycle ---

    def start(self) -> FeedServer:
        if self._running is None:
            server = serve(self._handle, self.host, self.port, process_request=self._route, compression=None,
                           close_timeout=1, logger=_Quiet(logging.getLogger(f"{__name__}.server")))
            self.port = int(server.socket.getsockname()[1])
            thread = threading.Thread(target=server.serve_forever, name=f"cryptoviz-sim-feeds-{self.port}",
                                      daemon=True)
            thread.start()
            self._running = (server, thread)
        return self

    def stop(self) -> None:
        """Close every connection and the port (waits for the connections' handlers to end)."""
        running, self._running = self._running, None
        if running is not None:
            running[0].shutdown()
            running[1].join(timeout=5)

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` (raises ``RuntimeError`` before :meth:`start`)."""
        return f"ws://{self.host}:{self.port}" if self._running else _not_started()

    def urls(self) -> dict[str, str]:
        """Exchange -> the base URL a feed connects to (what ``<exchange>_ws_url`` is set to)."""
        return {exchange: f"{self.url}{PATHS[exchange]}" for exchange in EXCHANGES}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {exchange: {"connections": c.connections, "ticks": c.ticks, "frames": c.frames,
                               "updates": c.updates, "faults": dict(sorted(c.faults.items()))}
                    for exchange, c in self._counts.items()}

    def connected(self, exchange: str) -> int:
        """Count a new connection to ``exchange``; returns its number (1 for the first)."""
        with self._lock:
            counts = self._counts[exchange]
            counts.connections += 1
            return counts.connections

    def count(self, exchange: str, *, ticks: int = 0, frames: int = 0, updates: int = 0,
              fault: str | None = None) -> None:
        with self._lock:
            counts = self._counts[exchange]
            counts.ticks += ticks
            counts.frames += frames
            counts.updates += updates
            if fault is not None:
                counts.faults[fault] = counts.faults.get(fault, 0) + 1

    # --- what the exchanges list, and at what price ---

    def listings(self, exchange: str) -> dict[str, Listing]:
        with self._market_lock:
            coins = self._market().coins
        with self._lock:
            found = self._listings.get(exchange)
            if found is None:
                found = listings(coins, exchange)
                if self.max_pairs is not None:  # pairs with data of their own; aliases of those kept stay
                    kept = set([pair for pair, listed in found.items() if listed.served_as is None][:self.max_pairs])
                    found = {pair: listed for pair, listed in found.items() if (listed.served_as or pair) in kept}
                self._listings[exchange] = found
            return found

    def priced(self, exchange: str) -> dict[str, Priced]:
        """Every pair ``exchange`` lists, priced at the market's current step (computed once a step)."""
        listed = self.listings(exchange)
        with self._market_lock:
            market = self._market()
            market.step(datetime.now(UTC))
            key = (id(market), market.tick)
            with self._lock:
                cached = self._priced.get(exchange)
            if cached is not None and cached[0] == key:
                return cached[1]
            rows = market.tickers()
        priced = self._price(exchange, listed, rows, key[1])
        with self._lock:
            self._priced[exchange] = (key, priced)
        return priced

    def _price(self, exchange: str, listed: dict[str, Listing], rows: list[TickerRow], tick: int) -> dict[str, Priced]:
        by_id = {row.spec.cg_id: row for row in rows}
        pairs_per_coin: dict[int, int] = {}
        for listing in listed.values():
            pairs_per_coin[listing.coin] = pairs_per_coin.get(listing.coin, 0) + 1
        noise = random.Random(f"{self.seed}/feed/{exchange}/{tick}")
        out: dict[str, Priced] = {}
        for listing in listed.values():
            factor = 1 + noise.uniform(-PRICE_NOISE, PRICE_NOISE)
            row = rows[listing.coin]
            unit = _quote_price(listing.quote, by_id)  # USD per unit of the quote asset
            if unit is None or unit <= 0:
                continue
            share = VOLUME_SHARE[exchange] / pairs_per_coin[listing.coin]
            price = row.price * factor / unit
            base_volume = row.volume_24h * share / row.price
            out[listing.pair] = Priced(listing.pair, row.spec.cg_id, price, row.price_24h_ago / unit,
                                       max(row.high_24h / unit, price), min(row.low_24h / unit, price),
                                       base_volume, base_volume * price)
        return out

    # --- connections ---

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path in (PATHS["coinbase"], PATHS["kraken"]) or path.startswith(("/binance/ws", "/binance/stream")):
            return None
        return connection.respond(404, f"no such simulated feed: {path}\n")

    def _handle(self, connection: ServerConnection) -> None:
        split = urlsplit(connection.request.path if connection.request is not None else "/")
        session: _Session
        if split.path.startswith("/binance/"):
            session = _Binance(self, connection, split.path, parse_qs(split.query))
        elif split.path == PATHS["coinbase"]:
            session = _Coinbase(self, connection)
        else:
            session = _Kraken(self, connection)
        try:
            session.run()
        except ConnectionClosed:
            pass
        except Exception:  # a simulated exchange must never take the server down
            logger.exception("simulated %s feed failed", session.exchange)
            connection.close(1011, "simulator error")


def _not_started() -> NoReturn:
    raise RuntimeError("the feed server is not started")


def _quote_price(quote: str, by_id: dict[str, TickerRow]) -> float | None:
    if quote == "USD":
        return 1.0
    if quote == "EUR":
        return 1.0 / FIAT_PER_USD["eur"]
    row = by_id.get(QUOTE_COINS[quote])
    return row.price if row is not None else None


class _Session:
    """One connection: subscriptions, a tick every ``tick_seconds``, a beat every second, and the faults."""

    exchange = ""

    def __init__(self, server: FeedServer, connection: ServerConnection) -> None:
        self.server = server
        self.connection = connection
        self.faults = server.faults
        self.number = server.connected(self.exchange)
        self.rng = random.Random(f"{server.seed}/feed/{self.exchange}/{self.number}")
        self.fault = next((name for name in CONNECTION_FAULTS
                           if self.rng.random() < self.faults.probability(name, self.exchange)), None)
        self.opened = time.monotonic()
        self.ticks = 0
        self.pairs: list[str] = []  # what each tick updates, in order
        self.last_data = self.opened
        self.deadline: float | None = None  # close unless subscribed by then

    def run(self) -> None:
        self.on_open()
        tick = self.server.tick_seconds
        next_tick = self.opened + tick
        next_beat = self.opened + HEARTBEAT_SECONDS
        fault_at = self.opened + self.faults.feed_fault_after if self.fault else math.inf
        while True:
            now = time.monotonic()
            if now >= fault_at:
                self.inject()
                return
            if self.deadline is not None and now >= self.deadline:
                self.connection.close(1008, "subscribe timeout")
                return
            due = min(next_tick, next_beat, fault_at, self.deadline or math.inf)
            if due > now:
                try:
                    message = self.connection.recv(timeout=due - now)
                except TimeoutError:
                    continue
                self.on_message(message)
                continue
            if now >= next_tick:
                next_tick = max(next_tick + tick, now)
                if self.pairs:
                    self.tick()
            if now >= next_beat:
                next_beat = max(next_beat + HEARTBEAT_SECONDS, now)
                self.beat()

    def inject(self) -> None:
        """The connection fault, when its time has come."""
        assert self.fault is not None
        self.server.count(self.exchange, fault=self.fault)
        if self.fault == "disconnect":
            self.connection.close_socket()
        elif self.fault == "server-close":
            self.announce_close()
            self.connection.close(1001, "going away")
        else:  # stall: the connection stays open, silent, until the client gives up
            for _ in self.connection:
                pass

    def hit(self, name: str) -> bool:
        """Whether the frame fault ``name`` hits this tick (drawn every tick, hit or not)."""
        hit = self.rng.random() < self.faults.probability(name, self.exchange)
        if hit:
            self.server.count(self.exchange, fault=name)
        return hit

    def tick(self) -> None:
        self.ticks += 1
        at = time.time()  # before any timestamp the frames carry
        flood = self.hit("flood")
        malformed = self.hit("malformed")
        garbage = self.hit("garbage")
        gap = self.hit("sequence-gap")
        priced = self.server.priced(self.exchange)
        rows = [self.outlier(priced[pair]) for pair in self.pairs if pair in priced]
        copies = max(1, self.faults.flood_factor) if flood else 1
        for _ in range(copies):
            self.send(self.data(rows, gap))
            gap = False
        if malformed:
            self.send(self.data(self.broken(rows), False))
        if garbage:  # alternately a frame cut short and binary junk
            body = self.data(rows, False)
            cut = bool(self.ticks % 2)
            self.send(body[:max(1, len(body) // 2)] if cut else self.rng.randbytes(32), text=cut)
        self.last_data = time.monotonic()
        self.server.count(self.exchange, ticks=1, updates=len(rows))
        if self.server.on_tick is not None:
            self.server.on_tick(self.exchange, [row.pair for row in rows], at)

    def outlier(self, row: Priced) -> Priced:
        faults = self.faults
        if (faults.outlier_enabled and faults.outlier_source == self.exchange and row.coin == faults.outlier_coin
                and self.ticks >= faults.outlier_from_cycle):
            scale = faults.outlier_factor
            return Priced(row.pair, row.coin, row.price * scale, row.open * scale, row.high * scale,
                          row.low * scale, row.base_volume, row.quote_volume * scale)
        return row

    def broken(self, rows: list[Priced]) -> list[Any]:
        """A few items broken, kinds in turn: a price ``"n/a"``, a missing pair name, a bare string."""
        items: list[Any] = [self.item(row) for row in rows[:max(1, self.faults.malformed_items)]]
        for n, item in enumerate(items):
            kind = n % 3
            if kind == 0:
                item[self.price_key] = "n/a"
            elif kind == 1:
                item.pop(self.pair_key, None)
            else:
                items[n] = str(item.get(self.pair_key, "n/a"))
        return items

    def send(self, body: bytes, *, text: bool = True) -> None:
        self.connection.send(body.decode("utf-8", "replace") if text else body)
        self.server.count(self.exchange, frames=1)

    def subscribe(self, pairs: Iterable[str]) -> list[str]:
        """Add ``pairs`` to what each tick updates; returns the ones new to this connection."""
        known = set(self.pairs)
        new = [pair for pair in dict.fromkeys(pairs) if pair not in known]
        self.pairs.extend(new)
        self.deadline = None
        return new

    # --- what each exchange says ---

    price_key = "price"
    pair_key = "pair"

    def on_open(self) -> None:
        """What the exchange sends on connecting."""

    def on_message(self, message: str | bytes) -> None:
        """A message from the client."""

    def beat(self) -> None:
        """Once a second: a heartbeat, where the exchange sends one."""

    def announce_close(self) -> None:
        """What the exchange sends before it closes a connection."""

    def item(self, row: Priced) -> dict[str, Any]:
        raise NotImplementedError

    def data(self, rows: list[Any], gap: bool) -> bytes:
        raise NotImplementedError


def _json(message: str | bytes) -> Any:
    try:
        return orjson.loads(message)
    except orjson.JSONDecodeError:
        return None


class _Binance(_Session):
    exchange = "binance"
    price_key = "c"
    pair_key = "s"

    def __init__(self, server: FeedServer, connection: ServerConnection, path: str,
                 query: dict[str, list[str]]) -> None:
        super().__init__(server, connection)
        self.combined = path.startswith("/binance/stream")
        named = query.get("streams", [""])[0].split("/") if self.combined else [path.removeprefix("/binance/ws")]
        self.streams: list[str] = [unquote(s).strip("/") for s in named if s.strip("/")]
        self.sent: list[float] = []  # when the client's recent messages came (5 a second at most)

    def on_open(self) -> None:
        self.listen(self.streams)

    def listen(self, streams: list[str]) -> None:
        if BINANCE_STREAM in streams:
            self.subscribe(self.server.listings(self.exchange))

    def on_message(self, message: str | bytes) -> None:
        now = time.monotonic()
        self.sent = [at for at in self.sent if now - at < 1.0] + [now]
        if len(self.sent) > BINANCE_MESSAGES_PER_SECOND:
            self.connection.close(1008, "Too many messages")
            return
        request = _json(message)
        if not isinstance(request, dict):
            self.send(orjson.dumps({"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}))
            return
        method, ident = request.get("method"), request.get("id")
        params = [p for p in request.get("params") or [] if isinstance(p, str)]
        if method == "SUBSCRIBE":
            self.streams += [p for p in params if p not in self.streams]
            self.listen(params)
            self.send(orjson.dumps({"result": None, "id": ident}))
        elif method == "UNSUBSCRIBE":
            self.streams = [s for s in self.streams if s not in params]
            if BINANCE_STREAM in params:
                self.pairs = []
            self.send(orjson.dumps({"result": None, "id": ident}))
        elif method == "LIST_SUBSCRIPTIONS":
            self.send(orjson.dumps({"result": self.streams, "id": ident}))
        else:
            self.send(orjson.dumps({"code": 2, "msg": f"Invalid request: unknown variant `{method}`, expected one of "
                                                      "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, "
                                                      "`SET_PROPERTY`, `GET_PROPERTY`", "id": ident}))

    def wrap(self, stream: str, payload: Any) -> bytes:
        return orjson.dumps({"stream": stream, "data": payload} if self.combined else payload)

    def announce_close(self) -> None:
        self.send(self.wrap("!serverShutdown", {"e": "serverShutdown", "E": _ms()}))

    def item(self, row: Priced) -> dict[str, Any]:
        return {"e": "24hrMiniTicker", "E": _ms(), "s": row.pair, "c": decimal_text(row.price),
                "o": decimal_text(row.open), "h": decimal_text(row.high), "l": decimal_text(row.low),
                "v": decimal_text(row.base_volume), "q": decimal_text(row.quote_volume)}

    def data(self, rows: list[Any], gap: bool) -> bytes:
        return self.wrap(BINANCE_STREAM, [self.item(row) if isinstance(row, Priced) else row for row in rows])


def _ms() -> int:
    return int(time.time() * 1000)


class _Coinbase(_Session):
    exchange = "coinbase"
    pair_key = "product_id"

    def __init__(self, server: FeedServer, connection: ServerConnection) -> None:
        super().__init__(server, connection)
        self.sequence = 0
        self.channel = "ticker_batch"
        self.heartbeats = False
        self.beats = 0
        self.requested: dict[str, list[str]] = {}

    def on_open(self) -> None:
        self.deadline = self.opened + self.server.subscribe_timeout

    def envelope(self, channel: str, events: list[Any], *, skip: int = 0) -> bytes:
        self.sequence += skip
        body = orjson.dumps({"channel": channel, "client_id": "", "timestamp": _iso_nanos(datetime.now(UTC)),
                             "sequence_num": self.sequence, "events": events})
        self.sequence += 1
        return body

    def on_message(self, message: str | bytes) -> None:
        request = _json(message)
        if not isinstance(request, dict) or request.get("type") not in ("subscribe", "unsubscribe"):
            self.send(orjson.dumps({"type": "error", "message": "Failed to parse request"}))
            return
        channel = request.get("channel")
        products = [p for p in request.get("product_ids") or [] if isinstance(p, str)]
        if channel == "heartbeats":
            self.heartbeats = request["type"] == "subscribe"
            self.deadline = None
        elif channel in ("ticker_batch", "ticker"):
            self.channel = str(channel)
            listed = self.server.listings(self.exchange)
            unknown = [p for p in products if p not in listed]
            if unknown:
                self.send(orjson.dumps({"type": "error", "message": "Failed to subscribe",
                                        "reason": f"{', '.join(unknown)} is not a valid product"}))
                return
            if request["type"] == "unsubscribe":
                self.pairs = [p for p in self.pairs if p not in {listed[q].served_as or q for q in products}]
            else:
                self.requested[self.channel] = self.requested.get(self.channel, []) + products
                new = self.subscribe(listed[p].served_as or p for p in products)
                self.send_subscriptions()
                priced = self.server.priced(self.exchange)
                if new:
                    self.send(self.tickers("snapshot", [priced[p] for p in new if p in priced], 0))
                return
        else:
            self.send(orjson.dumps({"type": "error", "message": f"Failed to subscribe: unknown channel {channel}"}))
            return
        self.send_subscriptions()

    def send_subscriptions(self) -> None:
        subscriptions = dict(self.requested)
        if self.heartbeats:
            subscriptions["heartbeats"] = ["heartbeats"]
        self.send(self.envelope("subscriptions", [{"subscriptions": subscriptions}]))

    def beat(self) -> None:
        if self.heartbeats:
            self.beats += 1
            now = datetime.now(UTC)
            self.send(self.envelope("heartbeats", [{
                "current_time": now.strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC ") + f"m=+{self.beats}.000000001",
                "heartbeat_counter": str(self.beats)}]))

    def item(self, row: Priced) -> dict[str, Any]:
        return {"type": "ticker", "product_id": row.pair, "price": decimal_text(row.price),
                "volume_24_h": decimal_text(row.base_volume), "low_24_h": decimal_text(row.low),
                "high_24_h": decimal_text(row.high), "low_52_w": decimal_text(row.low * 0.6),
                "high_52_w": decimal_text(row.high * 1.4),
                "price_percent_chg_24_h": decimal_text((row.price / row.open - 1) * 100 if row.open else 0.0)}

    def tickers(self, kind: str, rows: list[Any], skip: int) -> bytes:
        items = [self.item(row) if isinstance(row, Priced) else row for row in rows]
        return self.envelope(self.channel, [{"type": kind, "tickers": items}], skip=skip)

    def data(self, rows: list[Any], gap: bool) -> bytes:
        return self.tickers("update", rows, self.faults.sequence_skip if gap else 0)


class _Kraken(_Session):
    exchange = "kraken"
    price_key = "last"
    pair_key = "symbol"

    def on_open(self) -> None:
        self.send(orjson.dumps({"channel": "status", "type": "update", "data": [{
            "version": "2.0.0", "system": "online", "api_version": "v2", "connection_id": 8_000_000 + self.number}]}))

    def on_message(self, message: str | bytes) -> None:
        received = _iso_micros(datetime.now(UTC))
        request = _json(message)
        method = request.get("method") if isinstance(request, dict) else None
        ident = request.get("req_id") if isinstance(request, dict) else None
        ack = {"method": method, "time_in": received}
        if isinstance(ident, int):
            ack["req_id"] = ident
        if method == "ping":
            self.send(orjson.dumps({**ack, "method": "pong", "time_out": _iso_micros(datetime.now(UTC))}))
            return
        params = request.get("params") if isinstance(request, dict) else None
        if method not in ("subscribe", "unsubscribe") or not isinstance(params, dict) or (
                params.get("channel") != "ticker"):
            self.send(orjson.dumps({**ack, "error": "Malformed request", "success": False,
                                    "time_out": _iso_micros(datetime.now(UTC))}))
            return
        listed = self.server.listings(self.exchange)
        new: list[str] = []
        for symbol in [s for s in params.get("symbol") or [] if isinstance(s, str)]:
            known = symbol in listed
            if known and method == "subscribe":
                new += self.subscribe([symbol])
            elif known:
                self.pairs = [p for p in self.pairs if p != symbol]
            answer = ({**ack, "result": {"channel": "ticker", "snapshot": True, "symbol": symbol}, "success": True}
                      if known else {**ack, "error": f"Currency pair not supported {symbol}", "success": False,
                                     "symbol": symbol})
            self.send(orjson.dumps({**answer, "time_out": _iso_micros(datetime.now(UTC))}))
        priced = self.server.priced(self.exchange)
        if new:
            self.send(orjson.dumps({"channel": "ticker", "type": "snapshot",
                                    "data": [self.item(priced[p]) for p in new if p in priced]}))

    def beat(self) -> None:
        if self.pairs and time.monotonic() - self.last_data >= HEARTBEAT_SECONDS:
            self.send(orjson.dumps({"channel": "heartbeat"}))

    def item(self, row: Priced) -> dict[str, Any]:
        spread = row.price * 0.0001
        return {"symbol": row.pair, "bid": _round(row.price - spread), "bid_qty": _round(row.base_volume / 5000),
                "ask": _round(row.price + spread), "ask_qty": _round(row.base_volume / 4000), "last": _round(row.price),
                "volume": _round(row.base_volume), "vwap": _round((row.open + row.price) / 2), "low": _round(row.low),
                "high": _round(row.high), "change": _round(row.price - row.open),
                "change_pct": round((row.price / row.open - 1) * 100, 2) if row.open else 0.0,
                "timestamp": _iso_micros(datetime.now(UTC))}

    def data(self, rows: list[Any], gap: bool) -> bytes:
        items = [self.item(row) if isinstance(row, Priced) else row for row in rows]
        return orjson.dumps({"channel": "ticker", "type": "update", "data": items})
