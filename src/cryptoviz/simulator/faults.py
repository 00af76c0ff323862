"""Fault injection for the simulator: what can go wrong, how often, and where.

A fault spec is a comma-separated list of ``name[@source][=probability]``:

* ``rate-limit``    429 with ``Retry-After: 1`` and the source's real error body;
* ``server-error``  500;
* ``slow``          the answer is delayed by ``slow_seconds``;
* ``garbage``       200 with a body that is not the page: the real body cut short, or binary junk
                    (alternately), as a broken proxy or a dropped connection would leave it;
* ``bad-key``       401 with the source's invalid-key error body, quoting the key it was sent (some
                    services echo it; CryptoViz must never pass it on); CoinPaprika and HTML pages: 403;
* ``malformed``     a few items of the page are broken: a price ``"n/a"``, a missing id, an item that is a
                    bare string (HTML pages: a price ``"n/a"`` only);
* ``outlier``       one source (``coinmarketcap`` unless ``outlier@<source>``) reports one coin
                    (``ethereum``) at 10x its price from that source's third cycle on; a cycle is a
                    successful request for the first page. Its probability is ignored: it is a schedule.

The exchanges' websocket feeds (``binance``, ``coinbase``, ``kraken``; see :mod:`cryptoviz.simulator.feeds`)
have faults of their own, named one by one (``all`` leaves them out):

* ``disconnect``    the server drops the connection without a close frame, ``feed_fault_after`` seconds
                    after it opened;
* ``stall``         from then on the server sends nothing, but keeps the connection open;
* ``server-close``  the server closes the connection then, as at an exchange's age limit (Binance first
                    announces it with ``serverShutdown``);
* ``sequence-gap``  Coinbase skips ``sequence_skip`` sequence numbers (each tick with the probability);
* ``flood``         a slow consumer's view: ``flood_factor`` copies of each tick's frames;

and, on a feed, ``malformed`` adds a frame with a few broken items to a tick, and ``garbage`` a frame that
is not JSON (cut short or binary junk). A connection fault is drawn once per connection, a frame fault
each tick.

``none`` disables everything, ``all`` enables all seven request faults, ``demo`` is
:meth:`Faults.demo_default`.
Without ``@source`` a fault applies to every source; a rule naming a source wins over a general one.
Unless ``consecutive_errors`` is set, a source never answers two requests in a row with an error
(``rate-limit``, ``server-error``, ``garbage`` or ``bad-key``), so one retry always succeeds; with it, a
probability of
1 makes a source fail every time (a storm). Every decision is drawn from the seed, the source and the
request number.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cryptoviz.config import known_sources

FAULT_NAMES = ("rate-limit", "server-error", "slow", "malformed", "outlier", "garbage", "bad-key")
# The websocket feeds' own faults (malformed and garbage apply to them too).
FEED_FAULT_NAMES = ("disconnect", "stall", "server-close", "sequence-gap", "flood")
CONNECTION_FAULTS = ("disconnect", "stall", "server-close")
KNOWN_FAULTS = FAULT_NAMES + FEED_FAULT_NAMES
ERROR_FAULTS = ("rate-limit", "server-error", "garbage", "bad-key")
# Faults added later are drawn after everything else, so that a seed keeps making the decisions it made
# before they existed.
_LATE_FAULTS = ("garbage", "bad-key")
DEFAULT_PROBABILITY: dict[str, float] = {
    "rate-limit": 0.2, "server-error": 0.2, "slow": 0.2, "malformed": 1.0, "outlier": 1.0, "garbage": 0.2,
    "bad-key": 0.2, "disconnect": 1.0, "stall": 1.0, "server-close": 1.0, "sequence-gap": 0.2, "flood": 1.0,
}
DEMO_ERROR_PROBABILITY = 0.08
DEMO_FEED_MALFORMED = 0.05  # a feed tick (a second): one broken frame in twenty

ItemStyle = Literal["coingecko", "coinmarketcap", "coinpaprika", "html"]
MALFORMED_KINDS = ("price-string", "missing-id", "not-an-object")


@dataclass(frozen=True, slots=True)
class FaultRule:
    """``name`` happens with ``probability`` on each request to ``source`` (every source when None)."""

    name: str
    probability: float = 1.0
    source: str | None = None

    def __post_init__(self) -> None:
        if self.name not in KNOWN_FAULTS:
            raise ValueError(f"unknown fault {self.name!r}; known: {', '.join(KNOWN_FAULTS)}, none, all, demo")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability of {self.name!r} must be within [0, 1], got {self.probability}")
        if self.source is not None and self.source not in known_sources():
            raise ValueError(f"unknown source {self.source!r} for fault {self.name!r}; "
                             f"known: {', '.join(known_sources())}")

    def __str__(self) -> str:
        where = f"@{self.source}" if self.source else ""
        return f"{self.name}{where}={self.probability:g}"


@dataclass(frozen=True, slots=True)
class Faults:
    """Which faults the simulator injects (immutable; the running state lives in :class:`FaultInjector`)."""

    rules: tuple[FaultRule, ...] = ()
    slow_seconds: float = 3.0
    malformed_items: int = 3
    outlier_source: str = "coinmarketcap"
    outlier_coin: str = "ethereum"  # a CoinGecko id
    outlier_factor: float = 10.0
    outlier_from_cycle: int = 3
    consecutive_errors: bool = False
    # the websocket feeds: when a connection fault hits, what a flood multiplies, how many numbers a gap skips
    feed_fault_after: float = 3.0
    flood_factor: int = 50
    sequence_skip: int = 3

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def none(cls) -> Faults:
        return cls()

    @classmethod
    def all(cls, **options: Any) -> Faults:
        return cls(rules=tuple(FaultRule(n, DEFAULT_PROBABILITY[n]) for n in FAULT_NAMES), **options)

    @classmethod
    def demo_default(cls) -> Faults:
        """What ``cryptoviz demo`` runs with: broken items, an outlier, and rare one-off errors; on the
        exchanges' feeds, which tick every second, a broken frame now and then."""
        return cls(rules=(
            FaultRule("malformed", 1.0),
            FaultRule("outlier", 1.0),
            FaultRule("rate-limit", DEMO_ERROR_PROBABILITY),
            FaultRule("server-error", DEMO_ERROR_PROBABILITY),
            *(FaultRule("malformed", DEMO_FEED_MALFORMED, exchange) for exchange in ("binance", "coinbase", "kraken")),
        ))

    @classmethod
    def parse(cls, spec: str | None, **options: Any) -> Faults:
        """Parse ``"rate-limit,server-error@coingecko=0.5,outlier@coingecko"``; ``options`` set the rest."""
        text = (spec or "").strip().lower()
        if text in ("", "none", "off"):
            return cls(**options)
        if text == "all":
            return cls.all(**options)
        if text in ("demo", "default"):
            return replace(cls.demo_default(), **options)
        rules: list[FaultRule] = []
        outlier_source: str | None = None
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            head, sep, number = part.partition("=")
            name, at, source = head.strip().partition("@")
            name, source = name.strip(), source.strip()
            if name in ("none", "all", "demo"):
                raise ValueError(f"{name!r} cannot be combined with other faults")
            try:
                probability = float(number) if sep else DEFAULT_PROBABILITY.get(name, 1.0)
            except ValueError:
                raise ValueError(f"probability of {name!r} is not a number: {number!r}") from None
            if at and not source:
                raise ValueError(f"missing source after '@' in {part!r}")
            if name == "outlier" and source:
                outlier_source, source = source, ""
                if outlier_source not in known_sources():
                    raise ValueError(f"unknown source {outlier_source!r} for fault 'outlier'; "
                                     f"known: {', '.join(known_sources())}")
            rules.append(FaultRule(name, probability, source or None))
        if outlier_source is not None:
            options.setdefault("outlier_source", outlier_source)
        return cls(rules=tuple(rules), **options)

    @classmethod
    def coerce(cls, value: Faults | str | None) -> Faults:
        return value if isinstance(value, Faults) else cls.parse(value)

    # --- queries -------------------------------------------------------------------------------

    def probability(self, name: str, source: str) -> float:
        specific = [r.probability for r in self.rules if r.name == name and r.source == source]
        if specific:
            return specific[-1]
        general = [r.probability for r in self.rules if r.name == name and r.source is None]
        return general[-1] if general else 0.0

    @property
    def names(self) -> tuple[str, ...]:
        """The enabled fault names, in canonical order."""
        return tuple(n for n in KNOWN_FAULTS if any(r.name == n and r.probability > 0 for r in self.rules))

    @property
    def outlier_enabled(self) -> bool:
        return "outlier" in self.names

    def describe(self) -> str:
        """One line for humans: ``malformed, outlier (coinmarketcap: ethereum x10 from cycle 3), ...``."""
        if not self.rules:
            return "none"
        parts: list[str] = []
        for rule in self.rules:
            if rule.probability <= 0:
                continue
            if rule.name == "outlier":
                parts.append(f"outlier ({self.outlier_source}: {self.outlier_coin} x{self.outlier_factor:g} "
                             f"from cycle {self.outlier_from_cycle})")
                continue
            where = f"@{rule.source}" if rule.source else ""
            chance = "" if rule.probability >= 1 else f" {rule.probability:.0%}"
            parts.append(f"{rule.name}{where}{chance}")
        return ", ".join(parts) or "none"

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.rules) or "none"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do to one request."""

    source: str
    request: int  # 1-based number of this request to the source
    cycle: int  # cycles served so far, this one included when it is a first page
    error: str | None = None  # "rate-limit", "server-error", "garbage" or "bad-key"
    delay: float = 0.0
    malformed_seed: int | None = None  # set when items must be broken
    outlier: bool = False


@dataclass(slots=True)
class _SourceState:
    requests: int = 0
    cycles: int = 0
    last_was_error: bool = False
    injected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_NAMES, 0))


class FaultInjector:
    """Decides, deterministically from the seed, which faults hit each request. Thread-safe."""

    def __init__(self, faults: Faults, seed: int = 0) -> None:
        self.faults = faults
        self.seed = seed
        self._lock = threading.Lock()
        self._sources: dict[str, _SourceState] = {}

    def decide(self, source: str, first_page: bool, *, stream: str | None = None) -> Decision:
        """The faults of the next request to ``source``. ``stream`` counts the requests of another route of
        the same source apart (its history routes): ``source``'s rules apply, its schedule stays its own."""
        faults = self.faults
        with self._lock:
            key = stream or source
            state = self._sources.setdefault(key, _SourceState())
            state.requests += 1
            rng = random.Random(f"{self.seed}/faults/{key}/{state.requests}")
            draws = {name: rng.random() for name in FAULT_NAMES if name not in _LATE_FAULTS}
            malformed_seed = rng.getrandbits(32)
            draws.update((name, rng.random()) for name in _LATE_FAULTS)

            def hit(name: str) -> bool:
                return draws[name] < faults.probability(name, source)

            error: str | None = None
            if faults.consecutive_errors or not state.last_was_error:
                error = next((name for name in ERROR_FAULTS if hit(name)), None)
            delay = faults.slow_seconds if hit("slow") else 0.0
            if delay:
                state.injected["slow"] += 1
            if error is not None:
                state.last_was_error = True
                state.injected[error] += 1
                return Decision(source, state.requests, state.cycles, error=error, delay=delay)
            state.last_was_error = False
            if first_page:
                state.cycles += 1
            outlier = (faults.outlier_enabled and source == faults.outlier_source
                       and state.cycles >= faults.outlier_from_cycle)
            if outlier:
                state.injected["outlier"] += 1
            malformed = hit("malformed") and faults.malformed_items > 0
            if malformed:
                state.injected["malformed"] += 1
            return Decision(source, state.requests, state.cycles, delay=delay,
                            malformed_seed=malformed_seed if malformed else None, outlier=outlier)

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                name: {"requests": s.requests, "cycles": s.cycles, "faults": dict(s.injected)}
                for name, s in sorted(self._sources.items())
            }


def price_factors(faults: Faults, decision: Decision) -> dict[str, float]:
    """The per-coin price multipliers a decision asks for (the outlier)."""
    return {faults.outlier_coin: faults.outlier_factor} if decision.outlier else {}


def corrupt_items(items: list[Any], style: ItemStyle, count: int, seed: int) -> list[Any]:
    """A copy of ``items`` with ``count`` of them broken, kinds in turn (see ``MALFORMED_KINDS``)."""
    if not items or count <= 0:
        return list(items)
    rng = random.Random(seed)
    broken = list(items)
    chosen = sorted(rng.sample(range(len(items)), min(count, len(items))))
    kinds = ("price-string",) if style == "html" else MALFORMED_KINDS
    for n, index in enumerate(chosen):
        original = broken[index]
        if not isinstance(original, dict):
            continue
        broken[index] = _break(original, kinds[n % len(kinds)], style)
    return broken


def corrupt_chart(chart: dict[str, Any], count: int, seed: int) -> dict[str, Any]:
    """A copy of a ``market_chart`` body with ``count`` price points broken, kinds in turn: a price
    ``"n/a"``, a pair without its price, a point that is a bare string."""
    prices = list(chart.get("prices") or [])
    if not prices or count <= 0:
        return dict(chart)
    rng = random.Random(seed)
    for n, index in enumerate(sorted(rng.sample(range(len(prices)), min(count, len(prices))))):
        stamp = prices[index][0]
        prices[index] = [[stamp, "n/a"], [stamp], f"{stamp}"][n % 3]
    return {**chart, "prices": prices}


def _break(item: Mapping[str, Any], kind: str, style: ItemStyle) -> Any:
    if kind == "not-an-object":
        return str(item.get("name", "n/a"))
    copy = dict(item)
    if kind == "missing-id":
        copy.pop("id", None)
        if style == "coinmarketcap":
            copy.pop("slug", None)
        return copy
    # price-string: in every quote of a CoinMarketCap item ("quote") or a CoinPaprika one ("quotes")
    nested = "quotes" if style == "coinpaprika" else "quote"
    if nested in copy and isinstance(copy[nested], dict):
        copy[nested] = {code: {**q, "price": "n/a"} for code, q in copy[nested].items()}
    else:
        copy["current_price"] = "n/a"
    return copy

