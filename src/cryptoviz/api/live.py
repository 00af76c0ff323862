"""The live stream's producer: one poller per application, each update encoded once, sent to every client.

A :class:`LiveHub` reads what changed in ``currency_data`` since its last read (one query per poll, however
many clients listen), keeps the top coins by market cap in memory, and hands each client the same encoded
frames through a small queue of its own:

* ``event: snapshot`` (``seq``, ``observed_at``, ``total``, ``coins``): the whole top list, on connect, every
  ``snapshot_every`` seconds (a fresh read of the database that also corrects what deltas cannot see) and
  to a client that fell behind;
* ``event: delta`` (``seq``, ``observed_at``, ``coins``, ``removed``): only the rows that changed, numbered
  one after the other (a snapshot carries the number of the last change it includes);
* ``event: error`` while the database fails; the next successful read sends a snapshot to everyone.

A client whose queue is full (it does not read fast enough) gets its queue replaced by one snapshot: it
never blocks the poller or the other clients, and it is never disconnected for being slow. When the writer
runs in the same process, :meth:`LiveHub.notify` (safe from any thread) wakes the poller as soon as a batch
is committed; otherwise it polls every ``poll_interval`` seconds. The poller runs while clients listen and
ends, with every open stream, when the application's shutdown event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio.to_thread
import orjson
import sqlalchemy as sa

from cryptoviz.api import queries
from cryptoviz.api.schemas import CoinRow
from cryptoviz.api.stream import KEEPALIVE, RETRY_MS, format_event
from cryptoviz.store.tables import currencies, currency_data
from cryptoviz.timeutil import utc

logger = logging.getLogger(__name__)

STREAM_ROWS = 100  # coins in a snapshot: the top by market cap
SNAPSHOT_EVERY = 30.0  # seconds between two full snapshots to every client
QUEUE_FRAMES = 64  # frames a client may have waiting before it is sent one snapshot instead
OVERLAP = timedelta(seconds=2)  # read again behind the newest updated_at: a late commit of another writer
MIN_GAP = 0.05  # seconds at least between two reads, however often the writer notifies
_TICK = 0.2  # the longest the poller takes to notice the server is stopping

Row = dict[str, Any]  # a CoinRow as JSON values
DATABASE_ERROR = '{"error": "database unavailable"}'


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The top rows (best first), the number of current coins, the newest observation and ``updated_at``."""

    rows: list[Row]
    total: int
    observed_at: datetime | None
    watermark: datetime | None


@dataclass(frozen=True, slots=True)
class Changes:
    """Rows written after a watermark (some may be unchanged), the newest observation and ``updated_at`` of
    all the rows written (those left out too)."""

    rows: list[Row]
    observed_at: datetime | None
    watermark: datetime | None


class LiveSource(Protocol):
    """What the hub reads: the whole top list, or what changed since a watermark."""

    def snapshot(self, rows: int) -> Snapshot: ...

    def changes(self, since: datetime | None, floor: float | None, ids: Iterable[str]) -> Changes: ...


def as_row(values: dict[str, Any], now: datetime | None = None,
           max_staleness: float = queries.DEFAULT_MAX_STALENESS) -> Row:
    """A ``currency_data`` + ``currencies`` row as the stream sends it (CoinRow, JSON values), with its age
    at ``now`` (default: the time of the call) unless it has one already."""
    values = dict(values)
    values["observed_at"] = utc(values["observed_at"])
    values["price_at"] = utc(values.get("price_at"))
    if isinstance(values.get("sources"), str):
        values["sources"] = [s for s in values["sources"].split(",") if s]
    if "age_s" not in values:
        queries.with_age(values, now or datetime.now(UTC), max_staleness)
    return CoinRow.model_validate(values).model_dump(mode="json")


_IDENTITY = {"id", "symbol", "name"}  # CoinRow fields of ``currencies``; the others are ``currency_data``'s
_COMPUTED = {"age_s", "stale"}  # CoinRow fields computed at the read (as_row), not stored
_STORED_FIELDS = [name for name in CoinRow.model_fields if name not in _COMPUTED]
_CHANGED_COLUMNS = [(currencies.c[name] if name in _IDENTITY else currency_data.c[name]).label(name)
                    for name in _STORED_FIELDS]


def _unchanged(old: Row | None, new: Row) -> bool:
    """The same row but for its age, which grows between two reads (a row read again is no change)."""
    return old is not None and all(old.get(k) == v for k, v in new.items() if k != "age_s")


class DatabaseSource:
    """:class:`LiveSource` over the application's database (portable SQL: SQLite and PostgreSQL)."""

    def __init__(self, engine: sa.Engine, max_staleness: float = queries.DEFAULT_MAX_STALENESS) -> None:
        self.engine = engine
        self.max_staleness = max_staleness  # seconds: an older value is sent as stale

    def snapshot(self, rows: int) -> Snapshot:
        # The watermark is read first: what is written meanwhile is read again by the next change query.
        c = currency_data.c
        with self.engine.connect() as conn:
            watermark, observed = conn.execute(sa.select(sa.func.max(c.updated_at), sa.func.max(c.observed_at))).one()
        total, top = queries.list_coins(self.engine, sort="market_cap", order="desc", limit=rows,
                                        max_staleness=self.max_staleness)
        return Snapshot([as_row(r) for r in top], total, utc(observed), utc(watermark))

    def changes(self, since: datetime | None, floor: float | None, ids: Iterable[str]) -> Changes:
        """Rows updated after ``since`` (less :data:`OVERLAP`); with ``floor``, only the coins in ``ids`` (those
        shown) and those with at least that market cap (the others cannot enter the list). One statement: the
        newest times of all the rows updated meanwhile, joined to the rows wanted."""
        c = currency_data.c
        recent = [c.updated_at > since - OVERLAP] if since is not None else []
        newest = (sa.select(sa.func.max(c.updated_at).label("newest_updated"),
                            sa.func.max(c.observed_at).label("newest_observed"))
                  .where(*recent).subquery("newest"))
        wanted = [sa.or_(c.market_cap >= floor, c.currency_id.in_(list(ids)))] if floor is not None else []
        rows = (sa.select(*_CHANGED_COLUMNS)
                .select_from(currency_data.join(currencies, currencies.c.id == c.currency_id))
                .where(*recent, *wanted).subquery("changed"))
        query = sa.select(newest, rows).select_from(newest.outerjoin(rows, sa.true()))
        with self.engine.connect() as conn:
            found = conn.execute(query).mappings().all()
        head = found[0]  # the aggregate makes one row at least
        updated = utc(head["newest_updated"])
        watermark = since if updated is None or (since is not None and updated < since) else updated
        now = datetime.now(UTC)
        return Changes([as_row({name: r[name] for name in _STORED_FIELDS}, now, self.max_staleness)
                        for r in found if r["id"] is not None],
                       utc(head["newest_observed"]), watermark)


# --- clients ---------------------------------------------------------------------------------------------


class Subscriber:
    """One client's waiting frames. Only touched from the event loop that serves the client."""

    __slots__ = ("frames", "limit", "resyncs", "_ready")

    def __init__(self, limit: int) -> None:
        self.frames: deque[bytes] = deque()
        self.limit = limit
        self.resyncs = 0  # times its queue was replaced by a snapshot
        self._ready = asyncio.Event()

    def offer(self, frame: bytes) -> bool:
        """Queue ``frame``; False (nothing queued) when the queue is full."""
        if len(self.frames) >= self.limit:
            return False
        self.frames.append(frame)
        self._ready.set()
        return True

    def replace(self, frame: bytes) -> None:
        """Drop what waits and queue ``frame`` alone (a snapshot, or the end of the stream)."""
        self.frames.clear()
        self.frames.append(frame)
        self._ready.set()

    async def next(self, timeout: float) -> bytes | None:
        """The next frame, or None when none came within ``timeout`` seconds."""
        if not self.frames:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
        return self.frames.popleft() if self.frames else None


_END = b""  # queued when the server stops; never sent


# --- the hub ---------------------------------------------------------------------------------------------


@dataclass
class HubStats:
    """Counters of one hub, since it was made."""

    snapshots_read: int = 0  # full reads of the top list
    polls: int = 0  # change queries
    errors: int = 0  # failed reads
    encoded: int = 0  # frames encoded (each once, whatever the number of clients)
    sent: int = 0  # frames queued to clients
    resyncs: int = 0  # queues replaced by a snapshot (slow clients)
    notified: int = 0  # notify() calls
    started: int = 0  # times the poller started
    seq: int = 0  # number of the last change
    subscribers: int = 0


def _rank_key(row: Row) -> tuple[bool, float, str]:
    """``list_coins``' market-cap order: NULL last, largest first, ties by id."""
    cap = row["market_cap"]
    return cap is None, -(cap or 0.0), row["id"]


def _iso(value: datetime | None) -> str | None:
    """A time as pydantic writes it (``...Z``)."""
    return None if value is None else utc(value).isoformat().replace("+00:00", "Z")


class LiveHub:
    """One application's live producer; ``events()`` is one client's stream (see the module's docs)."""

    def __init__(self, source: LiveSource, *, poll_interval: float, stop: threading.Event, rows: int = STREAM_ROWS,
                 snapshot_every: float = SNAPSHOT_EVERY, queue_frames: int = QUEUE_FRAMES,
                 keepalive: float | None = None) -> None:
        if poll_interval <= 0 or snapshot_every <= 0 or queue_frames < 1 or rows < 1:
            raise ValueError("poll_interval and snapshot_every must be > 0, queue_frames and rows >= 1")
        self.source = source
        self.poll_interval = poll_interval
        self.snapshot_every = snapshot_every
        self.queue_frames = queue_frames
        self.keepalive = poll_interval if keepalive is None else keepalive  # a comment after that long idle
        self.rows = rows
        self.stop = stop
        self.stats = HubStats()
        self._subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._error = format_event("error", DATABASE_ERROR)
        self._reset()

    @classmethod
    def over(cls, engine: sa.Engine, *, max_staleness: float = queries.DEFAULT_MAX_STALENESS,
             **options: Any) -> LiveHub:
        """A hub reading ``engine``'s database; rows older than ``max_staleness`` seconds are sent as stale."""
        return cls(DatabaseSource(engine, max_staleness), **options)

    def _reset(self) -> None:
        self._top: dict[str, Row] = {}
        self._total = 0
        self._observed: datetime | None = None  # the newest observation of any coin
        self._observed_sent: datetime | None = None  # ... as the last frame to every client said
        self._watermark: datetime | None = None
        self._ready = False  # the state above is current: a snapshot was read and every read since worked
        self._failing = False
        self._last_read = 0.0
        self._last_snapshot = 0.0
        self._snapshot_frame: tuple[int, bytes] | None = None

    # --- from any thread ------------------------------------------------------------------------------------

    def notify(self, _written: int = 0) -> None:
        """Something was committed: read now rather than at the next poll. Safe from any thread, a no-op
        while nobody listens; fits ``Pipeline(on_write=...)``, which passes the number of snapshots."""
        self.stats.notified += 1
        loop, wake, task = self._loop, self._wake, self._task
        if loop is None or wake is None or task is None or task.done():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(wake.set)

    # --- one client -----------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[bytes]:
        """One client's SSE bytes: the current snapshot, then deltas, snapshots, errors and keepalives. Ends
        when the server stops; the server cancels it when the client goes away."""
        yield f"retry: {RETRY_MS}\n\n".encode()
        if self.stop.is_set():
            return
        subscriber = self._subscribe()
        try:
            while True:
                frame = await subscriber.next(self.keepalive)
                if frame is None:
                    if self.stop.is_set():
                        return
                    yield KEEPALIVE
                elif frame == _END:
                    return
                else:
                    yield frame
        finally:
            self._subscribers.discard(subscriber)
            self.stats.subscribers = len(self._subscribers)

    def _subscribe(self) -> Subscriber:
        wake = self._ensure_running()
        subscriber = Subscriber(self.queue_frames)
        self._subscribers.add(subscriber)
        self.stats.subscribers = len(self._subscribers)
        if self._ready:
            self._send(subscriber, self._current_snapshot())
        elif self._failing:
            self._send(subscriber, self._error)  # and the snapshot once the database answers
        else:
            wake.set()  # no current state (first client, or nobody listened): read it now
        return subscriber

    def _ensure_running(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop or self._wake is None:
            # The first client, or the server started again on another loop: start afresh.
            self._subscribers.clear()
            self._reset()
            self._loop, self._wake = loop, asyncio.Event()
            self._task = loop.create_task(self._run(), name="live-hub")
            self.stats.started += 1
        return self._wake

    # --- the poller -----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self._subscribers:
                    self._ready = False  # nobody listens: no reads; the next client gets a fresh snapshot
                    await self._sleep(3600.0)
                    continue
                gap = MIN_GAP - (time.monotonic() - self._last_read)
                if gap > 0:
                    await asyncio.sleep(gap)
                await self._read()
                await self._sleep(self.poll_interval)
        finally:
            for subscriber in self._subscribers:
                subscriber.replace(_END)

    async def _sleep(self, seconds: float) -> None:
        """Until notified, ``seconds`` elapsed or the server stops."""
        wake = self._wake
        assert wake is not None
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and not wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(_TICK, left)):
                    await wake.wait()
        wake.clear()

    async def _read(self) -> None:
        """One read: the whole top list when due (or after a failure), else what changed."""
        self._last_read = time.monotonic()
        if self._wake is not None:
            self._wake.clear()  # it reads whatever was committed before: a notification meanwhile reads again
        try:
            if not self._ready or self._last_read - self._last_snapshot >= self.snapshot_every:
                snapshot = await anyio.to_thread.run_sync(self.source.snapshot, self.rows)
                self.stats.snapshots_read += 1
                self._recovered()
                self._apply_snapshot(snapshot)
            else:
                floor, ids = self._floor()
                changes = await anyio.to_thread.run_sync(self.source.changes, self._watermark, floor, ids)
                self.stats.polls += 1
                self._recovered()
                self._apply_changes(changes)
        except Exception as exc:  # noqa: BLE001 - a failed read never ends the streams
            self._failed(exc)

    def _floor(self) -> tuple[float | None, list[str]]:
        """The smallest market cap of a full top list (a coin below it cannot enter), and the coins in it."""
        if len(self._top) < self.rows:
            return None, []
        worst = max(self._top.values(), key=_rank_key)
        return worst["market_cap"], list(self._top)

    def _recovered(self) -> None:
        if self._failing:
            logger.info("stream: the database answers again")
        self._failing = False

    def _failed(self, exc: Exception) -> None:
        self.stats.errors += 1
        if not self._failing:
            if isinstance(exc, sa.exc.SQLAlchemyError):
                logger.warning("stream: the database does not answer (%s)", type(exc).__name__)
            else:
                logger.error("stream: reading the changes failed", exc_info=exc)
        self._failing = True
        self._ready = False  # the next read is a snapshot
        self._broadcast(self._error)

    def _apply_snapshot(self, snapshot: Snapshot) -> None:
        self._top = {row["id"]: row for row in snapshot.rows}
        self._total = snapshot.total
        self._observed = snapshot.observed_at
        self._advance(snapshot.watermark)
        self._ready = True
        self._last_snapshot = time.monotonic()
        self.stats.seq += 1
        self._observed_sent = self._observed
        frame = self._current_snapshot()
        for subscriber in self._subscribers:  # it holds whatever waits: that is dropped
            subscriber.replace(frame)
            self.stats.sent += 1

    def _apply_changes(self, changes: Changes) -> None:
        self._advance(changes.watermark)
        if changes.observed_at is not None and (self._observed is None or changes.observed_at > self._observed):
            self._observed = changes.observed_at
        changed = {row["id"]: row for row in changes.rows if not _unchanged(self._top.get(row["id"]), row)}
        removed: list[str] = []
        if changed:
            merged = {**self._top, **changed}
            if len(merged) > self.rows:
                ranked = sorted(merged.values(), key=_rank_key)
                merged = {row["id"]: row for row in ranked[:self.rows]}
                removed = [row["id"] for row in ranked[self.rows:] if row["id"] in self._top]
            changed = {key: row for key, row in changed.items() if key in merged}  # the others stay out
            self._top = merged
        if not changed and not removed and self._observed == self._observed_sent:
            return  # nothing new (rows read again behind the watermark, or coins that stay out of the list)
        self.stats.seq += 1
        self._observed_sent = self._observed
        body = {"seq": self.stats.seq, "observed_at": _iso(self._observed), "coins": list(changed.values()),
                "removed": removed}
        self._broadcast(self._encode("delta", body))

    def _advance(self, watermark: datetime | None) -> None:
        if watermark is not None and (self._watermark is None or watermark > self._watermark):
            self._watermark = watermark

    # --- frames ---------------------------------------------------------------------------------------------

    def _encode(self, event: str, body: dict[str, Any]) -> bytes:
        self.stats.encoded += 1
        return format_event(event, orjson.dumps(body).decode(), event_id=str(body["seq"]))

    def _current_snapshot(self) -> bytes:
        """The current state as a snapshot frame, encoded once per change."""
        if self._snapshot_frame is None or self._snapshot_frame[0] != self.stats.seq:
            body = {"seq": self.stats.seq, "observed_at": _iso(self._observed), "total": self._total,
                    "coins": sorted(self._top.values(), key=_rank_key)}
            self._snapshot_frame = (self.stats.seq, self._encode("snapshot", body))
        return self._snapshot_frame[1]

    def _broadcast(self, frame: bytes) -> None:
        for subscriber in self._subscribers:
            self._send(subscriber, frame)

    def _send(self, subscriber: Subscriber, frame: bytes) -> None:
        """Queue ``frame``; a full queue is replaced by the current snapshot (the error while failing)."""
        if not subscriber.offer(frame):
            subscriber.resyncs += 1
            self.stats.resyncs += 1
            subscriber.replace(self._current_snapshot() if self._ready else self._error)
        self.stats.sent += 1
