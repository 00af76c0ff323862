"""Which observations make a history row: write on change, with a heartbeat.

A coin's snapshot is *recorded* (a ``currency_data_history`` row and its ``source_quotes`` rows) when,
since the coin's last recorded snapshot:

* a source's own value moved: its ``last_updated`` is newer (a source without one: its price changed),
  or a source appeared; a live feed (``volatile``: an exchange ticking every second) counts only when its
  own price moved by more than ``deviation``, or one-second data would make a row a second;
* the consensus price moved by more than ``deviation`` (relative; ``CRYPTOVIZ_HISTORY_DEVIATION``);
* or ``heartbeat`` seconds passed (``CRYPTOVIZ_HISTORY_HEARTBEAT``), so a quiet coin still shows it was
  watched, and a gap in its history means CryptoViz was not running.

The first snapshot of a coin is recorded; an observation not newer than the last recorded one is not.
Every snapshot updates the coin's current value whatever the gate says. The decision travels with the
snapshot (``CoinSnapshot.record``), so a replayed or redelivered message is stored the same way again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cryptoviz.models import CoinSnapshot
from cryptoviz.validate import timestamp


@dataclass(slots=True)
class _Recorded:
    """A coin's last recorded snapshot: when, at what price, and each source's (time, price) then."""

    at: float
    price: float
    sources: dict[str, tuple[float | None, float]]


class HistoryGate:
    """Marks each snapshot ``record=True/False`` (see the module docstring); keeps one small state per coin."""

    def __init__(self, *, deviation: float, heartbeat: float, volatile: frozenset[str] = frozenset()) -> None:
        if deviation < 0:
            raise ValueError(f"deviation must be >= 0, got {deviation!r}")
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be > 0 seconds, got {heartbeat!r}")
        self.deviation = deviation
        self.heartbeat = heartbeat
        self.volatile = volatile
        self._last: dict[tuple[str, str], _Recorded] = {}

    def __len__(self) -> int:
        return len(self._last)

    def apply(self, snapshots: Sequence[CoinSnapshot]) -> list[CoinSnapshot]:
        """The snapshots, each with ``record`` set; the state moves on with every recorded one."""
        out = []
        for s in snapshots:
            record = self._changed(s)
            if record:
                self._last[(s.coin_id, s.currency)] = _Recorded(
                    timestamp(s.observed_at), s.price,
                    {v.source: (_time(v.last_updated), v.price) for v in s.sources})
            out.append(s if s.record is record else replace(s, record=record))
        return out

    def _changed(self, s: CoinSnapshot) -> bool:
        last = self._last.get((s.coin_id, s.currency))
        if last is None:
            return True
        at = timestamp(s.observed_at)
        if at <= last.at:
            return False  # late, or the same observation again
        if at - last.at >= self.heartbeat:
            return True
        if abs(s.price - last.price) > self.deviation * last.price:
            return True
        for v in s.sources:
            seen = last.sources.get(v.source)
            if seen is None:
                return True
            updated, price = seen
            if v.source in self.volatile:
                if abs(v.price - price) > self.deviation * price:
                    return True
                continue
            now = _time(v.last_updated)
            if now is not None and (updated is None or now > updated):
                return True
            if now is None and v.price != price:
                return True
        return False


def _time(value: datetime | None) -> float | None:
    return timestamp(value) if value is not None else None
