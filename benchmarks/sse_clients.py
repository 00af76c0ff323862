"""Many Server-Sent Events clients on one server: delivery delay (write -> client received) and server CPU.

A load check run by hand (not in CI): a server process serves ``/api/stream`` over a fresh SQLite database
while a writer thread beside it stores the coins that moved every second (``observed_at`` = the wall
clock just before the write); a client process holds N raw-socket SSE connections and notes when each
new ``observed_at`` reached each client. For every write and every client, the delay is the time the
client first received an ``observed_at`` at least as new, minus the write's ``observed_at``.

The server's CPU is its process's CPU time (``/proc/<pid>/stat``) over the measured window, less the
writer thread's own (``/proc/<pid>/task/<tid>/stat``), in percent of one core; its database reads are the
SELECT statements run on the API's engine (the writer has an engine of its own).

Modes: ``hub``, the shared producer (:mod:`cryptoviz.api.live`), polling, or woken after each write
(``--notify``: the writer in the same process, as ``cryptoviz run``); ``per-client``, each connection
polling the database and encoding its own snapshots (``app.state.stream_mode = "per-client"``).

    python -m benchmarks.sse_clients compare --clients 200,500 --seconds 30
    python -m benchmarks.sse_clients compare --clients 200 --configs hub-notify,per-client
    python -m benchmarks.sse_clients clients --url http://127.0.0.1:8000 --clients 100 --seconds 10

The functions are reusable: :func:`run_clients` (N connections, each a :class:`ClientLog` or a subclass
that reads frames its own way), :func:`delivery_delays`, :class:`JsonLinesProcess` (a subprocess that reports
on stdout), :class:`ServerProcess` and :func:`measure` (one configuration, one client count).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import percentile, progress, rounded

OBSERVED = re.compile(rb'"observed_at":"([^"]+)"')  # the first one is the frame's own (top-level) time
EVENT = re.compile(rb"^event: (\w+)", re.MULTILINE)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- clients ---------------------------------------------------------------------------------------------


@dataclass
class ClientLog:
    """What one client received: each new ``observed_at`` (epoch seconds) with the time it arrived."""

    seen: list[tuple[float, float]] = field(default_factory=list)  # (observed_at, received), both rising
    events: dict[str, int] = field(default_factory=dict)
    received: int = 0  # bytes
    connected_at: float | None = None
    closed_at: float | None = None  # when the connection ended (the server closed it, an error, or the end)
    error: str | None = None

    def note(self, frame: bytes, received: float) -> None:
        name = EVENT.search(frame)
        kind = name.group(1).decode() if name else ("comment" if frame.startswith(b":") else "other")
        self.events[kind] = self.events.get(kind, 0) + 1
        found = OBSERVED.search(frame)
        if found is None:
            return
        observed = datetime.fromisoformat(found.group(1).decode()).timestamp()
        if not self.seen or observed > self.seen[-1][0]:
            self.seen.append((observed, received))

    def first_at_least(self, observed: float) -> float | None:
        """When this client first held an ``observed_at`` >= ``observed`` (None: never)."""
        k = bisect.bisect_left(self.seen, (observed, float("-inf")))
        return self.seen[k][1] if k < len(self.seen) else None


async def _one_client(host: str, port: int, path: str, log: ClientLog, until: float,
                      connected: asyncio.Event | None = None) -> None:
    """An SSE client over a raw socket (HTTP/1.1, chunked): cheap enough for hundreds in one process."""
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        chunked = b"transfer-encoding: chunked" in head.lower()
        log.connected_at = time.time()
        if connected is not None:
            connected.set()
        buffer = b""
        while time.time() < until:
            if chunked:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    return
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    return
            received = time.time()
            log.received += len(data)
            buffer += data
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                log.note(frame, received)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        log.error = f"{type(exc).__name__}: {exc}"
    finally:
        log.closed_at = time.time()
        if writer is not None:
            writer.close()


async def open_clients(url: str, n: int, seconds: float, *, token: str | None = None, ramp: float = 0.05,
                       make_log: Callable[[], ClientLog] = ClientLog) -> list[ClientLog]:
    """:func:`run_clients` inside a running event loop (beside other tasks)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = "/api/stream" + (f"?token={token}" if token else "")
    until = time.time() + seconds
    logs = [make_log() for _ in range(n)]
    tasks = []
    for k, log in enumerate(logs):
        tasks.append(asyncio.create_task(_one_client(host, port, path, log, until)))
        if ramp and k % 50 == 49:
            await asyncio.sleep(ramp)  # connect in waves: the listen backlog is not what is measured
    await asyncio.wait(tasks, timeout=max(1.0, until - time.time()) + 5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return logs


def run_clients(url: str, n: int, seconds: float, *, token: str | None = None, ramp: float = 0.05,
                make_log: Callable[[], ClientLog] = ClientLog) -> list[ClientLog]:
    """``n`` SSE clients on ``url``'s ``/api/stream`` for ``seconds`` (from now); what each received."""
    return asyncio.run(open_clients(url, n, seconds, token=token, ramp=ramp, make_log=make_log))


def delivery_delays(writes: Sequence[float], logs: Sequence[ClientLog], *, since: float,
                    until: float) -> tuple[list[float], int]:
    """Seconds from each write (its ``observed_at``, in [since, until]) to each client holding it, and the
    number of (write, client) pairs never delivered."""
    delays: list[float] = []
    missed = 0
    for written in writes:
        if not since <= written <= until:
            continue
        for log in logs:
            if log.connected_at is None:
                continue
            received = log.first_at_least(written)
            if received is None:
                missed += 1
            else:
                delays.append(received - written)
    return delays, missed


# --- the server ------------------------------------------------------------------------------------------


def _cpu_ticks(pid: int, tid: int | None = None) -> int:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _serve(args: argparse.Namespace) -> None:
    """The server process: the API on a fresh database, a writer thread, a JSON line per write on stdout."""
    import sqlalchemy as sa

    from benchmarks.data import snapshot
    from cryptoviz.api.app import create_app
    from cryptoviz.api.server import serve_in_thread
    from cryptoviz.config import load_settings
    from cryptoviz.store import migrate
    from cryptoviz.store.engine import make_engine
    from cryptoviz.store.sink import open_sink

    url = f"sqlite:///{args.db}"
    migrate.upgrade(url)
    writer_engine, api_engine = make_engine(url), make_engine(url)
    open_sink(writer_engine).write([snapshot(i, 0, at=datetime.now(UTC)) for i in range(args.coins)])
    reads = [0]

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip()[:6].upper() == "SELECT":
            reads[0] += 1

    sa.event.listen(api_engine, "before_cursor_execute", count)
    settings = load_settings(database_url=url, api_token=None)
    app = create_app(api_engine, settings, poll_interval=args.poll)
    app.state.stream_mode = args.mode
    handle = serve_in_thread(app, port=0)
    stop = threading.Event()
    lock = threading.Lock()

    def say(**values: Any) -> None:
        with lock:
            print(json.dumps(values), flush=True)

    def write_every_second() -> None:
        sink = open_sink(writer_engine)
        say(writer_tid=threading.get_native_id())
        k = 0
        next_at = time.time() + 1
        while not stop.wait(max(0.0, next_at - time.time())):
            next_at += args.every
            k += 1
            now = time.time()
            moved = [(k * args.moved + j) % args.coins for j in range(args.moved)]  # a different set each time
            sink.write([snapshot(i, k, at=datetime.fromtimestamp(now, UTC)) for i in moved])
            if args.notify:
                app.state.live.notify(len(moved))
            say(write=now, took=time.time() - now, reads=reads[0])

    thread = threading.Thread(target=write_every_second, name="bench-writer", daemon=True)
    thread.start()
    say(url=handle.url, pid=os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sys.stdin.read()  # until the parent closes it
    finally:
        stop.set()
        thread.join(5)
        stats = app.state.live.stats
        say(final_reads=reads[0], hub={k: v for k, v in vars(stats).items() if isinstance(v, int)})
        handle.stop()


class JsonLinesProcess:
    """A subprocess that prints one JSON object a line, read by a thread; started once it printed ``url``
    and ``pid``. Closing its stdin asks it to stop."""

    def __init__(self, command: Sequence[str], *, what: str = "the benchmark server", stderr: Any = None,
                 start_timeout: float = 60.0) -> None:
        self.what = what
        self.proc = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     stderr=stderr, cwd=Path(__file__).resolve().parents[1])
        self.lines: list[dict[str, Any]] = []
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._started.wait(start_timeout) or self.proc.poll() is not None:
            self.close()
            raise RuntimeError(f"{what} did not start (exit status {self.proc.returncode})")
        first = next(line for line in self.lines if "url" in line)
        self.url, self.pid = str(first["url"]), int(first["pid"])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            line = json.loads(text)
            self.lines.append(line)
            if "url" in line:
                self._started.set()
        self._started.set()  # it ended: whoever waits for the start need not wait longer

    def value(self, key: str) -> Any:
        return next((line[key] for line in self.lines if key in line), None)

    def close(self) -> dict[str, Any]:
        """Stop it (its stdin closed, killed after 30 s); its last report (:meth:`last`)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        return self.last()

    def last(self) -> dict[str, Any]:
        return self.lines[-1] if self.lines else {}


class ServerProcess(JsonLinesProcess):
    """``python -m benchmarks.sse_clients serve`` in a subprocess."""

    def __init__(self, db: Path, *, mode: str, poll: float, notify: bool, coins: int, moved: int,
                 every: float = 1.0) -> None:
        command = [sys.executable, "-m", "benchmarks.sse_clients", "serve", "--db", str(db), "--mode", mode,
                   "--poll", str(poll), "--coins", str(coins), "--moved", str(moved), "--every", str(every)]
        if notify:
            command.append("--notify")
        super().__init__(command)

    def writes(self) -> list[float]:
        return [float(line["write"]) for line in self.lines if "write" in line]

    def reads_between(self, since: float, until: float) -> float:
        """Database statements of the API per second, between the writes in [since, until]."""
        marks = [(float(line["write"]), int(line["reads"])) for line in self.lines
                 if "write" in line and since <= float(line["write"]) <= until]
        if len(marks) < 2:
            return float("nan")
        return (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])

    def cpu(self) -> tuple[int, int]:
        """CPU ticks of the process and of its writer thread."""
        tid = self.value("writer_tid")
        return _cpu_ticks(self.pid), _cpu_ticks(self.pid, int(tid)) if tid else 0

    def last(self) -> dict[str, Any]:
        return next((line for line in reversed(self.lines) if "final_reads" in line), {})


@contextmanager
def server(**options: Any) -> Iterator[ServerProcess]:
    with tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp:
        process = ServerProcess(Path(tmp) / "bench.db", **options)
        try:
            yield process
        finally:
            process.close()


# --- one measurement ---------------------------------------------------------------------------------------


CONFIGS: dict[str, dict[str, Any]] = {
    "hub-notify": {"mode": "hub", "notify": True},  # cryptoviz run / demo: the writer in the same process
    "hub-poll": {"mode": "hub", "notify": False},  # cryptoviz serve over a database another process fills
    "per-client": {"mode": "per-client", "notify": False},  # every connection polls on its own
}


def measure(config: str, clients: int, *, seconds: float = 30.0, warmup: float = 5.0, poll: float = 2.0,
            coins: int = 200, moved: int = 50) -> dict[str, Any]:
    """One configuration with ``clients`` connections: delays, server CPU, reads, what the clients got."""
    options = CONFIGS[config]
    with server(poll=poll, coins=coins, moved=moved, **options) as proc:
        progress(f"{config}: {clients} clients on {proc.url}")
        results: list[list[ClientLog]] = []
        runner = threading.Thread(target=lambda: results.append(
            run_clients(proc.url, clients, warmup + seconds)), daemon=True)
        runner.start()
        time.sleep(warmup)
        cpu0, writer0, wall0 = *proc.cpu(), time.time()
        runner.join(seconds + 60)
        cpu1, writer1, wall1 = *proc.cpu(), time.time()
        last = proc.close()
    logs = results[0] if results else []
    window = wall1 - wall0
    delays, missed = delivery_delays(proc.writes(), logs, since=wall0, until=wall1 - 3)
    connected = sum(1 for log in logs if log.connected_at is not None)
    events: dict[str, int] = {}
    for log in logs:
        for kind, n in log.events.items():
            events[kind] = events.get(kind, 0) + n
    ms = [d * 1000 for d in delays]
    return {
        "config": config, "clients": clients, "connected": connected,
        "errors": sorted({log.error for log in logs if log.error})[:3],
        "seconds": rounded(window, 1), "writes": sum(1 for w in proc.writes() if wall0 <= w <= wall1),
        "delay_p50_ms": rounded(percentile(ms, 0.5)), "delay_p99_ms": rounded(percentile(ms, 0.99)),
        "delay_max_ms": rounded(max(ms, default=float("nan"))), "deliveries": len(ms), "missed": missed,
        "server_cpu_pct": rounded(100 * (cpu1 - cpu0 - (writer1 - writer0)) / CLK_TCK / window),
        "writer_cpu_pct": rounded(100 * (writer1 - writer0) / CLK_TCK / window),
        "db_selects_per_s": rounded(proc.reads_between(wall0, wall1)),
        "mb_per_client": rounded(sum(log.received for log in logs) / max(1, connected) / 1e6, 2),
        "events": events, "hub": last.get("hub", {}),
    }


def _table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("config", "clients", "connected", "delay_p50_ms", "delay_p99_ms", "missed", "server_cpu_pct",
            "db_selects_per_s", "mb_per_client")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    lines += [" | ".join(str(row[k]) for k in head) for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sse_clients", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare", help="Each configuration with each number of clients.")
    compare.add_argument("--clients", default="200,500", help="Comma list of client counts.")
    compare.add_argument("--configs", default=",".join(CONFIGS), help=f"Comma list of {', '.join(CONFIGS)}.")
    compare.add_argument("--seconds", type=float, default=30.0, help="Measured seconds (after a warm-up).")
    compare.add_argument("--warmup", type=float, default=5.0)
    compare.add_argument("--poll", type=float, default=2.0, help="create_app's poll_interval.")
    compare.add_argument("--coins", type=int, default=200, help="Coins in the database.")
    compare.add_argument("--moved", type=int, default=50, help="Coins written every second.")
    compare.add_argument("--out", help="Also write the JSON here.")
    clients = commands.add_parser("clients", help="Only the clients, against a running server.")
    clients.add_argument("--url", required=True)
    clients.add_argument("--clients", type=int, default=100)
    clients.add_argument("--seconds", type=float, default=10.0)
    clients.add_argument("--token")
    serve = commands.add_parser("serve", help="The server side of compare (a subprocess of it).")
    serve.add_argument("--db", required=True)
    serve.add_argument("--mode", choices=("hub", "per-client"), default="hub")
    serve.add_argument("--poll", type=float, default=2.0)
    serve.add_argument("--notify", action="store_true")
    serve.add_argument("--coins", type=int, default=200)
    serve.add_argument("--moved", type=int, default=50)
    serve.add_argument("--every", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve(args)
        return 0
    if args.command == "clients":
        logs = run_clients(args.url, args.clients, args.seconds, token=args.token)
        print(json.dumps({"connected": sum(1 for log in logs if log.connected_at is not None),
                          "errors": sorted({log.error for log in logs if log.error})[:3],
                          "events": sum(sum(log.events.values()) for log in logs)}))
        return 0
    rows = [measure(config, n, seconds=args.seconds, warmup=args.warmup, poll=args.poll, coins=args.coins,
                    moved=args.moved)
            for n in (int(x) for x in args.clients.split(","))
            for config in args.configs.split(",")]
    text = json.dumps(rows, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(_table(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
