"""What every source provides: fetch raw pages (I/O) and parse them (pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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
