"""What the consensus remembers of the previous cycle: the state of its hysteresis, passed in explicitly.

The collector keeps the ``ConsensusMemory`` of its last reconciliation (``remember(snapshots)``) and hands
it to the next one, as it does with the previous prices; ``reconcile`` itself stays a pure function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptoviz.models import CoinSnapshot

OUTLIER = "outlier"
DISAGREEMENT = "disagreement"


@dataclass(frozen=True, slots=True)
class ConsensusMemory:
    """``excluded``: coin_id -> the sources left out as outliers (re-admitted only within half the limit);
    ``unverified``: the coins whose price was unverified (their previous price settles nothing)."""

    excluded: Mapping[str, frozenset[str]] = field(default_factory=dict)
    unverified: frozenset[str] = frozenset()


EMPTY = ConsensusMemory()


def remember(snapshots: Sequence[CoinSnapshot]) -> ConsensusMemory:
    """The memory the next cycle needs of ``snapshots``."""
    excluded: dict[str, frozenset[str]] = {}
    unverified = []
    for s in snapshots:
        if s.unverified:
            unverified.append(s.coin_id)
        dropped = [v.source for v in s.sources if v.dropped_reason == OUTLIER]
        if dropped:
            excluded[s.coin_id] = excluded.get(s.coin_id, frozenset()) | frozenset(dropped)
    return ConsensusMemory(excluded, frozenset(unverified))
