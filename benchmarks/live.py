"""The ``live`` section: exchange tick -> SSE client freshness, with many clients on a real CryptoViz job.

Three processes, so that none of them measures itself:

* this one runs the market simulator (:mod:`cryptoviz.simulator`): the Binance, Coinbase and Kraken feeds push
  ``rate`` pair updates a second over ``pairs`` pairs (each exchange lists its largest coins' pairs first, a
  tick every ``pairs / rate`` seconds, the market stepping at every tick so each tick carries a new price),
  and the CoinGecko API the aggregator reads; it notes every tick (exchange, pairs, time before the frame's
  own timestamps);
* the server (``python -m benchmarks.live serve``) is the job ``cryptoviz run --serve`` runs: SQLite, the
  in-process bus, CoinGecko every minute plus the three feeds, live updates every second
  (``CRYPTOVIZ_STREAM_INTERVAL``), the API in the same process, its stream woken after each write. It notes
  which exchange quotes (and their ``last_updated``, the tick's time inside the frame) each published
  snapshot holds: a read-only wrapper around the collector's publisher;
* the clients (``python -m benchmarks.live clients``): ``clients`` raw-socket SSE connections to
  ``/api/stream`` (:func:`benchmarks.sse_clients.open_clients`) and ``GET /api/coins?limit=100`` at
  ``api_rate`` requests a second, each due at its time, round robin over 8 keep-alive connections (latency
  counts from when a request was due: a slow answer that holds up the next one on its connection counts in
  both), all in one event loop.

Freshness of a tick (exchange ``e``, pair ``p``, time ``T``) for one client: the first snapshot the job
published for the pair's coin whose ``e`` quote is at least as new as ``T`` holds the tick; the first frame
(delta or snapshot, in the stream's order) showing that snapshot of the coin, or a later one (a row is matched
to a published snapshot by its ``observed_at`` and price), shows the tick; the time the client received that
frame minus ``T`` is the freshness. Every tick of a coin the stream shows (the top 100 by market cap) on a
pair a snapshot uses (one quote per coin and exchange), for every client, in the measured window (the clients
listen 5 s longer, for the last ticks still on their way). A frame is read once however many clients receive
it: the hub's are numbered (``id:`` is its ``seq``); the per-client stream's are named after their newest
``observed_at``, and told apart by their content.

The same load runs against the per-client polling stream (``app.state.stream_mode = "per-client"``) as the
baseline, in the same run, after the hub.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from benchmarks.common import percentile, progress
from benchmarks.sse_clients import CLK_TCK, EVENT, ClientLog, JsonLinesProcess, open_clients

FRESHNESS_TARGET_MS = 1500.0
API_TARGET_MS = 100.0
STARVED_AFTER = 5.0  # seconds without a snapshot or delta
TAIL = 5.0  # seconds the clients listen after the window: its last ticks are still on their way
EXCHANGES = ("binance", "coinbase", "kraken")
AGGREGATOR = "coingecko"
API_PATH = "/api/coins?limit=100"
API_CONNECTIONS = 8
_ID = re.compile(rb"^id: (.+)$", re.MULTILINE)
_DATA = re.compile(rb"^data: (.*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Sizes:
    clients: int = 500
    rate: float = 2000.0  # pair updates a second over the three feeds
    pairs: int = 500  # over the three feeds, each exchange the same share
    coins: int = 200  # simulated coins (what CoinGecko lists; the simulator has 220 at most)
    seconds: float = 60.0  # measured window, hub
    baseline_seconds: float = 30.0  # measured window, per-client stream
    warmup: float = 10.0  # clients connected, before the window
    api_rate: float = 100.0


def _us(moment: datetime | str) -> int:
    """A time as integer microseconds since the epoch (the key shared by the server's notes and frames)."""
    value = datetime.fromisoformat(moment.replace("Z", "+00:00")) if isinstance(moment, str) else moment
    return round(value.timestamp() * 1_000_000)


# --- the server ------------------------------------------------------------------------------------------


Quote = tuple[str, str, float]  # exchange, pair, last_updated (epoch s)
Note = tuple[int, float, float, list[Quote]]  # observed_at (us), price, published at (epoch s), exchange quotes


class _NotingPublisher:
    """The collector's publisher, noting each snapshot's exchange quotes before passing it on."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.notes: dict[str, list[Note]] = defaultdict(list)  # coin -> its snapshots, in publishing order

    def publish(self, snapshots: Sequence[Any]) -> Any:
        now = time.time()
        for s in snapshots:
            quotes = [(v.source, v.source_id, v.last_updated.timestamp()) for v in s.sources
                      if v.source in EXCHANGES and v.last_updated is not None]
            if quotes:
                self.notes[s.coin_id].append((_us(s.observed_at), s.price, now, quotes))
        return self._inner.publish(snapshots)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _thread_names() -> dict[str, str]:
    return {str(t.native_id): t.name for t in threading.enumerate() if t.native_id is not None}


def _serve(args: argparse.Namespace) -> None:
    """The server process: ``cryptoviz run --serve``'s assembly on the settings given, until stdin closes."""
    from cryptoviz.api.app import create_app
    from cryptoviz.api.server import serve_in_thread
    from cryptoviz.config import load_settings
    from cryptoviz.runtime import Pipeline, fetch_intervals, make_sources, open_store

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(**json.loads(Path(args.settings).read_text(encoding="utf-8")))
    engine = open_store(settings)
    app = create_app(engine, settings)
    app.state.stream_mode = args.mode
    handle = serve_in_thread(app, host=settings.api_host, port=0)
    sources = make_sources(settings, unthrottled=True)
    intervals = fetch_intervals(settings, [s.name for s in sources], budgets=False)
    stop = threading.Event()
    lock = threading.Lock()

    def say(**values: Any) -> None:
        with lock:
            print(json.dumps(values), flush=True)

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    def name_threads() -> None:  # thread ids -> names, for the parent's CPU accounting
        while not stop.wait(2.0):
            say(threads=_thread_names())

    writes: list[float] = []  # when each batch was committed

    def on_write(written: int) -> None:
        writes.append(time.time())
        app.state.live.notify(written)

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    with Pipeline(settings, engine=engine, sources=sources, stop=stop, intervals=intervals, upkeep=True, live=True,
                  on_write=on_write) as pipeline:
        assert pipeline.collector is not None
        noting = _NotingPublisher(pipeline.collector.publisher)
        pipeline.collector.publisher = noting  # type: ignore[assignment]
        say(url=handle.url, pid=os.getpid(), threads=_thread_names())
        threading.Thread(target=name_threads, daemon=True).start()
        pipeline.run()
    live = pipeline.live
    handle.stop()
    Path(args.notes).write_bytes(orjson.dumps({"coins": noting.notes, "writes": writes}))
    stats = app.state.live.stats
    say(final=True, cycles=pipeline.cycles, stored=pipeline.stored,
        live_ticks=live.ticks if live else 0, live_published=live.published if live else 0,
        hub={k: v for k, v in vars(stats).items() if isinstance(v, int)})


# --- the clients -----------------------------------------------------------------------------------------


Rows = dict[str, tuple[int, float]]  # coin -> (observed_at us, price) in one frame


class _Frames:
    """What each distinct frame holds, read once: key -> (the hub's ``seq`` or None, rows)."""

    def __init__(self) -> None:
        self.content: dict[str, tuple[int | None, Rows]] = {}

    def read(self, key: str, data: bytes) -> None:
        if key not in self.content:
            body = orjson.loads(data)
            rows = {row["id"]: (_us(row["observed_at"]), row["price"]) for row in body.get("coins", [])}
            self.content[key] = (body.get("seq"), rows)


class _LiveLog(ClientLog):
    """One client: the key of each data frame it received, and when; events counted by kind."""

    frames: _Frames

    def __init__(self) -> None:
        super().__init__()
        self.received_frames: list[tuple[str, float]] = []  # (key, received)

    def note(self, frame: bytes, received: float) -> None:
        name = EVENT.search(frame)
        kind = name.group(1).decode() if name else ("comment" if frame.startswith(b":") else "other")
        self.events[kind] = self.events.get(kind, 0) + 1
        data = _DATA.search(frame)
        if kind not in ("snapshot", "delta") or data is None:
            return
        found = _ID.search(frame)
        ident = found.group(1).decode() if found else ""
        # the hub's frames are numbered (one content per number and kind); the per-client stream's are named
        # after their newest observed_at, which two reads a second apart can share: their content tells them apart
        key = f"{kind}:{ident}" if ident.isdigit() else f"{kind}:{ident}:{zlib.crc32(data.group(1)):x}"
        self.frames.read(key, data.group(1))
        self.received_frames.append((key, received))


async def _api_load(url: str, rate: float, since: float, until: float) -> list[tuple[float, float, float, int]]:
    """``GET /api/coins?limit=100`` every ``1/rate`` s from ``since`` to ``until``, round robin over a few
    keep-alive connections; (due, sent, answered, status) of each (status 0: failed)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {API_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    results: list[tuple[float, float, float, int]] = []
    count = int((until - since) * rate)

    async def connection(k: int) -> None:
        reader = writer = None
        for i in range(k, count, API_CONNECTIONS):
            due = since + i / rate
            await asyncio.sleep(max(0.0, due - time.time()))
            sent = time.time()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
                assert reader is not None
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if length is None:
                    raise ValueError("no content-length in the answer")
                await reader.readexactly(int(length.group(1)))
                results.append((due, sent, time.time(), status))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                results.append((due, sent, time.time(), 0))
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection(k) for k in range(API_CONNECTIONS)))
    return results


async def _clients_and_api(args: argparse.Namespace) -> dict[str, Any]:
    frames = _Frames()

    def make_log() -> _LiveLog:
        log = _LiveLog()
        log.frames = frames
        return log

    started = time.time()
    sse = asyncio.create_task(open_clients(args.url, args.clients, args.seconds, make_log=make_log))
    api = asyncio.create_task(_api_load(args.url, args.api_rate, started + args.api_from,
                                        started + args.seconds - TAIL))
    logs, answers = await asyncio.gather(sse, api)
    return {
        "started": started, "until": started + args.seconds,
        "frames": {key: [order, rows] for key, (order, rows) in frames.content.items()},
        "clients": [{"connected_at": log.connected_at, "closed_at": log.closed_at, "error": log.error,
                     "bytes": log.received, "events": log.events,
                     "frames": log.received_frames if isinstance(log, _LiveLog) else []} for log in logs],
        "api": answers,
    }


def _clients(args: argparse.Namespace) -> None:
    print(json.dumps({"url": args.url, "pid": os.getpid()}), flush=True)
    result = asyncio.run(_clients_and_api(args))
    Path(args.out).write_bytes(orjson.dumps(result))
    print(json.dumps({"done": True}), flush=True)


# --- CPU ---------------------------------------------------------------------------------------------------


def _ticks_of(path: Path) -> int:
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _threads(pid: int) -> dict[str, int]:
    """CPU ticks of each thread of ``pid`` now, by thread id."""
    out: dict[str, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        out[tid] = _ticks_of(Path(f"/proc/{pid}/task/{tid}/stat"))
    return out


def _waited(pid: int) -> float:
    """Seconds the threads of ``pid`` have spent runnable but waiting for a core (``schedstat``)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _machine() -> tuple[int, int]:
    """(busy, all) jiffies of every core since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class _CpuSample:
    at: float
    server: dict[str, int]
    clients: int
    parent: int
    machine: tuple[int, int]
    waited: tuple[float, float]  # server, clients: seconds runnable without a core


def _sample(server_pid: int, client_pid: int) -> _CpuSample:
    return _CpuSample(time.time(), _threads(server_pid), _ticks_of(Path(f"/proc/{client_pid}/stat")),
                      _ticks_of(Path(f"/proc/{os.getpid()}/stat")), _machine(),
                      (_waited(server_pid), _waited(client_pid)))


_NUMBERED = re.compile(r"[-_ ]?\d+$|_\d+_\d+$")


def _group(name: str) -> str:
    """A thread's name without its number, as a key (``source_0`` -> ``source``, ``api-8000`` -> ``api``,
    ``AnyIO worker thread`` -> ``anyio_worker_thread``, ``Thread-3 (recv_events)`` -> ``thread_recv_events``)."""
    name = _NUMBERED.sub("", re.sub(r"-\d+", "", name)) or name
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "other"


def _cpu_report(a: _CpuSample, b: _CpuSample, names: dict[str, str], prefix: str) -> dict[str, Any]:
    seconds = b.at - a.at
    pct = 100.0 / CLK_TCK / seconds
    by_group: Counter[str] = Counter()
    for tid, ticks in b.server.items():
        by_group[_group(names.get(tid, "other"))] += ticks - a.server.get(tid, 0)
    server = sum(by_group.values())
    busy, total = b.machine[0] - a.machine[0], b.machine[1] - a.machine[1]
    out: dict[str, Any] = {
        f"{prefix}cpu.server_pct": server * pct, f"{prefix}cpu.clients_pct": (b.clients - a.clients) * pct,
        f"{prefix}cpu.simulator_pct": (b.parent - a.parent) * pct,
        f"{prefix}cpu.machine_busy_pct": 100.0 * busy / total * (os.cpu_count() or 1) if total else math.nan,
    }
    # time the threads were ready to run but no core was free: the processes (and other jobs) starving each other
    out[f"{prefix}cpu.server_waited_pct"] = 100.0 * (b.waited[0] - a.waited[0]) / seconds
    out[f"{prefix}cpu.clients_waited_pct"] = 100.0 * (b.waited[1] - a.waited[1]) / seconds
    ours = server + (b.clients - a.clients) + (b.parent - a.parent)
    out[f"{prefix}cpu.others_pct"] = out[f"{prefix}cpu.machine_busy_pct"] - ours * pct  # other jobs on the machine
    for group, ticks in by_group.most_common(8):
        if ticks > 0:
            out[f"{prefix}cpu.server_threads.{group}_pct"] = ticks * pct
    out[f"{prefix}_server_cpu_s"] = server / CLK_TCK
    return out


# --- freshness ---------------------------------------------------------------------------------------------


@dataclass
class _Ticks:
    """Every data frame the feeds sent: (exchange, pairs, time)."""

    sent: list[tuple[str, list[str], float]] = field(default_factory=list)

    def __call__(self, exchange: str, pairs: list[str], at: float) -> None:
        self.sent.append((exchange, pairs, at))  # from the feeds' threads: list.append is atomic

    def between(self, since: float, until: float) -> Iterable[tuple[str, list[str], float]]:
        return (t for t in self.sent if since <= t[2] <= until)


def _covering(notes: list[Note]) -> dict[tuple[str, str], tuple[list[float], list[int]]]:
    """Per (exchange, pair) of one coin: the newest ``last_updated`` so far over its published snapshots and
    the snapshot's index (both rising), to find the first snapshot that holds a tick."""
    out: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
    for index, (_, _, _, quotes) in enumerate(notes):
        for exchange, pair, updated in quotes:
            newest, indexes = out.setdefault((exchange, pair), ([], []))
            if not newest or updated > newest[-1]:
                newest.append(updated)
                indexes.append(index)
    return out


class _Published:
    """Finds which published snapshot a row of the stream shows: the newest with the same ``observed_at`` and
    price, else the newest published before that ``observed_at``. Publishing order is not ``observed_at``
    order: a minute cycle publishes after the stream ticks that ran while it fetched."""

    def __init__(self, notes: dict[str, list[Note]]) -> None:
        self._exact: dict[str, dict[int, list[tuple[int, float]]]] = {}
        self._before: dict[str, tuple[list[int], list[int]]] = {}  # observed_at rising, newest index so far
        for coin, published in notes.items():
            exact = self._exact.setdefault(coin, {})
            for index, (observed, price, _, _) in enumerate(published):
                exact.setdefault(observed, []).append((index, price))
            times: list[int] = []
            newest: list[int] = []
            for observed, index in sorted((n[0], k) for k, n in enumerate(published)):
                times.append(observed)
                newest.append(max(index, newest[-1]) if newest else index)
            self._before[coin] = (times, newest)

    def index(self, coin: str, observed: int, price: float) -> int | None:
        candidates = self._exact.get(coin, {}).get(observed, [])
        same = [k for k, value in candidates if math.isclose(value, price, rel_tol=1e-9)]
        if same:
            return same[-1]
        times, newest = self._before.get(coin, ([], []))
        k = bisect.bisect_left(times, observed)
        return newest[k - 1] if k else None


def _orders(content: dict[str, list[Any]], published: _Published) -> dict[str, float]:
    """Each frame's place in the stream: the hub's ``seq``; for the per-client stream's snapshots, their newest
    ``observed_at`` and then how far their rows had got (the sum of their snapshots' publishing indexes)."""
    out: dict[str, float] = {}
    for key, (seq, rows) in content.items():
        if seq is not None:
            out[key] = float(seq)
            continue
        newest = max((observed for observed, _ in rows.values()), default=0)
        progress = sum(published.index(coin, observed, price) or 0 for coin, (observed, price) in rows.items())
        out[key] = float(newest + progress)  # observed_at is in whole seconds: the sum stays below 1,000,000 us
    return out


def _stream_state(content: dict[str, list[Any]], published: _Published,
                  orders: dict[str, float]) -> dict[str, tuple[list[int], list[float]]]:
    """Per coin the stream shows: the newest published snapshot its frames had shown so far (rising) and the
    order of the frame that showed it."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for key in sorted(content, key=orders.__getitem__):
        for coin, (observed, price) in content[key][1].items():
            index = published.index(coin, observed, price)
            if index is None:
                continue
            shown, at = out.setdefault(coin, ([], []))
            if not shown or index > shown[-1]:
                shown.append(index)
                at.append(orders[key])
    return out


@dataclass
class Freshness:
    """Tick -> client delays in milliseconds (a histogram), split into stages, and what was not shown."""

    delays: Counter[int] = field(default_factory=Counter)  # tick time -> the client received it
    published: Counter[int] = field(default_factory=Counter)  # tick -> in a published snapshot (per tick)
    stored: Counter[int] = field(default_factory=Counter)  # published -> the next commit (per tick)
    shown: Counter[int] = field(default_factory=Counter)  # published -> the client received it
    ticks: int = 0  # ticks counted (of coins the stream shows, on pairs a snapshot uses)
    unpublished: int = 0  # ticks no snapshot held
    unshown: int = 0  # ticks whose snapshot no frame showed
    missed: int = 0  # (tick, client) pairs the client never received


def freshness(ticks: Iterable[tuple[str, list[str], float]], notes: dict[str, list[Note]], writes: Sequence[float],
              content: dict[str, list[Any]], received: Sequence[Sequence[tuple[str, float]]]) -> Freshness:
    """Tick -> client delays (see the module docs).

    ``ticks``: (exchange, pairs, time); ``notes``: the server's published snapshots per coin; ``writes``: its
    commit times; ``content``: frame key -> (seq or None, {coin: (observed_at us, price)}); ``received``: each
    client's (frame key, time received) in receipt order."""
    covering = {coin: _covering(n) for coin, n in notes.items()}
    coin_of = {(exchange, pair): coin for coin, n in notes.items() for *_, quotes in n for exchange, pair, _ in quotes}
    published_as = _Published(notes)
    orders = _orders(content, published_as)
    state = _stream_state(content, published_as, orders)
    clients = [[(orders[key], at) for key, at in frames] for frames in received]
    commits = sorted(writes)
    out = Freshness()
    # frame order that shows it -> (tick ms, published ms) -> ticks
    needed: dict[float, Counter[tuple[int, int]]] = defaultdict(Counter)
    for exchange, pairs, at in ticks:
        for pair in pairs:
            coin = coin_of.get((exchange, pair))
            if coin is None or coin not in state:
                continue  # a pair no snapshot uses (another quote asset wins), or a coin the stream does not show
            out.ticks += 1
            newest, indexes = covering[coin][(exchange, pair)]
            k = bisect.bisect_left(newest, at - 0.001)  # Binance's event time is in whole milliseconds
            if k == len(newest):
                out.unpublished += 1
                continue
            index = indexes[k]
            published = notes[coin][index][2]
            out.published[round((published - at) * 1000)] += 1
            c = bisect.bisect_left(commits, published)
            if c < len(commits):
                out.stored[round((commits[c] - published) * 1000)] += 1
            shown, showing = state[coin]
            j = bisect.bisect_left(shown, index)
            if j == len(shown):
                out.unshown += 1
                continue
            needed[showing[j]][(round(at * 1000), round(published * 1000))] += 1
    for order, times in needed.items():
        weight = sum(times.values())
        for frames in clients:
            k = bisect.bisect_left(frames, (order, -math.inf))
            if k == len(frames):
                out.missed += weight
                continue
            arrived = round(frames[k][1] * 1000)
            for (tick_ms, published_ms), n in times.items():
                out.delays[arrived - tick_ms] += n
                out.shown[arrived - published_ms] += n
    return out


def _quantile(histogram: Counter[int], q: float) -> float:
    total = sum(histogram.values())
    if not total:
        return math.nan
    rank, seen = q * (total - 1), 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen > rank:
            return float(value)
    return float(max(histogram))


def _gaps(frames: Sequence[tuple[Any, float]], since: float, until: float) -> float:
    """The longest time in [since, until] without a data frame."""
    times = [since] + [t for _, t in frames if since < t < until] + [until]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


# --- one measurement ---------------------------------------------------------------------------------------


def _wait_for_data(url: str, timeout: float = 60.0) -> None:
    """Until the API lists a coin (the first cycle stored)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/coins?limit=1", timeout=5).json().get("total", 0) > 0:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no coin stored {timeout:.0f}s after the server started: see its log")


def _tail(path: Path, chars: int = 1500) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return text[-chars:].strip() or "(nothing logged)"


def _profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (when on PATH) sampling ``pid`` for ``seconds``, collapsed stacks into ``out``."""
    spy = shutil.which("py-spy")
    if spy is None:
        progress("live: py-spy is not on PATH: no profile")
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                             "--rate", "50", "--nonblocking", "--threads", "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _measure(mode: str, seconds: float, sizes: Sizes, ticks: _Ticks, overrides: dict[str, Any],
             tmp: Path, profile: Path | None) -> dict[str, Any]:
    settings_file, notes_file, out_file = (tmp / f"{mode}.{name}.json" for name in ("settings", "notes", "clients"))
    server_log, client_log = tmp / f"{mode}.server.log", tmp / f"{mode}.clients.log"
    settings_file.write_text(json.dumps({**overrides, "database_url": f"sqlite:///{tmp / mode}.db"}), encoding="utf-8")
    with server_log.open("w") as log:
        server = JsonLinesProcess([sys.executable, "-m", "benchmarks.live", "serve", "--settings", str(settings_file),
                                   "--mode", mode, "--notes", str(notes_file)], stderr=log,
                                  what="the live benchmark's server")
    spies: list[subprocess.Popen[bytes] | None] = []
    try:
        _wait_for_data(server.url)
        span = sizes.warmup + seconds + TAIL
        with client_log.open("w") as log:
            clients = JsonLinesProcess([sys.executable, "-m", "benchmarks.live", "clients", "--url", server.url,
                                        "--clients", str(sizes.clients), "--seconds", str(span),
                                        "--api-rate", str(sizes.api_rate), "--api-from", str(sizes.warmup),
                                        "--out", str(out_file)],
                                       stderr=log, what="the live benchmark's clients")
        try:
            progress(f"live {mode}: {sizes.clients} clients on {server.url}, {sizes.warmup:g}s warm-up, "
                     f"{seconds:g}s measured")
            time.sleep(sizes.warmup)
            first = _sample(server.pid, clients.pid)
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                spies = [_profile(server.pid, seconds, profile / f"{mode}-server.txt"),
                         _profile(clients.pid, seconds, profile / f"{mode}-clients.txt")]
            time.sleep(seconds)
            second = _sample(server.pid, clients.pid)
            names: dict[str, str] = {}
            for line in server.lines:
                names.update(line.get("threads", {}))
            deadline = time.monotonic() + TAIL + 30 + sizes.clients / 50
            while clients.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            clients.close()
    finally:
        final = server.close()
        for spy in spies:
            if spy is not None:
                spy.wait(30)
    if not out_file.is_file():
        raise RuntimeError(f"the clients wrote no result; their log ends: {_tail(client_log)}")
    if not notes_file.is_file():
        raise RuntimeError(f"the server wrote no notes; its log ends: {_tail(server_log)}")
    got = orjson.loads(out_file.read_bytes())
    notes = orjson.loads(notes_file.read_bytes())
    return _report(mode, got, notes, ticks, first, second, names, final, sizes)


def _report(mode: str, got: dict[str, Any], notes: dict[str, Any], ticks: _Ticks, first: _CpuSample,
            second: _CpuSample, names: dict[str, str], final: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    since, until = first.at, second.at
    window, span = until - since, got["until"] - got["started"]
    logs = got["clients"]
    end = got["until"]
    # dropped: never connected, connected late, or its connection failed or ended before the clients stopped
    lost = [c["connected_at"] is None or c["connected_at"] > since or c["error"] is not None
            or (c["closed_at"] is not None and c["closed_at"] < end - 1.0) for c in logs]
    kept = [c for c, gone in zip(logs, lost, strict=True) if not gone]
    gaps = [_gaps(c["frames"], since, until) for c in kept]
    starved = sum(1 for g in gaps if g > STARVED_AFTER)
    sent = list(ticks.between(since, until))
    updates = sum(len(pairs) for _, pairs, _ in sent)
    fresh = freshness(ticks.between(since, until), notes["coins"], notes["writes"], got["frames"],
                      [[(f[0], f[1]) for f in c["frames"]] for c in kept])  # JSON made the tuples lists
    histogram = fresh.delays
    delivered = sum(histogram.values())
    asked = [a for a in got["api"] if since <= a[0] <= until]
    api = [(answered - due) * 1000 for due, _, answered, _ in asked]
    # sent after it was due: the client's loop was late, or the connection still waited for the answer before
    api_late = [(at - due) * 1000 for due, at, _, _ in asked]
    api_failed = sum(1 for *_, status in asked if status != 200)
    cpu = _cpu_report(first, second, names, "")
    server_cpu_s = cpu.pop("_server_cpu_s")
    events: Counter[str] = Counter()
    for c in kept:
        events.update(c["events"])
    out: dict[str, Any] = {
        "mode": mode, "seconds": window, "clients": sizes.clients, "connected": len(logs) - sum(
            1 for c in logs if c["connected_at"] is None),
        "ticks_per_s": updates / window,
        "freshness_p50_ms": _quantile(histogram, 0.5), "freshness_p99_ms": _quantile(histogram, 0.99),
        "freshness_max_ms": float(max(histogram)) if histogram else math.nan,
        "freshness_ticks": fresh.ticks, "freshness_deliveries": delivered,
        "freshness_missed": fresh.missed + (fresh.unpublished + fresh.unshown) * len(kept),
        # where a tick's time goes: to the stream tick that publishes it (up to CRYPTOVIZ_STREAM_INTERVAL, and
        # the reconciliation), then to the next commit, then (from publishing) to the client
        **{f"stage.{name}_{q}_ms": _quantile(getattr(fresh, name), v) for name in ("published", "stored", "shown")
           for q, v in (("p50", 0.5), ("p99", 0.99))},
        "api_p50_ms": percentile(api, 0.5), "api_p99_ms": percentile(api, 0.99), "api_requests": len(api),
        "api_failed": api_failed, "api_sent_late_p50_ms": percentile(api_late, 0.5),
        "api_sent_late_p99_ms": percentile(api_late, 0.99),
        "clients_dropped": sum(lost), "clients_starved": starved,
        "max_gap_s": max(gaps, default=math.nan),
        "cpu_s_per_1k_ticks": server_cpu_s / (updates / 1000) if updates else math.nan,
        "frames_per_client_per_s": (events["delta"] + events["snapshot"]) / max(1, len(kept)) / span,
        "mb_per_client_per_s": sum(c["bytes"] for c in kept) / max(1, len(kept)) / 1e6 / span,
        **cpu,
    }
    hub = final.get("hub", {})
    if mode == "hub":
        out["hub.resyncs"] = hub.get("resyncs", 0)
        out["hub.polls"] = hub.get("polls", 0)
    out["published_per_s"] = final.get("live_published", 0) / span
    return out


def run(sizes: Sizes, *, profile: Path | None = None) -> dict[str, Any]:
    """The section: the hub, then the per-client baseline, on one simulator; flat ``live.*`` keys. With
    ``profile``, py-spy's collapsed stacks of the server and the clients over each window go there."""
    from cryptoviz.simulator import Simulator
    from cryptoviz.simulator.coins import coins
    from cryptoviz.simulator.feeds import listings

    per_exchange = -(-sizes.pairs // len(EXCHANGES))
    ticks = _Ticks()
    listed = {e: [pair for pair, where in listings(coins(sizes.coins), e).items() if where.served_as is None]
              for e in EXCHANGES}
    pairs = sum(min(per_exchange, len(listed[e])) for e in EXCHANGES)
    tick = pairs / sizes.rate  # every pair updated at every tick
    sim = Simulator(faults="none", seed=42, n_coins=sizes.coins, step_seconds=tick, feed_tick=tick)
    sim.feeds.max_pairs = per_exchange
    sim.feeds.on_tick = ticks
    results: dict[str, Any] = {"live.pairs": pairs, "live.tick_s": tick}
    with sim, tempfile.TemporaryDirectory(prefix="live-bench-") as tmp:
        overrides = {**sim.settings_overrides(), "sources": [AGGREGATOR, *EXCHANGES], "interval": 60.0,
                     "stream_interval": 1.0, "top_n": sizes.coins, "source_intervals": {AGGREGATOR: 60.0},
                     "coinbase_products": listed["coinbase"][:per_exchange],
                     "kraken_pairs": listed["kraken"][:per_exchange], "kafka_bootstrap_servers": None,
                     "api_token": None, "log_dir": str(Path(tmp) / "logs"),
                     "failed_pages_dir": str(Path(tmp) / "failed")}
        for mode, seconds, prefix in (("hub", sizes.seconds, "live."),
                                      ("per-client", sizes.baseline_seconds, "live.baseline.")):
            measured = _measure(mode, seconds, sizes, ticks, overrides, Path(tmp), profile)
            results.update({f"{prefix}{k}": v for k, v in measured.items() if k != "mode"})
            ticks.sent.clear()
            progress(f"live {mode}: freshness p50 {measured['freshness_p50_ms']:.0f} ms, p99 "
                     f"{measured['freshness_p99_ms']:.0f} ms; API p99 {measured['api_p99_ms']:.0f} ms; dropped "
                     f"{measured['clients_dropped']}, starved {measured['clients_starved']}; server CPU "
                     f"{measured['cpu.server_pct']:.0f} %, clients {measured['cpu.clients_pct']:.0f} %")
    results["live.met.freshness"] = results["live.freshness_p99_ms"] <= FRESHNESS_TARGET_MS
    results["live.met.api"] = results["live.api_p99_ms"] <= API_TARGET_MS
    results["live.met.clients"] = results["live.clients_dropped"] == 0 and results["live.clients_starved"] == 0
    return results


# --- command line ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.live", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    whole = commands.add_parser("run", help="The whole section (as `benchmarks.run --only live`).")
    for size in fields(Sizes):
        whole.add_argument(f"--{size.name.replace('_', '-')}", type=type(size.default), default=size.default)
    whole.add_argument("--profile", type=Path, help="Where py-spy's collapsed stacks go (py-spy on PATH).")
    serve = commands.add_parser("serve", help="The server process (started by run).")
    serve.add_argument("--settings", required=True)
    serve.add_argument("--mode", choices=("hub", "per-client"), default="hub")
    serve.add_argument("--notes", required=True)
    clients = commands.add_parser("clients", help="The client process (started by run).")
    clients.add_argument("--url", required=True)
    clients.add_argument("--clients", type=int, default=500)
    clients.add_argument("--seconds", type=float, default=30.0)
    clients.add_argument("--api-rate", type=float, default=100.0)
    clients.add_argument("--api-from", type=float, default=0.0, help="Seconds before the API load starts.")
    clients.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve(args)
    elif args.command == "clients":
        _clients(args)
    else:
        sizes = Sizes(**{size.name: getattr(args, size.name) for size in fields(Sizes)})
        print(json.dumps(run(sizes, profile=args.profile), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
