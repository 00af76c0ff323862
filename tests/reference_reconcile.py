"""A reference implementation of the reconciliation rules, for the tests to compare ``reconcile`` with.

Written to be read, not to be fast: each rule of the ``cryptoviz.reconcile`` docstring in the most direct
form, one step after the other, sharing no code with the package (only the records and the reason
names). Where the rules leave an order open (summing weights, multiplying trusts), it uses the order the
package documents, so that both give the same floats to the last bit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptoviz.models import CoinSnapshot, SourceQuote, SourceValue
from cryptoviz.reconcile import DISAGREEMENT, OUTLIER
from cryptoviz.sources.spec import IdNamespace
from cryptoviz.validate import STALE

Trust = Mapping[str, float] | Callable[[str], float]


@dataclass
class Entry:
    """One kept quote, with what the rules derive from it."""

    quote: SourceQuote
    trust: float
    weight: float | None  # trust x freshness; None: stale
    namespace: IdNamespace
    keys: list[tuple[str, ...]]

    @property
    def source(self) -> str:
        return self.quote.source

    @property
    def price(self) -> float:
        assert self.quote.price is not None
        return self.quote.price


def reconcile(quotes: Sequence[SourceQuote], *, observed_at: datetime, trust: Trust, max_staleness: float,
              namespaces: Mapping[str, IdNamespace], disagreement_tolerance: float = 0.05,
              previous: Mapping[str, float] | None = None, memory: Memory | None = None,
              precision: Mapping[str, Precision] | None = None, rule: str = "interval") -> list[CoinSnapshot]:
    """Same arguments as ``cryptoviz.reconcile.reconcile``, ``namespaces`` required."""
    now = seconds(observed_at)
    entries = []
    for q in newest_quotes(quotes):
        t = clamp_trust(trust.get(q.source, 0.5) if isinstance(trust, Mapping) else trust(q.source))
        age = now - seconds(q.last_updated or q.collected_at)
        if age > max_staleness:
            weight = None
        elif age <= 0:
            weight = t
        else:
            weight = t * max(0.05, 1 - age / max_staleness)
        namespace = namespaces.get(q.source) or IdNamespace(q.source)  # unknown: a namespace of its own
        entries.append(Entry(q, t, weight, namespace, keys_of(q, namespace)))

    coins = [sorted(coin, key=lambda e: e.source) for coin in group(entries)]
    ids = coin_ids(coins)
    snapshots = []
    for coin, (coin_id, slug, coingecko_id, coinmarketcap_id) in zip(coins, ids, strict=True):
        if rule == "baseline":
            snapshot = consensus_baseline(coin, coin_id, slug, coingecko_id, coinmarketcap_id, observed_at,
                                          disagreement_tolerance, previous or {})
        else:
            snapshot = consensus(coin, coin_id, slug, coingecko_id, coinmarketcap_id, observed_at,
                                 disagreement_tolerance, previous or {}, memory or Memory(), precision or PRECISION)
        if snapshot is not None:
            snapshots.append(snapshot)
    snapshots.sort(key=lambda s: (s.coin_id, s.currency, [(v.source, v.source_id) for v in s.sources]))
    return snapshots


def seconds(moment: datetime) -> float:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def clamp_trust(value: float) -> float:
    value = float(value)
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


def newest_quotes(quotes: Sequence[SourceQuote]) -> list[SourceQuote]:
    """Quotes with a positive finite price, the newest of each (currency, source, source_id)."""
    best: dict[tuple[str, str, str], SourceQuote] = {}
    for q in quotes:
        if q.price is None or not (q.price > 0 and math.isfinite(q.price)):
            continue
        at = (q.currency, q.source, q.source_id)
        if at not in best or recency(q) > recency(best[at]):
            best[at] = q
    return list(best.values())


def recency(q: SourceQuote) -> tuple[float, str]:
    return seconds(q.last_updated or q.collected_at), repr(q)


def keys_of(q: SourceQuote, namespace: IdNamespace) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = [("id", q.currency, namespace.name, q.source_id)]
    own = q.source_id.lower() if namespace.ids_are_slugs and q.source_id else ""
    if own:
        keys.append(("slug", q.currency, own))
    slug = (q.slug or "").strip().lower()
    if slug and slug != own:
        keys.append(("slug", q.currency, slug))
    name = re.sub(r"[\W_]+", "", q.name.casefold())
    symbol = q.symbol.strip().upper()
    if name and symbol:
        keys.append(("ns", q.currency, name, symbol))
    return keys


def group(entries: list[Entry]) -> list[list[Entry]]:
    """The careful rules over the whole input: no ambiguous key; key classes strongest first, quotes in
    (currency, source, source_id) order; never two quotes of one source in one coin."""
    entries = sorted(entries, key=lambda e: (e.quote.currency, e.source, e.quote.source_id))
    holders: dict[tuple[str, ...], list[Entry]] = {}
    for e in entries:
        for key in e.keys:
            holders.setdefault(key, []).append(e)
    coin_of = {id(e): [e] for e in entries}  # each entry's coin (a shared list per coin)
    for key_class in ("id", "slug", "ns"):
        for key, held in holders.items():
            sources = [e.source for e in held]
            if key[0] != key_class or len(set(sources)) < len(sources):
                continue  # another class, or ambiguous
            for e in held[1:]:
                a, b = coin_of[id(held[0])], coin_of[id(e)]
                if a is not b and not {x.source for x in a} & {x.source for x in b}:
                    a.extend(b)
                    for x in b:
                        coin_of[id(x)] = a
    coins: list[list[Entry]] = []
    for e in entries:
        if not any(coin is coin_of[id(e)] for coin in coins):
            coins.append(coin_of[id(e)])
    return coins


def preference(e: Entry) -> tuple[str, bool, str]:
    return e.namespace.name, e.source != e.namespace.name, e.source


def most_trusted(coin: list[Entry]) -> Entry:
    return sorted(coin, key=lambda e: (-e.trust, e.source))[0]


def coin_ids(coins: list[list[Entry]]) -> list[tuple[str, str | None, str | None, str | None]]:
    found = []
    for coin in coins:
        canonical = sorted((e for e in coin if e.namespace.canonical), key=preference)
        by_column = {
            column: sorted((e for e in coin if e.namespace.column == column), key=preference)
            for column in ("coingecko_id", "coinmarketcap_id")
        }
        with_slug = [e for e in coin if (e.quote.slug or "").strip()]
        slug = most_trusted(with_slug).quote.slug.strip() if with_slug else None  # type: ignore[union-attr]
        if canonical:
            coin_id, how = canonical[0].quote.source_id, 0
        elif slug is not None:
            coin_id, how = slug.lower(), 1
        else:
            coin_id, how = fallback_id(coin), 2
        found.append((coin_id, how, slug, *(c[0].quote.source_id if c else None for c in by_column.values())))
    # Coins of one currency claiming one id: the best claim keeps it, the others fall back.
    ids = []
    for coin, (coin_id, how, slug, cg, cmc) in zip(coins, found, strict=True):
        claims = [
            (other_how, min((e.source, e.quote.source_id) for e in other))
            for other, (other_id, other_how, *_rest) in zip(coins, found, strict=True)
            if other_id == coin_id and other[0].quote.currency == coin[0].quote.currency
        ]
        mine = (how, min((e.source, e.quote.source_id) for e in coin))
        ids.append((coin_id if mine == min(claims) else fallback_id(coin), slug, cg, cmc))
    return ids


def fallback_id(coin: list[Entry]) -> str:
    best = most_trusted(coin)
    return f"{best.source}:{best.quote.source_id}"


def consensus_baseline(coin: list[Entry], coin_id: str, slug: str | None, coingecko_id: str | None,
                       coinmarketcap_id: str | None, observed_at: datetime, tol: float,
                       previous: Mapping[str, float]) -> CoinSnapshot | None:
    dropped = {e.source: STALE for e in coin if e.weight is None}
    fresh = [e for e in coin if e.weight is not None]
    if not fresh:
        return None
    if len(fresh) >= 3:
        prices = sorted(e.price for e in fresh)
        median = plain_median(prices)
        mad = plain_median(sorted(abs(p - median) for p in prices))
        limit = max(3.5 * 1.4826 * mad, tol * median)
        for e in fresh:
            if abs(e.price - median) > limit:
                dropped[e.source] = OUTLIER
    candidates = [e for e in fresh if e.source not in dropped]
    used = candidates
    if len(candidates) == 1:
        confidence = candidates[0].trust
    else:
        lo = min(e.price for e in candidates)
        hi = max(e.price for e in candidates)
        spread = (hi - lo) / hi
        prev = previous.get(coin_id)
        if len(candidates) == 2 and spread > tol and prev is not None and 0 < prev < math.inf:
            a, b = candidates
            if abs(a.price - prev) != abs(b.price - prev):
                near, far = sorted(candidates, key=lambda e: abs(e.price - prev))
                dropped[far.source] = DISAGREEMENT
                used = [near]
        t_max = max([0.0] + [e.trust for e in used])
        miss = 1.0
        for e in used:
            miss *= 1.0 - e.trust
        combined = 1.0 - miss
        if spread <= tol:
            confidence = combined if tol == 0 else t_max + (combined - t_max) * (1.0 - spread / tol)
        else:
            confidence = t_max * tol / spread
        confidence = min(1.0, max(0.0, confidence))
    if len(candidates) < len(fresh):
        confidence *= len(candidates) / len(fresh)

    by_weight = sorted(used, key=lambda e: -e.weight)  # type: ignore[operator]
    by_trust = sorted(used, key=lambda e: -e.trust)

    def heaviest(get: Callable[[SourceQuote], object], missing: object = None) -> object:
        return next((v for e in by_weight if (v := get(e.quote)) is not missing), missing)

    def median_of(get: Callable[[Entry], float | None]) -> float | None:
        pairs = [(v, e.weight) for e in used if (v := get(e)) is not None]
        return weighted_median(pairs) if pairs else None  # type: ignore[arg-type]

    return CoinSnapshot(
        coin_id=coin_id,
        symbol=next((e.quote.symbol for e in by_weight if e.quote.symbol), ""),
        name=next((e.quote.name for e in by_weight if e.quote.name), ""),
        slug=slug,
        rank=next((e.quote.rank for e in by_trust if e.quote.rank is not None), None),
        price=median_of(lambda e: e.price),  # type: ignore[arg-type]
        market_cap=median_of(lambda e: no_nan(e.quote.market_cap)),
        volume_24h=median_of(lambda e: no_nan(e.quote.volume_24h)),
        change_1h=heaviest(lambda q: q.change_1h),  # type: ignore[arg-type]
        change_24h=heaviest(lambda q: q.change_24h),  # type: ignore[arg-type]
        change_7d=heaviest(lambda q: q.change_7d),  # type: ignore[arg-type]
        circulating_supply=heaviest(lambda q: q.circulating_supply),  # type: ignore[arg-type]
        total_supply=heaviest(lambda q: q.total_supply),  # type: ignore[arg-type]
        max_supply=heaviest(lambda q: q.max_supply),  # type: ignore[arg-type]
        confidence=confidence,
        observed_at=observed_at,
        currency=coin[0].quote.currency,
        coingecko_id=coingecko_id,
        coinmarketcap_id=coinmarketcap_id,
        sources=tuple(
            SourceValue(e.source, e.quote.source_id, e.price, no_nan(e.quote.market_cap), no_nan(e.quote.volume_24h),
                        e.quote.last_updated, e.source not in dropped, dropped.get(e.source))
            for e in coin
        ),
    )


@dataclass
class Memory:
    """What the previous cycle left: the outliers per coin (hysteresis), the unverified coins."""

    excluded: Mapping[str, frozenset[str]] = field(default_factory=dict)
    unverified: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Precision:
    noise: float
    rounded: bool = False
    latency: float = 0.0


PRECISION = {
    **dict.fromkeys(["binance", "coinbase", "kraken"], Precision(0.0005)),
    **dict.fromkeys(["coingecko", "coinmarketcap", "coinpaprika"], Precision(0.001, latency=60.0)),
    **dict.fromkeys(["coingecko-html", "coinmarketcap-html"], Precision(0.001, rounded=True, latency=60.0)),
}


def precision_of(source: str, table: Mapping[str, Precision]) -> Precision:
    if source in table:
        return table[source]
    if source.endswith("-html"):
        return Precision(0.001, rounded=True, latency=60.0)
    return Precision(0.002, latency=60.0)


def half_width(price: float, age: float, precision: Precision) -> float:
    """A quote's own 95 % half-width at ``price``: noise, drift over its age and latency, page rounding."""
    age = precision.latency + max(age, 0.0)
    u = 1.96 * price * math.sqrt(precision.noise ** 2 + 1.5e-4 ** 2 * age)
    if precision.rounded:
        if price >= 1:
            u += 0.005
        else:
            u += 0.5 * 10.0 ** (-(math.ceil(-math.log10(price)) - 1 + 4))
    return u


def consensus(coin: list[Entry], coin_id: str, slug: str | None, coingecko_id: str | None,
              coinmarketcap_id: str | None, observed_at: datetime, tol: float,
              previous: Mapping[str, float], memory: Memory, table: Mapping[str, Precision]) -> CoinSnapshot | None:
    now = seconds(observed_at)
    dropped = {e.source: STALE for e in coin if e.weight is None}
    fresh = [e for e in coin if e.weight is not None]
    if not fresh:
        return None
    weights = [e.weight for e in fresh]
    prices = sorted(e.price for e in fresh)
    limit = math.inf
    unverified = False
    price = weighted_median([(e.price, e.weight) for e in fresh])  # type: ignore[misc]
    if len(fresh) >= 3:
        held = memory.excluded.get(coin_id, frozenset())
        if prices[-1] - prices[0] > tol * prices[0] or held:
            mad = weighted_median([(abs(e.price - price), e.weight) for e in fresh])  # type: ignore[misc]
            limit = max(3.5 * 1.4826 * mad, tol * price)
            for e in fresh:
                distance = abs(e.price - price)
                if distance > limit or (e.source in held and distance > limit * 0.5):
                    dropped[e.source] = OUTLIER
    elif len(fresh) == 2 and prices[1] - prices[0] > tol * prices[1]:
        prev = previous.get(coin_id) if coin_id not in memory.unverified else None
        a, b = fresh
        if prev is not None and 0 < prev < math.inf and abs(a.price - prev) != abs(b.price - prev):
            near, far = sorted(fresh, key=lambda e: abs(e.price - prev))
            dropped[far.source] = DISAGREEMENT
            price = near.price
        else:
            unverified = True
    used = [e for e in fresh if e.source not in dropped]

    # the interval: every fresh quote's own half-width, weighted, and their disagreement (outliers clipped)
    def own_of(e: Entry) -> float:
        return half_width(price, now - seconds(e.quote.last_updated or e.quote.collected_at),
                          precision_of(e.source, table))

    total = sum(weights)  # type: ignore[arg-type]
    n = len(fresh)
    if total > 0:
        own = 0.0
        distance = 0.0
        for e in fresh:
            own += e.weight * own_of(e)  # type: ignore[operator]
            distance += e.weight * min(abs(e.price - price), limit)  # type: ignore[operator]
        own /= total
        distance = distance / total * (n / (n - 1)) if n > 1 else 0.0
    else:
        own = 0.0
        distance = 0.0
        for e in fresh:
            own += own_of(e)
            distance += min(abs(e.price - price), limit)
        own /= n
        distance = distance / n * (n / (n - 1)) if n > 1 else 0.0
    independent = len({e.namespace.name for e in used})
    spread = 1.96 * (math.sqrt(math.pi / 2) * 1.2533) * distance
    margin = math.sqrt((own * own + spread * spread) / len({e.namespace.name for e in fresh}))
    low, high = price - margin, price + margin
    if unverified:
        low, high = min(low, prices[0]), max(high, prices[-1])
    width = (high - low) / price
    support = 1.0 - 0.5 ** independent
    if tol > 0:
        confidence = support * (tol / (tol + width))
    else:
        confidence = support if width == 0 else 0.0

    times = [seconds(e.quote.last_updated or e.quote.collected_at) for e in used]
    newest = used[times.index(max(times))].quote
    if max(times) > now:
        price_at = observed_at if observed_at.tzinfo else observed_at.replace(tzinfo=UTC)
    else:
        price_at = newest.last_updated or newest.collected_at
        price_at = price_at if price_at.tzinfo else price_at.replace(tzinfo=UTC)
    snapshot = describe(coin, used, dropped, coin_id, slug, coingecko_id, coinmarketcap_id, observed_at, price,
                        confidence)
    snapshot.price_low, snapshot.price_high, snapshot.unverified, snapshot.price_at = low, high, unverified, price_at
    return snapshot


def describe(coin: list[Entry], used: list[Entry], dropped: dict[str, str], coin_id: str, slug: str | None,
             coingecko_id: str | None, coinmarketcap_id: str | None, observed_at: datetime, price: float,
             confidence: float) -> CoinSnapshot:
    """The snapshot's fields other than the consensus price, confidence and interval (as the baseline's)."""
    by_weight = sorted(used, key=lambda e: -e.weight)  # type: ignore[operator]
    by_trust = sorted(used, key=lambda e: -e.trust)

    def heaviest(get: Callable[[SourceQuote], object], missing: object = None) -> object:
        return next((v for e in by_weight if (v := get(e.quote)) is not missing), missing)

    def median_of(get: Callable[[Entry], float | None]) -> float | None:
        pairs = [(v, e.weight) for e in used if (v := get(e)) is not None]
        return weighted_median(pairs) if pairs else None  # type: ignore[arg-type]

    return CoinSnapshot(
        coin_id=coin_id,
        symbol=next((e.quote.symbol for e in by_weight if e.quote.symbol), ""),
        name=next((e.quote.name for e in by_weight if e.quote.name), ""),
        slug=slug,
        rank=next((e.quote.rank for e in by_trust if e.quote.rank is not None), None),
        price=price,
        market_cap=median_of(lambda e: no_nan(e.quote.market_cap)),
        volume_24h=median_of(lambda e: no_nan(e.quote.volume_24h)),
        change_1h=heaviest(lambda q: q.change_1h),  # type: ignore[arg-type]
        change_24h=heaviest(lambda q: q.change_24h),  # type: ignore[arg-type]
        change_7d=heaviest(lambda q: q.change_7d),  # type: ignore[arg-type]
        circulating_supply=heaviest(lambda q: q.circulating_supply),  # type: ignore[arg-type]
        total_supply=heaviest(lambda q: q.total_supply),  # type: ignore[arg-type]
        max_supply=heaviest(lambda q: q.max_supply),  # type: ignore[arg-type]
        confidence=confidence,
        observed_at=observed_at,
        currency=coin[0].quote.currency,
        coingecko_id=coingecko_id,
        coinmarketcap_id=coinmarketcap_id,
        sources=tuple(
            SourceValue(e.source, e.quote.source_id, e.price, no_nan(e.quote.market_cap), no_nan(e.quote.volume_24h),
                        e.quote.last_updated, e.source not in dropped, dropped.get(e.source))
            for e in coin
        ),
    )


def no_nan(value: float | None) -> float | None:
    """A NaN market cap or volume is no reading."""
    return None if value is not None and math.isnan(value) else value


def plain_median(ordered: list[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else midpoint(ordered[n // 2 - 1], ordered[n // 2])


def midpoint(a: float, b: float) -> float:
    """Halfway from a to b (a <= b), never outside [a, b] despite rounding."""
    m = a + (b - a) * 0.5
    if m < a:
        return a
    if m > b:
        return b
    return m


def weighted_median(pairs: list[tuple[float, float]]) -> float:
    """``pairs`` (value, weight) in source order: the value where the cumulative weight, in ascending value
    order (ties in source order), first reaches half the total (the weights summed in source order);
    exactly half (within 1e-12 of the total): the midpoint with the next value that has a weight."""
    total = sum([w for _v, w in pairs])
    ordered = sorted(pairs, key=lambda vw: vw[0])
    if not total > 0:
        return plain_median([v for v, _w in ordered])
    half = total * 0.5
    slack = total * 1e-12
    cumulative = 0.0
    for i, (v, w) in enumerate(ordered):
        if w > 0:
            cumulative += w
            if cumulative >= half - slack:
                if cumulative <= half + slack:
                    after = [nv for nv, nw in ordered[i + 1:] if nw > 0]
                    if after:
                        return midpoint(v, after[0])
                return v
    return ordered[-1][0]
