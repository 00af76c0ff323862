"""The live stream's shared producer (cryptoviz.api.live.LiveHub) over a real SQLite database.

Clients are the hub's own per-client generators, driven on one asyncio loop as the server drives them;
database statements are counted with SQLAlchemy's cursor events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from cryptoviz.api.live import Changes, DatabaseSource, LiveHub, Snapshot
from cryptoviz.store import migrate
from cryptoviz.store.engine import make_engine
from cryptoviz.store.sink import open_sink
from tests.factories import snapshot

T = TypeVar("T")
PRICES = {"bitcoin": 100.0, "ethereum": 50.0, "solana": 20.0, "tether": 1.0, "dogecoin": 0.1}  # cap = price x 1000


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    write(engine, *PRICES.items(), minute=0)
    yield engine
    engine.dispose()


def write(engine: sa.Engine, *prices: tuple[str, float], minute: int) -> None:
    open_sink(engine).write([snapshot(coin, price=price, minutes=minute, symbol=coin[:3].upper())
                             for coin, price in prices])


class Statements:
    """The SQL statements an engine runs, as text."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.seen = engine, list[str]()
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.seen.append(statement)

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)

    @property
    def change_reads(self) -> int:
        return sum(1 for s in self.seen if "updated_at >" in s)


class Client:
    """One subscriber: the hub's SSE generator read by a task of its own (as the server reads it), parsed
    into (event, data) pairs. Waiting with a timeout never cancels the generator."""

    def __init__(self, hub: LiveHub) -> None:
        self.stream = hub.events()
        self.frames: list[bytes] = []
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.pump = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for frame in self.stream:
                await self.inbox.put(frame)
        finally:
            await self.inbox.put(None)

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        frame = await asyncio.wait_for(self.inbox.get(), timeout)
        if frame is None:
            raise EOFError("the stream ended")
        self.frames.append(frame)
        return parse(frame)

    async def next_event(self, timeout: float = 5.0) -> tuple[str, Any]:
        """The next event that is not a comment or the retry line."""
        deadline = time.monotonic() + timeout
        while True:
            name, data = await self.next(max(0.01, deadline - time.monotonic()))
            if name not in ("comment", "retry"):
                return name, data

    async def ended(self, timeout: float = 3.0) -> bool:
        """Whether the stream ends within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(asyncio.shield(self.pump), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """The client goes away: the server cancels its generator."""
        self.pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.pump


def parse(frame: bytes) -> tuple[str, Any]:
    text = frame.decode()
    if text.startswith(":"):
        return "comment", text[1:].strip()
    if text.startswith("retry:"):
        return "retry", int(text[6:])
    fields = dict(line.split(": ", 1) for line in text.strip().splitlines())
    data = json.loads(fields["data"])
    if "id" in fields:
        assert int(fields["id"]) == data["seq"]
    return fields["event"], data


async def connect(hub: LiveHub, n: int = 1) -> list[Client]:
    """``n`` clients, each past its first snapshot."""
    clients = [Client(hub) for _ in range(n)]
    for client in clients:
        name, _ = await client.next_event()
        assert name == "snapshot"
    return clients


async def in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))  # type: ignore[arg-type]


def hub_over(engine: sa.Engine, stop: threading.Event | None = None, **options: Any) -> LiveHub:
    options.setdefault("poll_interval", 0.1)
    return LiveHub.over(engine, stop=stop or threading.Event(), **options)


def ids(rows: Iterable[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


# --- the first snapshot and the deltas ---------------------------------------------------------------------


def test_a_client_gets_the_snapshot_then_only_the_changed_rows_numbered(engine: sa.Engine) -> None:
    async def main() -> None:
        hub = hub_over(engine)
        client = Client(hub)
        assert await client.next() == ("retry", 3000)
        name, first = await client.next()
        assert name == "snapshot"
        assert ids(first["coins"]) == ["bitcoin", "ethereum", "solana", "tether", "dogecoin"]  # by market cap
        assert first["total"] == 5 and first["observed_at"] == "2026-11-27T12:00:00Z"
        assert first["coins"][0]["price"] == 100.0 and first["coins"][0]["sources"] == ["coingecko", "coinmarketcap"]
        assert await client.next() == ("comment", "keepalive")  # nothing new

        await in_thread(lambda: write(engine, ("ethereum", 51.0), minute=1))
        name, delta = await client.next_event()
        assert name == "delta" and delta["seq"] == first["seq"] + 1
        assert ids(delta["coins"]) == ["ethereum"] and delta["coins"][0]["price"] == 51.0
        assert delta["observed_at"] == "2026-11-27T12:01:00Z" and delta["removed"] == []

        # The same values written again are no change; a moved price is.
        await in_thread(lambda: write(engine, ("ethereum", 51.0), ("bitcoin", 99.0), minute=2))
        name, delta = await client.next_event()
        assert name == "delta" and delta["seq"] == first["seq"] + 2
        assert sorted(ids(delta["coins"])) == ["bitcoin", "ethereum"]  # both observed at a new time
        # Rows read again behind the watermark are not sent again: only keepalives follow.
        for _ in range(3):
            assert await client.next() == ("comment", "keepalive")
        await client.close()
        hub.stop.set()

    run(main)


def test_snapshots_come_every_n_seconds_between_the_deltas(engine: sa.Engine) -> None:
    async def main() -> None:
        hub = hub_over(engine, snapshot_every=0.6)
        [client] = await connect(hub)
        seq = hub.stats.seq
        seen: list[tuple[str, int]] = []
        for minute in range(1, 5):
            await in_thread(lambda m=minute: write(engine, ("solana", 20.0 + m), minute=m))  # type: ignore[misc]
            name, data = await client.next_event()
            seen.append((name, data["seq"]))
            await asyncio.sleep(0.25)
        deadline = time.monotonic() + 2
        while not any(name == "snapshot" for name, _ in seen) and time.monotonic() < deadline:
            name, data = await client.next_event()
            seen.append((name, data["seq"]))
        assert [s for _, s in seen] == list(range(seq + 1, seq + 1 + len(seen)))  # no gap, no repeat
        assert {name for name, _ in seen} == {"delta", "snapshot"}
        assert hub.stats.snapshots_read >= 2
        await client.close()
        hub.stop.set()

    run(main)


def test_a_coin_entering_the_top_list_pushes_the_last_one_out(engine: sa.Engine) -> None:
    async def main() -> None:
        hub = hub_over(engine, rows=3)
        [client] = await connect(hub)
        assert ids(json.loads(client.frames[-1].decode().split("data: ", 1)[1])["coins"]) == [
            "bitcoin", "ethereum", "solana"]
        await in_thread(lambda: write(engine, ("tether", 70.0), minute=1))  # now second by market cap
        name, delta = await client.next_event()
        assert name == "delta" and ids(delta["coins"]) == ["tether"] and delta["removed"] == ["solana"]
        # A coin below the list that moves (and stays below) is no change to the list; its time still is.
        await in_thread(lambda: write(engine, ("dogecoin", 0.2), minute=2))
        name, delta = await client.next_event()
        assert name == "delta" and delta["coins"] == [] and delta["removed"] == []
        assert delta["observed_at"] == "2026-11-27T12:02:00Z"
        await client.close()
        hub.stop.set()

    run(main)


# --- one reader, one encoding, many clients ------------------------------------------------------------------


def test_one_query_per_poll_and_one_encoding_whatever_the_number_of_clients(engine: sa.Engine) -> None:
    statements = Statements(engine)

    async def main() -> None:
        hub = hub_over(engine, poll_interval=0.1)
        clients = await connect(hub, 60)
        assert hub.stats.snapshots_read == 1  # one read for the first snapshot of all of them
        encoded = hub.stats.encoded
        before = len(statements.seen)
        started = time.monotonic()
        polls_before = statements.change_reads
        await in_thread(lambda: write(engine, ("bitcoin", 101.0), minute=1))
        frames = set()
        for client in clients:
            name, delta = await client.next_event()
            assert name == "delta" and delta["coins"][0]["price"] == 101.0
            frames.add(client.frames[-1])
        await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
        assert len(frames) == 1  # the same bytes to everyone
        assert hub.stats.encoded == encoded + 1  # encoded once
        polls = statements.change_reads - polls_before
        assert statements.change_reads == hub.stats.polls  # one statement per poll
        assert 2 <= polls <= elapsed / 0.1 + 3, (polls, elapsed)  # the poll rate, not 60 times it
        assert sum(1 for s in statements.seen[before:] if "ORDER BY" in s) == 0  # no snapshot read meanwhile
        for client in clients:
            await client.close()
        hub.stop.set()

    try:
        run(main)
    finally:
        statements.close()


def test_a_slow_client_gets_a_snapshot_instead_and_blocks_nobody(engine: sa.Engine) -> None:
    async def main() -> None:
        hub = hub_over(engine, queue_frames=3)
        slow = hub.events()  # read only when this test says so, like a client whose socket is full

        async def read_slow() -> tuple[str, Any]:
            while True:
                name, data = parse(await asyncio.wait_for(anext(slow), 5))
                if name not in ("comment", "retry"):
                    return name, data

        assert (await read_slow())[0] == "snapshot"
        [fast] = await connect(hub)
        start_seq = hub.stats.seq
        for minute in range(1, 9):  # 8 changes; the slow client reads none of them
            await in_thread(lambda m=minute: write(engine, ("bitcoin", 100.0 + m), minute=m))  # type: ignore[misc]
            name, delta = await fast.next_event()
            assert name == "delta" and delta["seq"] == start_seq + minute  # in time, each one, in order
        assert hub.stats.resyncs >= 1
        # The slow client: still connected, a snapshot of the state when its queue overflowed, then the rest.
        name, data = await read_slow()
        assert name == "snapshot" and data["seq"] >= start_seq + 3
        assert next(c for c in data["coins"] if c["id"] == "bitcoin")["price"] == 100.0 + data["seq"] - start_seq
        caught_up = data["seq"]
        while caught_up < start_seq + 8:
            name, data = await read_slow()
            assert name == "delta" and data["seq"] == caught_up + 1
            caught_up = data["seq"]
        await in_thread(lambda: write(engine, ("bitcoin", 200.0), minute=9))
        for name, data in (await read_slow(), await fast.next_event()):
            assert name == "delta" and data["seq"] == start_seq + 9 and data["coins"][0]["price"] == 200.0
        await slow.aclose()
        await fast.close()
        hub.stop.set()

    run(main)


def test_notify_wakes_the_poller_at_once(engine: sa.Engine) -> None:
    async def main() -> None:
        hub = hub_over(engine, poll_interval=30.0, keepalive=30.0)
        [client] = await connect(hub)
        polls = hub.stats.polls
        await in_thread(lambda: write(engine, ("tether", 1.01), minute=1))
        with pytest.raises(TimeoutError):  # no poll for 30 s ...
            await client.next(timeout=0.5)
        started = time.monotonic()
        threading.Thread(target=hub.notify, args=(1,)).start()  # ... until the writer says it committed
        name, delta = await client.next_event(timeout=5)
        assert name == "delta" and ids(delta["coins"]) == ["tether"]
        assert time.monotonic() - started < 0.5
        assert hub.stats.polls == polls + 1 and hub.stats.notified == 1
        await client.close()
        hub.stop.set()

    run(main)


def test_notify_without_clients_is_harmless(engine: sa.Engine) -> None:
    hub = hub_over(engine)
    hub.notify(5)  # no loop, no poller: nothing to wake
    assert hub.stats.notified == 1 and hub.stats.polls == 0


def test_nobody_listening_means_no_reads_and_the_next_client_gets_a_fresh_snapshot(engine: sa.Engine) -> None:
    async def main() -> None:
        hub = hub_over(engine)
        [client] = await connect(hub)
        await client.close()
        await asyncio.sleep(0.3)
        polls = hub.stats.polls
        await in_thread(lambda: write(engine, ("bitcoin", 150.0), minute=1))
        await asyncio.sleep(0.5)
        assert hub.stats.polls <= polls + 1  # idle
        [again] = await connect(hub)
        data = json.loads(again.frames[-1].decode().split("data: ", 1)[1])
        assert data["coins"][0]["price"] == 150.0 and hub.stats.snapshots_read == 2
        await again.close()
        hub.stop.set()

    run(main)


def test_shutdown_ends_every_stream(engine: sa.Engine) -> None:
    async def main() -> None:
        stop = threading.Event()
        hub = hub_over(engine, stop=stop, poll_interval=5.0, keepalive=30.0)
        clients = await connect(hub, 20)
        started = time.monotonic()
        threading.Thread(target=stop.set).start()  # the server's exit, from another thread
        results = await asyncio.gather(*(c.ended() for c in clients))
        assert all(results) and time.monotonic() - started < 2
        late = Client(hub)  # a client arriving after the stop gets the retry line and the end
        assert await late.next() == ("retry", 3000)
        assert await late.ended()

    run(main)


# --- a failing database ---------------------------------------------------------------------------------------


class Flaky:
    """The database source, failing while ``down`` is set."""

    def __init__(self, engine: sa.Engine) -> None:
        self.real, self.down = DatabaseSource(engine), threading.Event()

    def _check(self) -> None:
        if self.down.is_set():
            raise sa.exc.OperationalError("SELECT", {}, Exception("database is locked"))

    def snapshot(self, rows: int) -> Snapshot:
        self._check()
        return self.real.snapshot(rows)

    def changes(self, since: datetime | None, floor: float | None, ids: Iterable[str]) -> Changes:
        self._check()
        return self.real.changes(since, floor, ids)


def test_a_failing_database_is_an_error_event_then_a_snapshot_when_it_answers(engine: sa.Engine) -> None:
    async def main() -> None:
        source = Flaky(engine)
        hub = LiveHub(source, poll_interval=0.1, stop=threading.Event())
        [client] = await connect(hub)
        source.down.set()
        assert await client.next_event() == ("error", {"error": "database unavailable"})
        late = Client(hub)  # joining while it fails: the error at once
        assert await late.next_event() == ("error", {"error": "database unavailable"})
        await in_thread(lambda: write(engine, ("bitcoin", 120.0), minute=1))
        source.down.clear()
        for c in (client, late):
            name, data = await c.next_event()
            while name == "error":
                name, data = await c.next_event()
            assert name == "snapshot" and data["coins"][0]["price"] == 120.0
            await c.close()
        assert hub.stats.errors >= 1
        hub.stop.set()

    run(main)


def test_a_missing_database_file_is_an_error_event(tmp_path: Path) -> None:
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")

    async def main() -> None:
        hub = hub_over(broken)
        client = Client(hub)
        assert await client.next_event() == ("error", {"error": "database unavailable"})
        assert await client.next_event() == ("error", {"error": "database unavailable"})  # every poll
        await client.close()
        hub.stop.set()

    try:
        run(main)
    finally:
        broken.dispose()


def test_changes_reads_behind_the_watermark_and_only_what_can_enter_the_list(engine: sa.Engine) -> None:
    source = DatabaseSource(engine)
    first = source.snapshot(2)
    assert ids(first.rows) == ["bitcoin", "ethereum"] and first.total == 5 and first.watermark is not None
    assert len(source.changes(None, None, []).rows) == 5
    assert source.changes(first.watermark + timedelta(seconds=10), None, []).rows == []
    # A commit that lands up to OVERLAP later than the newest time seen is still read.
    again = source.changes(first.watermark, None, [])
    assert len(again.rows) == 5 and again.watermark == first.watermark
    write(engine, ("dogecoin", 0.3), ("solana", 25.0), ("ethereum", 55.0), minute=1)
    # With a full list: only the coins in it, and those with at least its smallest market cap.
    moved = source.changes(first.watermark, 50_000.0, ["bitcoin", "ethereum"])
    assert sorted(ids(moved.rows)) == ["bitcoin", "ethereum"]
    assert moved.watermark is not None and moved.watermark > first.watermark
    assert next(r for r in moved.rows if r["id"] == "ethereum")["price"] == 55.0
