"""What the reconciler keeps of one quote: a row with its source's trust and the quote's weight."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from cryptoviz.models import SourceQuote

MIN_FRESHNESS = 0.05
UNKNOWN_SOURCE_TRUST = 0.5  # trust of a source missing from a trust mapping

Trust = Mapping[str, float] | Callable[[str], float]

# (source, quote, trust, weight, price, market_cap, volume_24h, source_id, last_updated, time): weight =
# trust x freshness, or STALE_WEIGHT; market_cap and volume_24h None for a NaN (no reading); time = the
# quote's POSIX time (its last_updated, else collected_at). What the consensus reads of every quote is
# copied here while the quote is at hand (in the CPU cache).
Row = tuple[str, SourceQuote, float, float, float, float | None, float | None, str, datetime | None, float]
STALE_WEIGHT = -1.0


def trust_lookup(trust: Trust) -> Callable[[str], float]:
    """Source -> its trust clamped to [0, 1] (NaN counts as 0)."""
    def lookup(source: str) -> float:
        value = float(trust.get(source, UNKNOWN_SOURCE_TRUST) if isinstance(trust, Mapping) else trust(source))
        return value if 0.0 < value <= 1.0 else 1.0 if value > 1.0 else 0.0  # NaN, -0.0: 0.0

    return lookup
