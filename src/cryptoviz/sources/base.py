"""What every source provides: fetch raw pages (I/O) and parse them (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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


class Source(Protocol):
    name: str

    def fetch(self) -> list[RawPage]:
        """Every page this source serves for one cycle; raises SourceError when none could be had."""
        ...

    def parse(self, page: RawPage) -> ParseResult:
        """Pure: delegate to the module's parse function."""
        ...


# --- text from the outside world -------------------------------------------------------------------

# C0 controls (tab, line feed and carriage return aside) and DEL: never part of a coin's name, symbol or id.
# NUL in particular is refused by PostgreSQL's text columns: one such name would fail every write of its batch.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_character(text: str) -> str | None:
    """The first control character in ``text`` as ``U+0000``, or ``None`` when there is none."""
    found = _CONTROL.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


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
