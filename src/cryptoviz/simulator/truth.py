"""Ground truth for the reconciliation: a true price path per coin and simulated sources that report it.

Pure (no HTTP, no clock): ``run_scenario(scenario)`` yields, cycle after cycle, the ``SourceQuote``s the
sources would deliver and the true prices they were made from. The truth is for tests and benchmarks to
measure against; the pipeline never sees it.

Each source reports truth + its own noise, late (``lag``: its value is that old although its
``last_updated`` says it is fresh), updated every ``cadence`` seconds (``last_updated`` = the update; a
page has no timestamp, so its quote carries only ``collected_at``), rounded as pages print prices, with a
small constant basis (an exchange's USDT market is not exactly USD). Faults (``Fault``) bend one source's
reports of one coin for a span of cycles. A source with no answer in a cycle is presented again with its
last quotes, as the collector's quote books do, so that ages grow until validation calls them stale.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cryptoviz.models import SourceQuote
from cryptoviz.simulator.pages import cmc_price, coingecko_price

START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
STEP = 10.0  # seconds between two points of a true path
CYCLE = 60.0  # seconds between two collection cycles
ORIGIN = 3600.0  # the paths start an hour before the first cycle: lags and cadences have a past


@dataclass(frozen=True, slots=True)
class CoinTruth:
    """A coin as every source names it, and how its true price moves.

    ``vol``: relative move per sqrt(second) of the random walk (0: a flat price); ``peg``: a stablecoin's
    peg, to which its price is pulled back; ``jumps``: (cycle, factor) real moves every source follows;
    ``listed``: the cycles [first, last) during which the coin exists at all.
    """

    coin_id: str
    cmc_id: str
    symbol: str
    name: str
    price: float
    vol: float = 1.5e-4
    peg: float | None = None
    jumps: tuple[tuple[int, float], ...] = ()
    listed: tuple[int, int] = (0, 1 << 30)
    exchanges: bool = True  # traded on the simulated exchanges


@dataclass(frozen=True, slots=True)
class SourceModel:
    """How one simulated source sees the market (see the module docstring)."""

    name: str
    noise: float  # relative, one standard deviation per update
    cadence: float  # seconds between updates
    lag: float = 0.0  # seconds its value is behind its timestamp
    basis: float = 0.0  # constant relative offset
    page_of: str | None = None  # a page shows its site's API value (same update, same noise), rounded
    exchange: bool = False


SOURCES: dict[str, SourceModel] = {m.name: m for m in (
    SourceModel("coingecko", noise=0.0008, cadence=60.0, lag=30.0),
    SourceModel("coinmarketcap", noise=0.0006, cadence=60.0, lag=20.0),
    SourceModel("coinpaprika", noise=0.001, cadence=120.0, lag=60.0),
    SourceModel("coingecko-html", noise=0.0, cadence=300.0, page_of="coingecko"),
    SourceModel("coinmarketcap-html", noise=0.0, cadence=300.0, page_of="coinmarketcap"),
    SourceModel("binance", noise=0.0002, cadence=10.0, basis=0.0003, exchange=True),
    SourceModel("coinbase", noise=0.0002, cadence=10.0, exchange=True),
    SourceModel("kraken", noise=0.0003, cadence=10.0, basis=-0.0002, exchange=True),
)}
ALL_SOURCES = tuple(SOURCES)

# Fault kinds
SCALE = "scale"  # the value x factor (outlier, decimal shift, wrong unit, collusion, flash crash)
MISSING = "missing"  # no answer: the last quotes are presented again (outage, 429 storm, intermittent)
FREEZE = "freeze"  # the same value again and again, with a fresh timestamp
LAG = "lag"  # the value is ``seconds`` behind its timestamp
SKEW = "skew"  # the timestamp is ``seconds`` off (ahead when positive)
HOVER = "hover"  # the value x factor, the factor wobbling around ``factor`` by +-``amount``
DELIST = "delist"  # the source stops listing the coin
VALUE_FAULTS = frozenset({SCALE, FREEZE, LAG, HOVER})  # faults that make a quote dishonest


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    source: str
    coin: str | None = None  # None: every coin
    start: int = 0  # first cycle
    end: int = 1 << 30  # first cycle without it
    factor: float = 1.0
    seconds: float = 0.0
    every: int = 1  # MISSING: missing unless cycle % every == 0 (intermittent); 1: missing throughout
    amount: float = 0.0

    def active(self, cycle: int, source: str, coin: str) -> bool:
        return (self.source == source and (self.coin is None or self.coin == coin)
                and self.start <= cycle < self.end)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    coins: tuple[CoinTruth, ...]
    sources: tuple[str, ...] = ALL_SOURCES
    faults: tuple[Fault, ...] = ()
    cycles: int = 60
    seed: int = 7
    # What the benchmark checks: a real move all sources follow (cycle), a hysteresis scenario (no flaps).
    real_move_at: int | None = None
    hysteresis: bool = False


@dataclass(slots=True)
class Cycle:
    """One cycle: the quotes delivered and the truth behind them."""

    index: int
    at: datetime
    quotes: list[SourceQuote]
    truth: dict[str, float]  # coin_id -> true price at ``at`` (listed coins only)
    coin_of: dict[tuple[str, str], str]  # (source, source_id) -> the true coin
    dishonest: set[tuple[str, str]] = field(default_factory=set)  # (source, source_id) bent by a value fault


class TruePath:
    """A coin's true price on a grid of ``STEP`` seconds from ``ORIGIN`` seconds before the first cycle,
    drawn once for the whole scenario."""

    def __init__(self, coin: CoinTruth, steps: int, rng: random.Random) -> None:
        per_step = coin.vol * math.sqrt(STEP)
        jumps = {step_of(cycle): factor for cycle, factor in coin.jumps}
        first_jump = min(jumps, default=None)
        price = coin.price
        self.points = []
        for k in range(steps):
            if k in jumps:
                price *= jumps[k]
            if coin.peg is not None and (first_jump is None or k < first_jump):
                price += 0.2 * (coin.peg - price)  # pulled back to the peg until it breaks
            price *= math.exp(rng.gauss(0.0, per_step)) if per_step else 1.0
            self.points.append(price)

    def at(self, seconds: float) -> float:
        k = int(seconds // STEP)
        return self.points[min(max(k, 0), len(self.points) - 1)]


def step_of(cycle: int) -> int:
    """The index on a path's grid of the time of ``cycle``."""
    return int((ORIGIN + cycle * CYCLE) / STEP)


def identity(source: str, coin: CoinTruth) -> tuple[str, str | None]:
    """(source_id, slug) of ``coin`` at ``source``, as each real source names coins."""
    if source.startswith("coingecko"):
        return coin.coin_id, None
    if source.startswith("coinmarketcap"):
        return coin.cmc_id, coin.coin_id
    if source == "coinpaprika":
        return f"{coin.symbol.lower()}-{coin.coin_id}", None
    pair = {"binance": f"{coin.symbol}USDT", "coinbase": f"{coin.symbol}-USD"}.get(source, f"{coin.symbol}/USD")
    return pair, coin.coin_id  # exchange pairs come out of pair mapping with the coin's slug


def page_price(source: str, value: float) -> float:
    """The value as the site's page prints it, read back."""
    text = (coingecko_price if source.startswith("coingecko") else cmc_price)(value)
    if any("\u2080" <= ch <= "\u2089" for ch in text):  # 0.0₅1234: four significant digits
        return float(f"{value:.4g}")
    return float("".join(ch for ch in text if ch.isdigit() or ch == "."))


def run_scenario(scenario: Scenario) -> Iterator[Cycle]:
    """The scenario's cycles, in order (deterministic given its seed)."""
    rng = random.Random(scenario.seed * 1_000_003 + zlib.crc32(scenario.name.encode()))
    steps = int((scenario.cycles + 1) * CYCLE / STEP) + 1
    origin = ORIGIN
    paths = {c.coin_id: TruePath(c, steps + int(origin / STEP), rng) for c in scenario.coins}
    noise_rng = random.Random(rng.random())
    phase = {s: noise_rng.uniform(0.0, SOURCES[s].cadence) for s in ALL_SOURCES}
    last: dict[tuple[str, str], SourceQuote] = {}  # the books: (source, coin) -> last quote delivered
    frozen: dict[tuple[str, str], float] = {}
    draws: dict[tuple[str, str, float], float] = {}  # (source, coin, update time) -> its noise

    def noise(model: SourceModel, coin: str, update: float) -> float:
        key = (model.page_of or model.name, coin, update)
        if key not in draws:
            api = SOURCES[key[0]]
            draws[key] = noise_rng.gauss(0.0, api.noise)
        return draws[key]

    for index in range(scenario.cycles):
        now = origin + index * CYCLE
        at = START + timedelta(seconds=index * CYCLE)
        cycle = Cycle(index, at, [], {}, {})
        for coin in scenario.coins:
            if coin.listed[0] <= index < coin.listed[1]:
                cycle.truth[coin.coin_id] = paths[coin.coin_id].at(now)
        for source in scenario.sources:
            model = SOURCES[source]
            for coin in scenario.coins:
                if model.exchange and not coin.exchanges:
                    continue
                key = (source, coin.coin_id)
                sid, slug = identity(source, coin)
                cycle.coin_of[(source, sid)] = coin.coin_id
                faults = [f for f in scenario.faults if f.active(index, source, coin.coin_id)]
                listed = coin.listed[0] <= index < coin.listed[1] and not any(f.kind == DELIST for f in faults)
                if not listed:
                    last.pop(key, None)
                    continue
                missing = [f for f in faults if f.kind == MISSING]
                if missing and any(index % f.every != 0 or f.every == 1 for f in missing):
                    if key in last:
                        cycle.quotes.append(last[key])
                        if key in frozen or any(f.kind in VALUE_FAULTS for f in faults):
                            cycle.dishonest.add((source, sid))
                    continue
                cadence = model.cadence
                update = math.floor((now - phase[source]) / cadence) * cadence + phase[source]
                lag = model.lag + sum(f.seconds for f in faults if f.kind == LAG)
                api = SOURCES[model.page_of] if model.page_of else model
                if model.page_of:
                    # a page shows what its API had at the page's update
                    api_update = math.floor((update - phase[api.name]) / api.cadence) * api.cadence + phase[api.name]
                    lag = api.lag
                    value_time = api_update
                else:
                    value_time = update
                value = paths[coin.coin_id].at(value_time - lag) * (1.0 + api.basis) * (1.0 + noise(model, coin.coin_id,
                                                                                                    value_time))
                dishonest = False
                for f in faults:
                    if f.kind == SCALE:
                        value *= f.factor
                        dishonest = True
                    elif f.kind == HOVER:
                        value *= f.factor + f.amount * math.sin(index * 1.3)
                        dishonest = True
                    elif f.kind == FREEZE:
                        value = frozen.setdefault(key, value)
                        dishonest = True
                    elif f.kind == LAG:
                        dishonest = True
                if not any(f.kind == FREEZE for f in faults):
                    frozen.pop(key, None)
                if model.page_of:
                    value = page_price(source, value)
                stamp_time = update + sum(f.seconds for f in faults if f.kind == SKEW)
                stamp = START + timedelta(seconds=stamp_time - origin)
                quote = SourceQuote(
                    source=source, source_id=sid, symbol=coin.symbol, name=coin.name, slug=slug, rank=None,
                    price=value, market_cap=None, volume_24h=None, change_1h=None, change_24h=None,
                    change_7d=None, circulating_supply=None, total_supply=None, max_supply=None,
                    last_updated=None if model.page_of else stamp,
                    collected_at=at if not model.page_of else stamp, currency="usd")
                last[key] = quote
                cycle.quotes.append(quote)
                if dishonest:
                    cycle.dishonest.add((source, sid))
        yield cycle


# --- the library ------------------------------------------------------------------------------------

BTC = CoinTruth("bitcoin", "1", "BTC", "Bitcoin", 64_000.0, vol=1.0e-4)
ETH = CoinTruth("ethereum", "1027", "ETH", "Ethereum", 3_100.0, vol=1.3e-4)
ADA = CoinTruth("cardano", "2010", "ADA", "Cardano", 0.4567, vol=2.0e-4)
UNI = CoinTruth("uniswap", "7083", "UNI", "Uniswap", 7.25, vol=2.0e-4)
UNICORN = CoinTruth("unicorn-token", "8000", "UNI", "Unicorn Token", 0.0213, vol=2.5e-4, exchanges=False)
USDT = CoinTruth("tether", "825", "USDT", "Tether", 1.0, vol=2.0e-5, peg=1.0)
MAJORS = (BTC, ETH, ADA)
PAGES = ("coingecko-html", "coinmarketcap-html")


def _library() -> tuple[Scenario, ...]:
    def sc(name: str, description: str, *faults: Fault, coins: tuple[CoinTruth, ...] = MAJORS,
           **kw: object) -> Scenario:
        return Scenario(name, description, coins, faults=faults, **kw)  # type: ignore[arg-type]

    return (
        sc("calm", "every source honest"),
        sc("single_outlier", "coinpaprika reports ethereum 30 % high",
           Fault(SCALE, "coinpaprika", "ethereum", factor=1.3)),
        sc("two_colluding", "coinmarketcap and its pages report bitcoin 8 % high together",
           Fault(SCALE, "coinmarketcap", "bitcoin", factor=1.08),
           Fault(SCALE, "coinmarketcap-html", "bitcoin", factor=1.08)),
        sc("attack_small", "two exchanges report bitcoin 1 % high (inside the tolerance)",
           Fault(SCALE, "binance", "bitcoin", factor=1.01), Fault(SCALE, "kraken", "bitcoin", factor=1.01)),
        sc("collusion_by_count", "coinpaprika and both sites' pages (served from a cache 7 minutes old) report "
           "bitcoin 15 % high: a majority by count, not by weight",
           *(Fault(SCALE, s, "bitcoin", factor=1.15) for s in ("coinpaprika", *PAGES)),
           *(Fault(SKEW, s, None, seconds=-420.0) for s in PAGES),
           coins=(BTC,), sources=("coinmarketcap", "coinbase", "coinpaprika", *PAGES)),
        sc("attack_huge", "three sources report ethereum x1000, less than half the weight",
           Fault(SCALE, "binance", "ethereum", factor=1000.0), Fault(SCALE, "coinpaprika", "ethereum", factor=1000.0),
           Fault(SCALE, "coingecko-html", "ethereum", factor=1000.0)),
        sc("flash_crash", "binance prints bitcoin 30 % down for two cycles",
           Fault(SCALE, "binance", "bitcoin", start=20, end=22, factor=0.7)),
        sc("frozen_source", "coinpaprika repeats the same cardano price for an hour, with fresh timestamps",
           Fault(FREEZE, "coinpaprika", "cardano", start=5, end=65), cycles=70),
        sc("lagging_source", "coingecko's values are 5 minutes late (its timestamps are not)",
           Fault(LAG, "coingecko", None, seconds=300.0), Fault(LAG, "coingecko-html", None, seconds=300.0)),
        sc("outage_recovery", "coinmarketcap and its pages are down 20 cycles, then back",
           Fault(MISSING, "coinmarketcap", None, start=10, end=30),
           Fault(MISSING, "coinmarketcap-html", None, start=10, end=30)),
        sc("storm_429", "coingecko answers 429 for 40 cycles (its old quotes age out)",
           Fault(MISSING, "coingecko", None, start=5, end=45), Fault(MISSING, "coingecko-html", None, start=5, end=45)),
        sc("decimal_shift", "coinmarketcap's pages read cardano x1000 (a decimal separator taken for grouping)",
           Fault(SCALE, "coinmarketcap-html", "cardano", start=10, end=40, factor=1000.0)),
        sc("wrong_unit", "coinpaprika reports ethereum in thousands of dollars",
           Fault(SCALE, "coinpaprika", "ethereum", start=10, end=50, factor=0.001)),
        sc("stablecoin_depeg", "tether loses its peg: -8 % at cycle 20, every source follows",
           coins=(replace(USDT, jumps=((20, 0.92),)), BTC), real_move_at=20),
        sc("symbol_collision", "two coins named UNI: Uniswap and Unicorn Token",
           coins=(UNI, UNICORN, BTC)),
        sc("redenomination", "cardano redenominated (x1000) at cycle 20; coinpaprika switches 3 cycles late",
           Fault(SCALE, "coinpaprika", "cardano", start=20, end=23, factor=0.001),
           coins=(replace(ADA, jumps=((20, 1000.0),)), BTC)),
        sc("delisting", "cardano delisted at cycle 30: sources drop it one after the other",
           Fault(DELIST, "coinpaprika", "cardano", start=25), Fault(DELIST, "binance", "cardano", start=28),
           coins=(replace(ADA, listed=(0, 30)), BTC)),
        sc("new_listing", "uniswap listed at cycle 15; the exchanges and coinpaprika list it later",
           Fault(DELIST, "coinpaprika", "uniswap", end=25), Fault(DELIST, "binance", "uniswap", end=20),
           coins=(replace(UNI, listed=(15, 1 << 30)), BTC)),
        sc("clock_skew", "kraken's clock 90 s ahead, coinpaprika's 10 minutes behind",
           Fault(SKEW, "kraken", None, seconds=90.0), Fault(SKEW, "coinpaprika", None, seconds=-600.0)),
        sc("rounding_only_html", "uniswap from the two sites' pages only (prices rounded to cents)",
           coins=(UNI, ADA), sources=PAGES),
        sc("wide_honest_spread", "an illiquid coin: the sources' own noise is 1.5 %",
           coins=(CoinTruth("illiquid", "9999", "ILQ", "Illiquid", 0.0871, vol=3e-4, exchanges=False),),
           sources=("coingecko", "coinmarketcap", "coinpaprika"), seed=11),
        sc("regime_change", "bitcoin moves +12 % at cycle 25, every source follows",
           coins=(replace(BTC, jumps=((25, 1.12),)), ETH), real_move_at=25),
        sc("intermittent_source", "coinbase answers one cycle in three",
           Fault(MISSING, "coinbase", None, every=3)),
        sc("all_stale", "every source stops updating at cycle 10 (quotes age out)",
           *(Fault(MISSING, s, None, start=10) for s in ALL_SOURCES), cycles=40),
        sc("hysteresis_hover", "coinpaprika wobbles around the outlier limit on ethereum (5.5 % +- 1.5 %)",
           Fault(HOVER, "coinpaprika", "ethereum", start=5, factor=1.055, amount=0.015), hysteresis=True),
        sc("two_sources_disagree", "only two sources, coinmarketcap 10 % high on cardano",
           Fault(SCALE, "coinmarketcap", "cardano", factor=1.1), coins=(ADA,),
           sources=("coingecko", "coinmarketcap")),
    )


SCENARIOS: tuple[Scenario, ...] = _library()
BY_NAME = {s.name: s for s in SCENARIOS}


def scenario(name: str) -> Scenario:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(BY_NAME)}") from None


def names() -> Sequence[str]:
    return tuple(BY_NAME)
