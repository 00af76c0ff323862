"""What every source provides: fetch raw pages (I/O) and parse them (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from cryptoviz.models import ParseResult


@dataclass(frozen=True, slots=True)
class RawPage:
    """One response body exactly as received; what ``cryptoviz record`` saves."""

    source: str
    body: bytes
    extension: str  # "json" or "html"
    fetched_at: datetime
    url: str = ""


# A pure parser: body + collection time + vs currency -> quotes and rejections.
# It raises SourceError for an error envelope and ParseError for a body that is not the expected shape.
ParseFn = Callable[[bytes, datetime, str], ParseResult]


class PullSource(Protocol):
    """A source fetched once per cycle (or per its own interval): APIs and web pages."""

    name: str

    def fetch(self) -> list[RawPage]:
        """Every page this source serves for one cycle; raises SourceError when none could be had."""
        ...

    def parse(self, page: RawPage) -> ParseResult:
        """Pure: delegate to the module's parse function."""
        ...


@runtime_checkable
class PushSource(Protocol):
    """A source that pushes: a background connection (started and stopped with the pipeline) receives
    frames; each cycle the collector takes the frames received since the last one, parses them and keeps
    the latest quote per coin, so a quiet coin keeps its last value while it is fresh.

    A frame is a :class:`RawPage` with ``extension`` :data:`FRAME` and ``fetched_at`` = receive time:
    recorded and replayed like pages.
    """

    name: str

    def start(self) -> None:
        """Open the connection in the background; returns at once."""
        ...

    def stop(self) -> None:
        """Close the connection; frames not taken yet may be dropped."""
        ...

    def take_frames(self) -> list[RawPage]:
        """The frames received since the last call, oldest first."""
        ...

    def parse(self, page: RawPage) -> ParseResult:
        """Pure: the quotes of one frame."""
        ...

    def status(self) -> FeedStatus:
        """The connection's state now."""
        ...


@dataclass(slots=True)
class FeedStatus:
    """What a push source reports of its connection (``cryptoviz status``, ``/api/sources``, ``/metrics``)."""

    connected: bool = False
    since: datetime | None = None  # when the current connection opened
    last_message_at: datetime | None = None  # any frame, heartbeats included
    reconnects: int = 0  # connections opened again after the first one
    stalls: int = 0  # connections given up for silence (no frame or heartbeat for the stall timeout)
    gaps: int = 0  # sequence gaps seen (frames the exchange numbered but never sent)
    dropped: int = 0  # frames dropped because the collector did not take them in time
    disabled: str | None = None  # why the feed is switched off (e.g. HTTP 451 for this region), else None
    last_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"connected": self.connected, "since": _iso(self.since), "last_message_at": _iso(self.last_message_at),
                "reconnects": self.reconnects, "stalls": self.stalls, "gaps": self.gaps, "dropped": self.dropped,
                "disabled": self.disabled, "last_error": self.last_error}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


Source = PullSource | PushSource
FRAME = "frame"  # RawPage.extension of a pushed frame


def is_push(source: object) -> bool:
    return isinstance(source, PushSource)


# --- text from the outside world -------------------------------------------------------------------

# The store's column sizes (cryptoviz.store.tables): a longer value from a source is rejected with its item
# rather than failing, in PostgreSQL, the write of every batch it is in.
MAX_TEXT = 200  # ids, slugs, names
MAX_SYMBOL = 64
MAX_SOURCE_ID = 64  # CoinMarketCap's numeric id, kept in currencies.coinmarketcap_id

# C0 controls (tab, line feed and carriage return aside) and DEL: never part of a coin's name, symbol or id.
# NUL in particular is refused by PostgreSQL's text columns: one such name would fail every write of its batch.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_character(text: str) -> str | None:
    """The first control character in ``text`` as ``U+0000``, or ``None`` when there is none."""
    found = _CONTROL.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def checked_text(value: str, field: str, max_length: int, error: Callable[[str, str, str], Exception]) -> str:
    """``value`` when the store can keep it as it is; else raises ``error(field, reason, detail)`` with the
    reason ``bad_text`` (a control character) or ``too_long``."""
    if (control := control_character(value)) is not None:
        raise error(field, "bad_text", f"contains the control character {control}")
    if len(value) > max_length:
        raise error(field, "too_long", f"{len(value)} characters, at most {max_length} can be kept")
    return value


def printable(text: str) -> str:
    """``text`` with control characters replaced by U+FFFD, for labels that are stored (rejections)."""
    return _CONTROL.sub("\ufffd", text)


def brief_text(value: Any, limit: int = 200) -> str:
    """A decoded JSON value as at most ``limit`` characters of message text. Containers are named, never
    rendered: a hostile body can nest a thousand levels deep, and its ``str()`` would exhaust the
    recursion limit (or take seconds for a huge one)."""
    if isinstance(value, dict | list):
        return f"<{type(value).__name__} of {len(value)}>"
    return printable(value if isinstance(value, str) else repr(value))[:limit]
