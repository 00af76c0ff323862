"""What a source is, said once.

Each source module ends with a :class:`SourceSpec` (its ``SPEC``), and :mod:`cryptoviz.sources.registry`
lists them all. Everything else derives from the specs: which names ``CRYPTOVIZ_SOURCES`` and
``CRYPTOVIZ_TRUST`` accept, which sources run by default, how each is built, its parser (for replaying
recorded bodies), its trust, how often it is fetched and how many requests it may make, and how the
reconciler joins its coins to other sources' (its id namespace).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from cryptoviz.sources.base import ParseFn, Source

if TYPE_CHECKING:
    from cryptoviz.config import Settings
    from cryptoviz.sources.http import HttpClient

SourceKind = Literal["pull", "push"]
SECONDS_PER_MONTH = 30 * 86_400


@dataclass(frozen=True, slots=True)
class IdNamespace:
    """Whose coin ids a source reports. Sources of one namespace (an API and the same site's pages) share
    ids, so their quotes of one coin are joined by id.

    ``ids_are_slugs``: an id is also a slug (a CoinGecko id equals CoinMarketCap's slug for most coins).
    ``canonical``: a coin reported in this namespace is stored under this namespace's id.
    ``column``: the ``currencies`` column that keeps the id (``None``: kept in ``source_ids`` only).
    """

    name: str
    ids_are_slugs: bool = False
    canonical: bool = False
    column: str | None = None


@dataclass(frozen=True, slots=True)
class RequestBudget:
    """How many requests a source may make: a rate per minute with a burst, and a monthly quota (a
    free plan's calls a month) that sets the shortest interval between two fetches."""

    per_minute: float
    burst: int = 1
    per_month: int | None = None

    def shortest_interval(self, requests_per_fetch: int = 1) -> float:
        """Seconds between fetches of ``requests_per_fetch`` requests that keep within the monthly quota."""
        if self.per_month is None:
            return 0.0
        return math.ceil(SECONDS_PER_MONTH * requests_per_fetch / self.per_month)


def _never(_settings: Settings) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One source, declared once.

    ``build(settings, http)`` makes the source (``http`` is shared by all sources; a push source may
    ignore it). ``settings`` names the ``Settings`` fields it reads; ``key_setting`` names a key it cannot
    work without (missing: the source is skipped with ``missing_key`` as the warning). ``interval`` is its
    default seconds between fetches (``None``: every cycle); a longer interval than the cycle's reuses
    the last quotes in between. ``default(settings)`` says whether it runs when ``CRYPTOVIZ_SOURCES`` is
    unset. ``extension`` is the file extension of its recorded bodies.
    """

    name: str
    title: str
    kind: SourceKind
    namespace: IdNamespace
    trust: float
    parse: ParseFn
    build: Callable[[Settings, HttpClient], Source]
    budget: RequestBudget
    settings: tuple[str, ...] = ()
    interval: float | None = None
    key_setting: str | None = None
    missing_key: str = ""
    default: Callable[[Settings], bool] = field(default=_never)
    extension: str = "json"
    # Quotes of exchange pairs (base asset + quote asset) rather than coins: mapped to coins and converted
    # to the vs currency by cryptoviz.pairs before they are reconciled.
    pairs: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.trust <= 1.0:
            raise ValueError(f"source {self.name!r}: trust must be within (0, 1], got {self.trust}")
        if self.key_setting is not None and self.key_setting not in self.settings:
            raise ValueError(f"source {self.name!r}: key_setting {self.key_setting!r} is not in its settings")
