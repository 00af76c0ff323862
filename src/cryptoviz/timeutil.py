"""Time in one place: every stored or compared time is UTC, and a naive datetime is taken as UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def utc_now() -> datetime:
    """Now, UTC-aware. Code that needs a pinned clock takes a ``now`` callable defaulting to this."""
    return datetime.now(UTC)


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime; naive values are UTC already (SQLite returns them so)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
