"""A deterministic simulated market and the services' views of it.

Each coin follows a geometric random walk (stablecoins hover around their peg); one step is taken every
``step_seconds`` of wall time. Prices, volumes and the fault schedule are a pure function of the seed and
the number of steps taken, so two markets with the same seed advanced the same number of steps agree.

Percentage changes are measured against reference prices synthesized once per coin ("the price 24 h
ago", ...), so ``price_change_24h``, ``price_change_percentage_24h``, ``high_24h``/``low_24h`` and the
market-cap change always agree with each other.

Every source sees the market through a little noise (+-0.1 % on prices, a few % on volumes), different per
source and per step, so the reconciliation downstream has real (small) disagreements to settle.
Fiat conversion uses fixed simulated rates; BTC conversion uses the simulated bitcoin price.

The history routes serve a past consistent with all this (:mod:`cryptoviz.simulator.history`): it ends at
the start price, passes through the reference prices, and after the start follows the walk as it went.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptoviz.simulator.coins import COINS, CoinSpec
from cryptoviz.simulator.history import CoinPast, Samples, grid, volume_at

PERIODS = ("1h", "24h", "7d", "14d", "30d", "60d", "90d", "200d", "1y")
# Typical size (std-dev of the log return) of the change over each period, used to synthesize references.
_PERIOD_SIGMA = {"1h": 0.006, "24h": 0.03, "7d": 0.08, "14d": 0.11, "30d": 0.16, "60d": 0.22,
                 "90d": 0.28, "200d": 0.4, "1y": 0.55}
COINGECKO_PERIODS = ("1h", "24h", "7d", "14d", "30d", "200d", "1y")
# CoinPaprika's percent_change_* periods -> (the reference period, the share of its log change): 15 minutes
# are a quarter of the last hour's move, 6 hours a quarter of the day's.
COINPAPRIKA_PERIODS: dict[str, tuple[str, float]] = {
    "15m": ("1h", 0.25), "30m": ("1h", 0.5), "1h": ("1h", 1.0), "6h": ("24h", 0.25), "12h": ("24h", 0.5),
    "24h": ("24h", 1.0), "7d": ("7d", 1.0), "30d": ("30d", 1.0), "1y": ("1y", 1.0),
}

# Units of each fiat currency per US dollar: fixed, simulated.
FIAT_PER_USD: dict[str, float] = {"usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 151.0}
SUPPORTED_CURRENCIES = ("usd", "eur", "gbp", "jpy", "btc")

PRICE_NOISE = 0.001  # each source's price is within +-0.1 % of the simulated one
VOLUME_NOISE = 0.05
MAX_CATCH_UP_STEPS = 3600  # a long idle period is not replayed step by step beyond this
# market_chart's ``interval`` values in seconds; without one, the automatic granularity: 5-minutely up to 1 day,
# hourly up to 90 days, then daily.
CHART_INTERVALS = {"5m": 300, "hourly": 3600, "daily": 86_400}

_COINGECKO_IMAGE = "https://coin-images.coingecko.com/coins/images/{n}/large/{id}.png?1696501400"
_TAGS = {
    "pow": ["mineable", "pow"],
    "layer-1": ["layer-1", "smart-contracts"],
    "layer-0": ["layer-0", "interoperability"],
    "layer-2": ["layer-2", "scaling"],
    "stablecoin": ["stablecoin", "asset-backed-stablecoin"],
    "meme": ["memes"],
    "defi": ["defi", "dao"],
    "exchange": ["centralized-exchange", "marketplace"],
}


def iso_z(moment: datetime) -> str:
    """``2024-06-11T09:30:12.000Z``: the timestamp format CoinGecko and CoinMarketCap use."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def iso_seconds(moment: datetime) -> str:
    """``2024-06-11T09:30:12Z``: CoinPaprika's timestamp format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float) -> float | int:
    """A float that is a whole number becomes an int, as real JSON bodies mix both."""
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


def _cg_price(value: float) -> float | int:
    """CoinGecko sends large prices as integers and others with ~8 significant digits."""
    if abs(value) >= 1000:
        return round(value)
    return float(f"{value:.8g}")


@dataclass(slots=True)
class _CoinState:
    spec: CoinSpec
    sigma: float
    price: float
    base_log_volume: float
    log_volume: float
    references: dict[str, float]  # period -> USD price that long ago
    volume_24h_ago: float
    high_24h: float
    low_24h: float
    ath: float
    ath_date: datetime
    atl: float
    atl_date: datetime
    num_market_pairs: int


@dataclass(frozen=True, slots=True)
class CoinView:
    """One coin as one source sees it at one moment, in USD."""

    spec: CoinSpec
    rank: int
    price: float
    volume_24h: float
    volume_24h_ago: float
    references: Mapping[str, float]
    high_24h: float
    low_24h: float
    ath: float
    ath_date: datetime
    atl: float
    atl_date: datetime
    num_market_pairs: int
    last_updated: datetime
    scale: float = 1.0  # the outlier factor applied to this coin's prices

    @property
    def market_cap(self) -> float:
        return self.price * self.spec.circulating_supply

    @property
    def fully_diluted_valuation(self) -> float:
        supply = self.spec.max_supply if self.spec.max_supply is not None else self.spec.total_supply
        return self.price * supply


@dataclass(frozen=True, slots=True)
class TickerRow:
    """One coin's noise-free figures in USD, for the exchanges' feeds: the price now and 24 h ago, the 24 h
    range and the 24 h volume (all markets together)."""

    spec: CoinSpec
    price: float
    price_24h_ago: float
    high_24h: float
    low_24h: float
    volume_24h: float


@dataclass(frozen=True, slots=True)
class _Rate:
    """Units of a currency per USD, now and at each reference time."""

    now: float
    then: Mapping[str, float] = field(default_factory=dict)

    def at(self, period: str) -> float:
        return self.then.get(period, self.now)


class Market:
    """The simulated market. Not thread-safe: the server serializes access."""

    def __init__(self, seed: int = 0, coins: Sequence[CoinSpec] | None = None, *,
                 step_seconds: float = 1.0, start: datetime | None = None) -> None:
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds}")
        self.seed = seed
        self.step_seconds = step_seconds
        self.started_at = start or datetime.now(UTC)
        self.tick = 0  # steps simulated so far
        self._clock_ticks = 0  # steps of wall time accounted for (>= tick after a long idle period)
        self._walk = random.Random(f"{seed}/walk")
        specs = tuple(coins) if coins is not None else COINS
        if not specs:
            raise ValueError("a market needs at least one coin")
        init = random.Random(f"{seed}/init")
        self._states = [self._initial_state(spec, init) for spec in specs]
        self._by_id = {state.spec.cg_id: state for state in self._states}
        self._index = {state.spec.cg_id: i for i, state in enumerate(self._states)}
        # the past (history routes): a bridge up to the start, then what the market records as it moves
        self._samples = Samples(self.started_at.timestamp(), [state.price for state in self._states])
        self._pasts: dict[str, CoinPast] = {}

    # --- evolution -----------------------------------------------------------------------------

    def _initial_state(self, spec: CoinSpec, rng: random.Random) -> _CoinState:
        stable = spec.stable
        sigma = 0.0 if stable else rng.uniform(0.0004, 0.0012)
        references: dict[str, float] = {}
        for period in PERIODS:
            size = _PERIOD_SIGMA[period] * (0.004 if stable else 1.0)
            references[period] = spec.price * math.exp(rng.gauss(0.0, size))
        price_24h_ago = references["24h"]
        high = max(spec.price, price_24h_ago) * (1 + rng.uniform(0.0, 0.02 if not stable else 0.0005))
        low = min(spec.price, price_24h_ago) * (1 - rng.uniform(0.0, 0.02 if not stable else 0.0005))
        # volume: 1-15 % of the market cap a day for most coins, more for stablecoins
        turnover = rng.uniform(0.2, 0.6) if stable else 10 ** rng.uniform(-2, -0.8)
        log_volume = math.log(max(spec.market_cap * turnover, 1e4))
        ath = spec.price * (rng.uniform(1.002, 1.1) if stable else rng.uniform(1.3, 6.0))
        atl = spec.price * (rng.uniform(0.9, 0.99) if stable else 10 ** rng.uniform(-2.5, -0.3))
        added = datetime.fromisoformat(spec.date_added).replace(tzinfo=UTC)
        atl_date = added + timedelta(days=rng.randrange(0, 400))
        ath_date = max(atl_date, datetime(2021, 1, 1, tzinfo=UTC)) + timedelta(
            days=rng.randrange(0, 1200), seconds=rng.randrange(0, 86400))
        pairs = max(3, int(10 ** ((math.log10(max(spec.market_cap, 1e6)) - 6) * 0.6 + rng.uniform(0.0, 0.6))))
        return _CoinState(
            spec=spec, sigma=sigma, price=spec.price, base_log_volume=log_volume, log_volume=log_volume,
            references=references, volume_24h_ago=math.exp(log_volume + rng.gauss(0.0, 0.15)),
            high_24h=high, low_24h=low, ath=ath, ath_date=ath_date, atl=atl, atl_date=atl_date,
            num_market_pairs=pairs,
        )

    def advance(self, steps: int = 1) -> None:
        """Take ``steps`` random-walk steps."""
        gauss = self._walk.gauss
        for _ in range(steps):
            for state in self._states:
                if state.spec.stable:
                    peg = state.spec.price
                    state.price = peg + 0.8 * (state.price - peg) + gauss(0.0, 0.0002) * peg
                else:
                    state.price *= math.exp(gauss(0.0, state.sigma))
                state.log_volume += 0.01 * (state.base_log_volume - state.log_volume) + gauss(0.0, 0.004)
                state.high_24h = max(state.high_24h, state.price)
                state.low_24h = min(state.low_24h, state.price)
                state.ath = max(state.ath, state.price)
                state.atl = min(state.atl, state.price)
            self.tick += 1
        self._clock_ticks = max(self._clock_ticks, self.tick)

    def step(self, now: datetime | None = None) -> int:
        """Catch up with the wall clock: one step per elapsed ``step_seconds``. Returns the steps taken."""
        now = now or datetime.now(UTC)
        due = int((now - self.started_at).total_seconds() / self.step_seconds)
        pending = due - self._clock_ticks
        if pending <= 0:
            return 0
        taken = min(pending, MAX_CATCH_UP_STEPS)
        self.advance(taken)
        self._clock_ticks = due
        self._samples.record(now.timestamp(), [state.price for state in self._states])
        return taken

    # --- inspection ----------------------------------------------------------------------------

    @property
    def coins(self) -> tuple[CoinSpec, ...]:
        return tuple(state.spec for state in self._states)

    def price(self, cg_id: str) -> float:
        """The simulated (noise-free) USD price of a coin."""
        return self._by_id[cg_id].price

    def prices(self) -> dict[str, float]:
        return {state.spec.cg_id: state.price for state in self._states}

    def tickers(self) -> list[TickerRow]:
        """Every coin's figures now, in the coins' order (cheap: no noise, no ranking)."""
        return [TickerRow(s.spec, s.price, s.references["24h"], s.high_24h, s.low_24h, math.exp(s.log_volume))
                for s in self._states]

    def coin(self, cg_id: str) -> CoinSpec | None:
        state = self._by_id.get(cg_id)
        return None if state is None else state.spec

    # --- the past ------------------------------------------------------------------------------

    def past_prices(self, cg_id: str, times: Sequence[float], step: int = 300) -> list[float]:
        """USD prices of a coin at ``times`` (unix seconds, sorted, none in the future): before the start
        the bridged past (``step``: the grid the times are on), after it the recorded walk."""
        state = self._by_id[cg_id]
        start = self.started_at.timestamp()
        past = self._pasts.get(cg_id)
        if past is None:
            past = CoinPast(self.seed, cg_id, start, state.spec.price, state.references, stable=state.spec.stable)
            self._pasts[cg_id] = past
        before = bisect.bisect_right(times, start)
        index = self._index[cg_id]
        return ([math.exp(v) for v in past.log_prices(times[:before], step)]
                + [self._samples.price(index, t) for t in times[before:]])

    def _series(self, cg_id: str, times: list[float], step: int, currency: str, now: float) -> list[float]:
        """Prices at ``times`` (sorted) in ``currency``; a time at or after ``now`` has the current price."""
        def usd(coin: str) -> list[float]:
            past = times[:bisect.bisect_left(times, now)]
            return [*self.past_prices(coin, past, step), *[self._by_id[coin].price] * (len(times) - len(past))]

        currency = currency.lower()
        if currency in FIAT_PER_USD:
            return [p * FIAT_PER_USD[currency] for p in usd(cg_id)]
        if currency == "btc" and "bitcoin" in self._by_id:
            return [p / b for p, b in zip(usd(cg_id), usd("bitcoin"), strict=True)]
        raise ValueError(f"unsupported currency {currency!r}; supported: {', '.join(SUPPORTED_CURRENCIES)}")

    def coingecko_market_chart(self, cg_id: str, vs_currency: str = "usd", days: float = 1, *,
                               now: datetime | None = None, interval: str | None = None) -> dict[str, Any]:
        """A coin's ``GET /coins/{id}/market_chart`` body: points on the automatic granularity's grid (or
        ``interval``'s, ``daily``/``hourly``) over the past ``days``, then the current price."""
        end = (now or datetime.now(UTC)).timestamp()
        step = CHART_INTERVALS.get(interval or "") or (300 if days <= 1 else 3600 if days <= 90 else 86_400)
        times = [t for t in grid(end - days * 86_400, end, step) if t < end] + [end]
        prices = self._series(cg_id, times, step, vs_currency, end)
        state = self._by_id[cg_id]
        rate = prices[-1] / state.price if state.price else 1.0
        stamps = [round(t * 1000) for t in times]
        return {
            "prices": [[ms, p] for ms, p in zip(stamps, prices, strict=True)],
            "market_caps": [[ms, p * state.spec.circulating_supply] for ms, p in zip(stamps, prices, strict=True)],
            "total_volumes": [[ms, volume_at(self.seed, cg_id, state.base_log_volume, t) * rate]
                              for ms, t in zip(stamps, times, strict=True)],
        }

    def coinmarketcap_quotes_historical(self, cmc_id: int, start: datetime, end: datetime, interval: int, *,
                                        convert: str = "USD", count: int | None = None,
                                        now: datetime | None = None) -> dict[str, Any] | None:
        """CoinMarketCap's ``quotes/historical`` coin object for ``cmc_id`` (``None``: unknown id): a quote
        every ``interval`` seconds from ``start`` to ``end`` (no later than now), at most ``count``."""
        state = next((s for s in self._states if s.spec.cmc_id == cmc_id), None)
        if state is None:
            return None
        moment = (now or datetime.now(UTC)).timestamp()
        times = grid(start.timestamp(), min(end.timestamp(), moment), interval)[:count]
        prices = self._series(state.spec.cg_id, times, interval, convert, moment)
        spec = state.spec
        quotes = []
        for t, price in zip(times, prices, strict=True):
            stamp = iso_z(datetime.fromtimestamp(t, UTC))
            quotes.append({"timestamp": stamp, "quote": {convert.upper(): {
                "price": price, "volume_24h": volume_at(self.seed, spec.cg_id, state.base_log_volume, t),
                "market_cap": price * spec.circulating_supply, "circulating_supply": spec.circulating_supply,
                "total_supply": spec.total_supply, "timestamp": stamp}}})
        return {"id": spec.cmc_id, "name": spec.name, "symbol": spec.symbol.upper(), "is_active": 1, "is_fiat": 0,
                "quotes": quotes}

    # --- views ---------------------------------------------------------------------------------

    def view(self, source: str, now: datetime | None = None,
             price_factors: Mapping[str, float] | None = None) -> list[CoinView]:
        """Every coin as ``source`` sees it now (USD), ranked by simulated market cap.

        ``price_factors`` multiplies every price-denominated figure of a coin (an outlier source);
        it changes neither the percentages nor the ranks.
        """
        now = now or datetime.now(UTC)
        factors = price_factors or {}
        noise = random.Random(f"{self.seed}/{source}/{self.tick}")
        ranked = sorted(self._states, key=lambda s: s.price * s.spec.circulating_supply, reverse=True)
        views: list[CoinView] = []
        for rank, state in enumerate(ranked, start=1):
            price_noise = 1 + noise.uniform(-PRICE_NOISE, PRICE_NOISE)
            volume_noise = 1 + noise.uniform(-VOLUME_NOISE, VOLUME_NOISE)
            age = 1 + noise.randrange(20)
            scale = factors.get(state.spec.cg_id, 1.0)
            price = state.price * price_noise * scale
            views.append(CoinView(
                spec=state.spec,
                rank=rank,
                price=price,
                volume_24h=math.exp(state.log_volume) * volume_noise,
                volume_24h_ago=state.volume_24h_ago,
                references={p: ref * scale for p, ref in state.references.items()},
                high_24h=max(state.high_24h * scale, price),
                low_24h=min(state.low_24h * scale, price),
                ath=max(state.ath * scale, price),
                ath_date=state.ath_date,
                atl=min(state.atl * scale, price),
                atl_date=state.atl_date,
                num_market_pairs=state.num_market_pairs,
                last_updated=(now - timedelta(seconds=age)).replace(microsecond=0),
                scale=scale,
            ))
        return views

    def _rate(self, currency: str, views: Sequence[CoinView]) -> _Rate:
        currency = currency.lower()
        if currency in FIAT_PER_USD:
            return _Rate(FIAT_PER_USD[currency])
        if currency == "btc":
            # the source's own bitcoin price (so bitcoin is worth exactly 1 BTC), outlier factor undone
            bitcoin = next((v for v in views if v.spec.cg_id == "bitcoin"), None)
            if bitcoin is not None:
                return _Rate(bitcoin.scale / bitcoin.price,
                             {p: bitcoin.scale / ref for p, ref in bitcoin.references.items()})
        raise ValueError(f"unsupported currency {currency!r}; supported: {', '.join(SUPPORTED_CURRENCIES)}")

    def coingecko_markets(self, vs_currency: str = "usd", *, now: datetime | None = None,
                          order: str = "market_cap_desc", price_change_percentage: Sequence[str] = (),
                          price_factors: Mapping[str, float] | None = None,
                          source: str = "coingecko") -> list[dict[str, Any]]:
        """Every coin as CoinGecko's ``GET /coins/markets`` item, in ``order``."""
        now = now or datetime.now(UTC)
        views = self.view(source, now, price_factors)
        rate = self._rate(vs_currency, views)
        periods = [p for p in price_change_percentage if p in COINGECKO_PERIODS]
        ordered = _order(views, order)
        return [_coingecko_item(v, rate, periods) for v in ordered]

    def coinmarketcap_listings(self, convert: Sequence[str] = ("USD",), *, now: datetime | None = None,
                               price_factors: Mapping[str, float] | None = None,
                               source: str = "coinmarketcap") -> list[dict[str, Any]]:
        """Every coin as a CoinMarketCap ``listings/latest`` item, by rank; quotes keyed by ``convert``."""
        now = now or datetime.now(UTC)
        views = self.view(source, now, price_factors)
        rates = {code.upper(): self._rate(code, views) for code in convert}
        total_cap = sum(v.market_cap for v in views) or 1.0
        volume_rng = random.Random(f"{self.seed}/{source}/volume-change/{self.tick}")
        return [_coinmarketcap_item(v, rates, total_cap, volume_rng.uniform(-30, 30)) for v in views]

    def coinpaprika_tickers(self, quotes: Sequence[str] = ("USD",), *, circulating: bool = True,
                            now: datetime | None = None, price_factors: Mapping[str, float] | None = None,
                            source: str = "coinpaprika") -> list[dict[str, Any]]:
        """Every coin as a CoinPaprika ``/tickers`` item, by rank, with a quote per currency of ``quotes``.

        ``circulating``: include ``circulating_supply`` (the paid plans do, the free plan does not).
        """
        views = self.view(source, now or datetime.now(UTC), price_factors)
        rates = [(code.upper(), self._rate(code, views)) for code in quotes]
        return [_coinpaprika_item(view, rates, circulating) for view in views]


def _order(views: list[CoinView], order: str) -> list[CoinView]:
    if order == "market_cap_asc":
        return sorted(views, key=lambda v: v.rank, reverse=True)
    if order == "volume_desc":
        return sorted(views, key=lambda v: v.volume_24h, reverse=True)
    if order == "volume_asc":
        return sorted(views, key=lambda v: v.volume_24h)
    if order == "id_asc":
        return sorted(views, key=lambda v: v.spec.cg_id)
    if order == "id_desc":
        return sorted(views, key=lambda v: v.spec.cg_id, reverse=True)
    return sorted(views, key=lambda v: v.rank)


def _percent(now: float, then: float) -> float:
    return (now / then - 1) * 100 if then else 0.0


def _coingecko_item(v: CoinView, rate: _Rate, periods: Sequence[str]) -> dict[str, Any]:
    spec = v.spec
    price = v.price * rate.now
    price_24h_ago = v.references["24h"] * rate.at("24h")
    market_cap = price * spec.circulating_supply
    market_cap_24h_ago = price_24h_ago * spec.circulating_supply
    ath, atl = v.ath * rate.now, v.atl * rate.now
    item: dict[str, Any] = {
        "id": spec.cg_id,
        "symbol": spec.symbol.lower(),
        "name": spec.name,
        "image": _COINGECKO_IMAGE.format(n=spec.cmc_id, id=spec.cg_id),
        "current_price": _cg_price(price),
        "market_cap": round(market_cap),
        "market_cap_rank": v.rank,
        "fully_diluted_valuation": round(v.fully_diluted_valuation * rate.now),
        "total_volume": round(v.volume_24h * rate.now),
        "high_24h": _cg_price(v.high_24h * rate.now),
        "low_24h": _cg_price(v.low_24h * rate.now),
        "price_change_24h": price - price_24h_ago,
        "price_change_percentage_24h": round(_percent(price, price_24h_ago), 5),
        "market_cap_change_24h": market_cap - market_cap_24h_ago,
        "market_cap_change_percentage_24h": round(_percent(market_cap, market_cap_24h_ago), 5),
        "circulating_supply": float(spec.circulating_supply),
        "total_supply": float(spec.total_supply),
        "max_supply": float(spec.max_supply) if spec.max_supply is not None else None,
        "ath": _cg_price(ath),
        "ath_change_percentage": round(_percent(price, ath), 5),
        "ath_date": iso_z(v.ath_date),
        "atl": _cg_price(atl),
        "atl_change_percentage": round(_percent(price, atl), 5),
        "atl_date": iso_z(v.atl_date),
        "roi": None,
        "last_updated": iso_z(v.last_updated),
    }
    for period in periods:
        then = v.references[period] * rate.at(period)
        item[f"price_change_percentage_{period}_in_currency"] = _percent(price, then)
    return item


def _coinmarketcap_item(v: CoinView, rates: Mapping[str, _Rate], total_cap: float,
                        volume_change: float) -> dict[str, Any]:
    spec = v.spec
    updated = iso_z(v.last_updated)
    quote: dict[str, dict[str, Any]] = {}
    for code, rate in rates.items():
        price = v.price * rate.now
        quote[code] = {
            "price": price,
            "volume_24h": v.volume_24h * rate.now,
            "volume_change_24h": round(volume_change, 4),
            **{f"percent_change_{p}": round(_percent(price, v.references[p] * rate.at(p)), 8)
               for p in ("1h", "24h", "7d", "30d", "60d", "90d")},
            "market_cap": price * spec.circulating_supply,
            "market_cap_dominance": round(v.market_cap / total_cap * 100, 4),
            "fully_diluted_market_cap": v.fully_diluted_valuation * rate.now,
            "tvl": None,
            "last_updated": updated,
        }
    return {
        "id": spec.cmc_id,
        "name": spec.name,
        "symbol": spec.symbol.upper(),
        "slug": spec.slug,
        "num_market_pairs": v.num_market_pairs,
        "date_added": f"{spec.date_added}T00:00:00.000Z",
        "tags": list(_TAGS.get(spec.category, [spec.category])),
        "max_supply": _number(spec.max_supply) if spec.max_supply is not None else None,
        "circulating_supply": _number(spec.circulating_supply),
        "total_supply": _number(spec.total_supply),
        "infinite_supply": spec.max_supply is None and spec.category in ("layer-1", "meme", "pow"),
        "platform": None,
        "cmc_rank": v.rank,
        "self_reported_circulating_supply": None,
        "self_reported_market_cap": None,
        "tvl_ratio": None,
        "last_updated": updated,
        "quote": quote,
    }


def _coinpaprika_quote(v: CoinView, code: str, rate: _Rate) -> dict[str, Any]:
    price = v.price * rate.now
    changes: dict[str, float] = {}
    for period, (reference, share) in COINPAPRIKA_PERIODS.items():
        then = price * (v.references[reference] * rate.at(reference) / price) ** share
        changes[f"percent_change_{period}"] = round(_percent(price, then), 2)
    ath = None if code == "BTC" else v.ath * rate.now  # the documentation's BTC quote has no ATH
    return {
        "price": price,
        "volume_24h": v.volume_24h * rate.now,
        "volume_24h_change_24h": round(_percent(v.volume_24h, v.volume_24h_ago), 2),
        "market_cap": round(price * v.spec.circulating_supply),
        "market_cap_change_24h": changes["percent_change_24h"],
        **changes,
        "ath_price": ath,
        "ath_date": None if ath is None else iso_seconds(v.ath_date),
        "percent_from_price_ath": None if ath is None else round(_percent(price, ath), 2),
    }


def _coinpaprika_item(v: CoinView, rates: Sequence[tuple[str, _Rate]], circulating: bool) -> dict[str, Any]:
    spec = v.spec
    beta = random.Random(f"beta/{spec.cg_id}")  # a coin's beta is its own, whatever the seed
    item: dict[str, Any] = {
        "id": spec.paprika_id,
        "name": spec.name,
        "symbol": spec.symbol,
        "rank": v.rank,
        "circulating_supply": _number(spec.circulating_supply),
        "total_supply": _number(spec.total_supply),
        "max_supply": _number(spec.max_supply or 0),  # CoinPaprika's "no maximum"
        "beta_value": round(beta.uniform(-0.01, 0.01) if spec.stable else beta.uniform(0.6, 1.6), 6),
        "first_data_at": f"{spec.date_added}T00:00:00Z",
        "last_updated": iso_seconds(v.last_updated),
        "quotes": {code: _coinpaprika_quote(v, code, rate) for code, rate in rates},
    }
    if not circulating:
        del item["circulating_supply"]
    return item
