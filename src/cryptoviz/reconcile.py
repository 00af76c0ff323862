"""Reconciliation: group one coin's quotes across sources and agree on one value with a confidence.

Pure and deterministic: the output does not depend on the order of the input quotes.

Identity
    Quotes are joined by union-find over keys, never by symbol alone:
    1. source ids: the CoinGecko id (shared by ``coingecko`` and ``coingecko-html``) and the
       CoinMarketCap id (shared by ``coinmarketcap`` and ``coinmarketcap-html``);
    2. slug, lower-cased (a CoinGecko id counts as a slug: it equals CoinMarketCap's slug for most coins);
    3. normalised name (casefolded, spaces and punctuation removed) + upper-cased symbol.
    Two quotes of the same source are never one coin: a key shared by two quotes of one source is
    ambiguous and not used, and a chain of keys that would still join two quotes of one source is
    undone (the component is rebuilt key class by key class, in a fixed order, refusing such joins).
    Keys include the vs currency, so quotes in different currencies are never joined.
    When one source reports the same source id twice, the newest quote is kept.

    coin_id = the CoinGecko id when a CoinGecko source reports the coin (``coingecko`` preferred to
    ``coingecko-html``), else the slug (lower-cased, of the most trusted source that has one), else
    ``"{source}:{source_id}"`` of the most trusted source. Should two coins claim the same id, the one
    holding it by the higher rule keeps it (same rule: the one whose smallest (source, source_id)
    sorts first) and the others fall back to ``"{source}:{source_id}"``.

Consensus, per coin
    * A quote older than ``max_staleness`` (by ``last_updated``, else ``collected_at``) is kept in
      ``sources`` with ``used=False, dropped_reason="stale"``.
    * With 3+ fresh quotes, a price p is an outlier ("outlier") when
      ``|p - median| > max(3.5 * 1.4826 * MAD, disagreement_tolerance * median)``; the relative floor
      keeps a 3-source MAD (which can be 0 or tiny) from dropping prices that agree within tolerance.
    * Relative spread of a set of prices = ``(max - min) / max``, in [0, 1).
    * Exactly 2 candidates (fresh, not outliers) whose spread exceeds ``disagreement_tolerance``: if
      ``previous[coin_id]`` is known, the price farther from it (absolute distance) is dropped
      ("disagreement"); on a tie or without a previous price both are kept. Confidence is lowered
      either way (see below).
    * price, market_cap, volume_24h: weighted median over the used quotes that have the field, weight =
      trust x freshness, freshness = ``max(0.05, 1 - age / max_staleness)`` (1 for a future time).
      When the cumulative weight hits exactly half, the midpoint of the two middle values is taken.
    * name, symbol, changes, supplies: from the highest-weight used quote that has them; rank and
      slug: from the most trusted (used, for rank) quote that has them.

Confidence, in [0, 1]
    Let C = the fresh, non-outlier quotes (candidates), U ⊆ C the used ones, t_i = trust of each
    (clamped to [0, 1]), t_max = max over U, spread = relative spread of C's prices,
    tol = disagreement_tolerance, combined = 1 - prod_U(1 - t_i) (chance that at least one used source
    is right; grows with the number of sources and their trust, and is >= t_max).

    * |C| == 1:              confidence = t (exactly the trust of the only source)
    * spread <= tol:         confidence = t_max + (combined - t_max) * (1 - spread / tol)
                             (= combined when the sources agree exactly, t_max at the tolerance edge;
                             so agreeing sources score above any one of them alone)
    * spread >  tol:         confidence = t_max * tol / spread   (< t_max: disagreement costs confidence)
    * outliers dropped:      the above x |C| / |fresh| (the share of fresh sources that agree)

A coin whose quotes are all stale yields no snapshot. Quote ages are measured against
``observed_at``; naive datetimes are taken as UTC. Trust missing from a mapping is 0.5.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from operator import attrgetter, itemgetter

from cryptoviz.models import CoinSnapshot, SourceQuote, SourceValue
from cryptoviz.validate import STALE, timestamp

OUTLIER = "outlier"
DISAGREEMENT = "disagreement"
DROPPED_REASONS = (STALE, OUTLIER, DISAGREEMENT)

# Sources sharing an id namespace, in order of preference for coingecko_id / coinmarketcap_id.
COINGECKO_SOURCES = ("coingecko", "coingecko-html")
COINMARKETCAP_SOURCES = ("coinmarketcap", "coinmarketcap-html")

MAD_SCALE = 1.4826  # makes the MAD a consistent estimator of the standard deviation
MAD_CUTOFF = 3.5
MIN_FRESHNESS = 0.05
UNKNOWN_SOURCE_TRUST = 0.5  # trust of a source missing from a trust mapping

Trust = Mapping[str, float] | Callable[[str], float]
Key = tuple[str, ...]

_NON_ALNUM = re.compile(r"[\W_]+")
# Key classes, strongest first (used when a component must be rebuilt, see _split).
_PHASES = (("cg", "cmc"), ("slug",), ("ns",))

# One source's quote inside one coin: (source, quote, trust, weight, price) where
# weight = trust x freshness, or -1.0 for a stale quote.
_Row = tuple[str, SourceQuote, float, float, float]
_trust_key = itemgetter(2)
_weight_key = itemgetter(3)
_CHANGE_1H = attrgetter("change_1h")
_CHANGE_24H = attrgetter("change_24h")
_CHANGE_7D = attrgetter("change_7d")
_CIRCULATING = attrgetter("circulating_supply")
_TOTAL = attrgetter("total_supply")
_MAX = attrgetter("max_supply")


@lru_cache(maxsize=1 << 16)
def normalise_name(name: str) -> str:
    """Casefolded, without spaces or punctuation: "Wrapped Bitcoin (WBTC)" -> "wrappedbitcoinwbtc"."""
    return _NON_ALNUM.sub("", name.casefold())


def identity_keys(quote: SourceQuote) -> list[Key]:
    """The keys that may join ``quote`` to quotes of other sources (first element = key class)."""
    cur = quote.currency
    source = quote.source
    sid = quote.source_id
    keys: list[Key] = []
    own_slug = ""
    if source in COINGECKO_SOURCES:
        keys.append(("cg", cur, sid))
        own_slug = sid.lower()
        keys.append(("slug", cur, own_slug))
    elif source in COINMARKETCAP_SOURCES:
        keys.append(("cmc", cur, sid))
    slug = quote.slug
    if slug:
        slug = slug.strip().lower()
        if slug and slug != own_slug:
            keys.append(("slug", cur, slug))
    name = normalise_name(quote.name)
    symbol = quote.symbol.strip().upper()
    if name and symbol:
        keys.append(("ns", cur, name, symbol))
    return keys


@dataclass(slots=True)
class _Coin:
    coin_id: str
    tier: int  # how coin_id was chosen: 0 = CoinGecko id, 1 = slug, 2 = source:source_id
    slug: str | None
    coingecko_id: str | None
    coinmarketcap_id: str | None
    fallback_id: str  # "source:source_id" of the most trusted source
    rows: list[_Row]  # sorted by source name
    any_stale: bool


def reconcile(
    quotes: Sequence[SourceQuote],
    *,
    observed_at: datetime,
    trust: Trust,
    max_staleness: float,
    disagreement_tolerance: float = 0.05,
    previous: Mapping[str, float] | None = None,
) -> list[CoinSnapshot]:
    """One ``CoinSnapshot`` per coin, sorted by coin_id (see the module docstring for the rules).

    ``trust``: source name -> weight in [0, 1] (mapping or callable); ``max_staleness`` in seconds;
    ``previous``: coin_id -> previous consensus price, used to settle a two-source disagreement.
    Quotes without a positive finite price are skipped (validation rejects them earlier).
    The cyclic garbage collector is paused while it runs (see ``_gc_paused``).
    """
    if not max_staleness > 0:
        raise ValueError(f"max_staleness must be > 0 seconds, got {max_staleness!r}")
    if not disagreement_tolerance >= 0:
        raise ValueError(f"disagreement_tolerance must be >= 0, got {disagreement_tolerance!r}")
    with _gc_paused():
        return _reconcile(quotes, observed_at, _trust_lookup(trust), max_staleness, disagreement_tolerance,
                          previous)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything).

    Reconciling creates ~4 container objects per quote and no reference cycles; left on, the
    collector walks the young objects hundreds of times per call and, as they pile up, triggers a
    full collection that walks the whole process heap (a quarter of the run time at 30,000 quotes).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _reconcile(
    quotes: Sequence[SourceQuote],
    observed_at: datetime,
    lookup: Callable[[str], float],
    max_staleness: float,
    disagreement_tolerance: float,
    previous: Mapping[str, float] | None,
) -> list[CoinSnapshot]:
    observed_ts = timestamp(observed_at)

    # 1. One quote per (currency, source, source_id): the newest.
    slot: dict[tuple[str, str, str], int] = {}
    kept: list[SourceQuote] = []
    times: list[float] = []
    prices: list[float] = []
    inf = math.inf
    for q in quotes:
        p = q.price
        if p is None or not 0.0 < p < inf:
            continue
        when = q.last_updated
        if when is None:
            when = q.collected_at
        ts = when.timestamp() if when.tzinfo is not None else timestamp(when)
        k = (q.currency, q.source, q.source_id)
        i = slot.get(k)
        if i is None:
            slot[k] = len(kept)
            kept.append(q)
            times.append(ts)
            prices.append(p)
        elif ts > times[i] or (ts == times[i] and _order_key(q) > _order_key(kept[i])):
            kept[i] = q
            times[i] = ts
            prices[i] = p

    # 2. Identity, then canonical ids.
    trust_of: dict[str, float] = {}
    coins: list[_Coin] = []
    claims: dict[tuple[str, str], list[int]] = {}
    groups = _group_fast(kept)
    for members in (groups if groups is not None else _group(kept)):
        rows: list[_Row] = []
        any_stale = False
        for i in members:
            q = kept[i]
            source = q.source
            t = trust_of.get(source)
            if t is None:
                t = trust_of[source] = _clamp_trust(lookup(source))
            age = observed_ts - times[i]
            if age > max_staleness:
                weight = -1.0
                any_stale = True
            elif age <= 0:
                weight = t
            else:
                freshness = 1.0 - age / max_staleness
                weight = t * (freshness if freshness > MIN_FRESHNESS else MIN_FRESHNESS)
            rows.append((source, q, t, weight, prices[i]))
        if len(rows) > 1:
            rows.sort()  # sources are distinct within a coin: this orders by source name
        coin = _identify(rows, any_stale)
        claim = (rows[0][1].currency, coin.coin_id)
        holders = claims.get(claim)
        if holders is None:
            claims[claim] = [len(coins)]
        else:
            holders.append(len(coins))
        coins.append(coin)
    for holders in claims.values():
        if len(holders) > 1:
            _settle_claim([coins[i] for i in holders])

    # 3. One snapshot per coin.
    snapshots: list[CoinSnapshot] = []
    for coin in coins:
        snap = _snapshot(coin, observed_at, disagreement_tolerance, previous)
        if snap is not None:
            snapshots.append(snap)
    snapshots.sort(key=_snapshot_order)
    return snapshots


def _snapshot_order(s: CoinSnapshot) -> tuple[str, str]:
    return s.coin_id, s.currency


# --- identity ----------------------------------------------------------------------------------


def _group(quotes: list[SourceQuote], ambiguous: frozenset[Key] = frozenset()) -> list[list[int]]:
    """Components (lists of indices into ``quotes``) of the identity graph.

    Keys in ``ambiguous`` are not used. A key found to be held by two quotes of one source is
    ambiguous; as joins made through it before that was known must not stand, the grouping is then
    done again without it (rare: source ids and slugs are unique within a source).
    """
    n = len(quotes)
    bit_of: dict[str, int] = {}
    bits = [0] * n
    mask = [0] * n  # per root: the sources in its component
    parent = list(range(n))
    first: dict[Key, int] = {}
    holders: dict[Key, int] = {}  # sources holding a shared key
    found: set[Key] = set()
    clash = False
    keys_of = identity_keys
    for i, q in enumerate(quotes):
        b = bit_of.get(q.source)
        if b is None:
            b = bit_of[q.source] = 1 << len(bit_of)
        bits[i] = mask[i] = b
        for key in keys_of(q):
            j = first.setdefault(key, i)
            if j == i or key in ambiguous:
                continue
            m = holders.get(key)
            if m is None:
                m = bits[j]
            if m & b:
                found.add(key)
                continue
            holders[key] = m | b
            x = i
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            y = j
            while parent[y] != y:
                parent[y] = parent[parent[y]]
                y = parent[y]
            if x != y:
                if mask[x] & mask[y]:
                    clash = True  # two quotes of one source chained together: see _split
                parent[x] = y
                mask[y] |= mask[x]
    if found:
        return _group(quotes, ambiguous | found)

    components: dict[int, list[int]] = {}
    for i in range(n):
        x = i
        while parent[x] != x:
            x = parent[x]
        members = components.get(x)
        if members is None:
            components[x] = [i]
        else:
            members.append(i)
    if not clash:
        return list(components.values())
    out: list[list[int]] = []
    for members in components.values():
        seen = 0
        for i in members:
            if seen & bits[i]:
                out.extend(_split(members, quotes, bits, ambiguous))
                break
            seen |= bits[i]
        else:
            out.append(members)
    return out


_NAMES: dict[str, str] = {}  # normalise_name without the lru_cache call overhead (hot loop)
_SYMBOLS: dict[str, str] = {}
_CACHE_LIMIT = 1 << 16


def _group_fast(quotes: list[SourceQuote]) -> list[list[int]] | None:
    """``_group`` for the usual input, or None when the general algorithm is needed.

    Usual: one vs currency, and no component that would hold two quotes of one source. The components
    are then the connected components of the key graph, as ``_group`` finds them (same members, same
    order). A key held by two quotes of one source (ambiguous, which ``_group`` drops) joins both into one
    component, so checking the components for a repeated source (a clash) catches ambiguous keys too.
    Keys are kept per key class in plain dicts keyed by strings (the currency is the same for all), much
    cheaper than building and hashing a tuple per key.
    """
    n = len(quotes)
    if n == 0:
        return []
    currency = quotes[0].currency
    names = _NAMES
    symbols = _SYMBOLS
    if len(names) > _CACHE_LIMIT:
        names.clear()
    if len(symbols) > _CACHE_LIMIT:
        symbols.clear()
    parent = list(range(n))
    mask = [0] * n  # per root: the sources in its component (one bit per source)
    links: list[int] = []  # pairs (i, j): quote i holds a key first held by quote j
    link = links.append
    by_cg: dict[str, int] = {}
    by_cmc: dict[str, int] = {}
    by_slug: dict[str, int] = {}
    by_name: dict[tuple[str, str], int] = {}
    bit_of: dict[str, int] = {}
    cg_sources = COINGECKO_SOURCES
    cmc_sources = COINMARKETCAP_SOURCES
    for i, q in enumerate(quotes):
        if q.currency != currency:
            return None
        source = q.source
        b = bit_of.get(source)
        if b is None:
            b = bit_of[source] = 1 << len(bit_of)
        mask[i] = b
        own_slug = ""
        if source in cg_sources:
            sid = q.source_id
            j = by_cg.setdefault(sid, i)
            if j != i:
                link(i)
                link(j)
            own_slug = sid.lower()
            j = by_slug.setdefault(own_slug, i)
            if j != i:
                link(i)
                link(j)
        elif source in cmc_sources:
            j = by_cmc.setdefault(q.source_id, i)
            if j != i:
                link(i)
                link(j)
        slug = q.slug
        if slug:
            slug = slug.strip().lower()
            if slug and slug != own_slug:
                j = by_slug.setdefault(slug, i)
                if j != i:
                    link(i)
                    link(j)
        raw = q.name
        name = names.get(raw)
        if name is None:
            name = names[raw] = normalise_name(raw)
        raw = q.symbol
        symbol = symbols.get(raw)
        if symbol is None:
            symbol = symbols[raw] = raw.strip().upper()
        if name and symbol:
            key = (name, symbol)
            j = by_name.setdefault(key, i)
            if j != i:
                link(i)
                link(j)
    for k in range(0, len(links), 2):
        x = links[k]
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        y = links[k + 1]
        while parent[y] != y:
            parent[y] = parent[parent[y]]
            y = parent[y]
        if x != y:
            if mask[x] & mask[y]:
                return None  # two quotes of one source would be one coin: an ambiguous key or a chain
            parent[x] = y
            mask[y] |= mask[x]
    components: dict[int, list[int]] = {}
    for i in range(n):
        x = i
        while parent[x] != x:
            x = parent[x]
        members = components.get(x)
        if members is None:
            components[x] = [i]
        else:
            members.append(i)
    return list(components.values())


def _split(members: list[int], quotes: list[SourceQuote], bits: list[int],
           ambiguous: frozenset[Key]) -> list[list[int]]:
    """Rebuild a component that chained two quotes of one source together, refusing such joins.

    Key classes are applied strongest first (ids, slugs, name+symbol), quotes in (source, source_id)
    order, so the result does not depend on the input order.
    """
    order = sorted(members, key=lambda i: (quotes[i].source, quotes[i].source_id))
    parent = {i: i for i in order}
    mask = {i: bits[i] for i in order}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    keys = {i: identity_keys(quotes[i]) for i in order}
    for tags in _PHASES:
        holders: dict[Key, list[int]] = {}
        for i in order:
            for key in keys[i]:
                if key[0] in tags and key not in ambiguous:
                    holders.setdefault(key, []).append(i)
        for group in holders.values():
            for i in group[1:]:
                a, b = find(group[0]), find(i)
                if a != b and not mask[a] & mask[b]:
                    parent[b] = a
                    mask[a] |= mask[b]
    parts: dict[int, list[int]] = {}
    for i in order:
        parts.setdefault(find(i), []).append(i)
    return list(parts.values())


def _identify(rows: list[_Row], any_stale: bool) -> _Coin:
    """Ids of one coin from its quotes (``rows`` sorted by source name)."""
    coingecko_id = coinmarketcap_id = slug = None
    slug_trust = -1.0
    best = rows[0]  # most trusted; on a tie, the first source by name
    for row in rows:
        source = row[0]
        q = row[1]
        if source in COINGECKO_SOURCES:
            if coingecko_id is None or source == COINGECKO_SOURCES[0]:
                coingecko_id = q.source_id
        elif source in COINMARKETCAP_SOURCES:
            if coinmarketcap_id is None or source == COINMARKETCAP_SOURCES[0]:
                coinmarketcap_id = q.source_id
        t = row[2]
        if t > best[2]:
            best = row
        if q.slug and t > slug_trust:
            s = q.slug.strip()
            if s:
                slug = s
                slug_trust = t
    fallback = f"{best[0]}:{best[1].source_id}"
    if coingecko_id is not None:
        return _Coin(coingecko_id, 0, slug, coingecko_id, coinmarketcap_id, fallback, rows, any_stale)
    if slug is not None:
        return _Coin(slug.lower(), 1, slug, coingecko_id, coinmarketcap_id, fallback, rows, any_stale)
    return _Coin(fallback, 2, slug, coingecko_id, coinmarketcap_id, fallback, rows, any_stale)


def _settle_claim(claimants: list[_Coin]) -> None:
    """Several coins want one id: the best claim keeps it, the others use their source:source_id."""
    ranked = sorted(claimants, key=lambda c: (c.tier, min((r[0], r[1].source_id) for r in c.rows)))
    for coin in ranked[1:]:
        coin.coin_id = coin.fallback_id
        coin.tier = 2


# --- consensus ---------------------------------------------------------------------------------


def _snapshot(
    coin: _Coin,
    observed_at: datetime,
    tol: float,
    previous: Mapping[str, float] | None,
) -> CoinSnapshot | None:
    rows = coin.rows
    dropped: dict[str, str] = {}
    fresh = rows
    if coin.any_stale:
        fresh = []
        for r in rows:
            if r[3] < 0:
                dropped[r[0]] = STALE
            else:
                fresh.append(r)
        if not fresh:
            return None

    lo, hi = _price_range(fresh)
    candidates = fresh
    # No price can be an outlier when the whole range is within tolerance of the lowest price
    # (|p - median| <= hi - lo <= tol * lo <= tol * median): skip the MAD in the usual case.
    if len(fresh) >= 3 and hi - lo > tol * lo:
        ordered = sorted([c[4] for c in fresh])
        median = _median(ordered)
        mad = _median(sorted([abs(p - median) for p in ordered]))
        limit = max(MAD_CUTOFF * MAD_SCALE * mad, tol * median)
        candidates = []
        for c in fresh:
            if abs(c[4] - median) > limit:
                dropped[c[0]] = OUTLIER
            else:
                candidates.append(c)
        lo, hi = _price_range(candidates)

    used = candidates
    if len(candidates) == 1:
        confidence = candidates[0][2]
    else:
        spread = (hi - lo) / hi
        if len(candidates) == 2 and spread > tol and previous:
            prev = previous.get(coin.coin_id)
            if prev is not None and 0.0 < prev < math.inf:
                a, b = candidates
                da = abs(a[4] - prev)
                db = abs(b[4] - prev)
                if da < db:
                    used = [a]
                    dropped[b[0]] = DISAGREEMENT
                elif db < da:
                    used = [b]
                    dropped[a[0]] = DISAGREEMENT
        confidence = _confidence(used, spread, tol)
    if len(candidates) < len(fresh):
        # An outlier is a source that disagreed: only the agreeing share of the fresh sources vouches.
        confidence *= len(candidates) / len(fresh)

    if len(used) == 1:
        ranked = used
        top = used[0][1]
        price = used[0][4]
        market_cap = top.market_cap
        volume = top.volume_24h
        rank = top.rank
    else:
        ranked = sorted(used, key=_weight_key, reverse=True)  # stable: equal weights keep source order
        top = ranked[0][1]
        price = _weighted_median([(c[4], c[3]) for c in used])
        caps = [(v, c[3]) for c in used if (v := c[1].market_cap) is not None]
        market_cap = _weighted_median(caps) if caps else None
        volumes = [(v, c[3]) for c in used if (v := c[1].volume_24h) is not None]
        volume = _weighted_median(volumes) if volumes else None
        rank = max(used, key=_trust_key)[1].rank  # max() keeps the first (by source name) on a tie
        if rank is None:
            for c in sorted(used, key=_trust_key, reverse=True):
                if c[1].rank is not None:
                    rank = c[1].rank
                    break

    # Descriptive fields: the highest-weight used quote that has them.
    symbol = top.symbol or _pick_text(ranked, "symbol")
    name = top.name or _pick_text(ranked, "name")
    change_1h = top.change_1h
    if change_1h is None and len(ranked) > 1:
        change_1h = _pick(ranked, _CHANGE_1H)
    change_24h = top.change_24h
    if change_24h is None and len(ranked) > 1:
        change_24h = _pick(ranked, _CHANGE_24H)
    change_7d = top.change_7d
    if change_7d is None and len(ranked) > 1:
        change_7d = _pick(ranked, _CHANGE_7D)
    circulating = top.circulating_supply
    if circulating is None and len(ranked) > 1:
        circulating = _pick(ranked, _CIRCULATING)
    total = top.total_supply
    if total is None and len(ranked) > 1:
        total = _pick(ranked, _TOTAL)
    maximum = top.max_supply
    if maximum is None and len(ranked) > 1:
        maximum = _pick(ranked, _MAX)

    # Positional construction (field order of models.SourceValue / models.CoinSnapshot): keyword
    # arguments make these frozen dataclasses markedly slower to build, and this runs per quote.
    if dropped:
        sources = tuple([
            SourceValue(source, q.source_id, p, q.market_cap, q.volume_24h, q.last_updated,
                        source not in dropped, dropped.get(source))
            for source, q, _t, _w, p in rows
        ])
    else:
        sources = tuple([
            SourceValue(source, q.source_id, p, q.market_cap, q.volume_24h, q.last_updated)
            for source, q, _t, _w, p in rows
        ])
    return CoinSnapshot(
        coin.coin_id, symbol, name, coin.slug, rank, price, market_cap, volume,
        change_1h, change_24h, change_7d, circulating, total, maximum,
        confidence, observed_at, top.currency, coin.coingecko_id, coin.coinmarketcap_id, sources,
    )


def _price_range(rows: list[_Row]) -> tuple[float, float]:
    lo = hi = rows[0][4]
    for r in rows:
        p = r[4]
        if p < lo:
            lo = p
        elif p > hi:
            hi = p
    return lo, hi


def _confidence(used: list[_Row], spread: float, tol: float) -> float:
    """See the module docstring: noisy-or of the used trusts, scaled by agreement."""
    t_max = 0.0
    miss = 1.0
    for c in used:
        t = c[2]
        if t > t_max:
            t_max = t
        miss *= 1.0 - t
    if spread <= tol:
        combined = 1.0 - miss
        value = combined if tol == 0 else t_max + (combined - t_max) * (1.0 - spread / tol)
    else:
        value = t_max * tol / spread
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def _median(values: list[float]) -> float:
    """Median of an already sorted, non-empty list."""
    n = len(values)
    mid = n // 2
    if n % 2:
        return values[mid]
    return _midpoint(values[mid - 1], values[mid])


def _midpoint(a: float, b: float) -> float:
    """Midpoint of a <= b that never leaves [a, b] (no overflow, no rounding past an end)."""
    m = a + (b - a) * 0.5
    return a if m < a else b if m > b else m


def _weighted_median(pairs: list[tuple[float, float]]) -> float:
    """Weighted median of non-empty (value, weight) pairs; sorts ``pairs`` in place.

    The smallest value at which the cumulative weight reaches half the total; when it reaches
    exactly half, the midpoint of that value and the next one with a weight. Zero weights count
    for nothing (all zero: equal weights).
    """
    if len(pairs) == 1:
        return pairs[0][0]
    if len(pairs) == 2:  # the usual case, without the general walk
        (a, wa), (b, wb) = pairs
        if a == b:
            return a
        if a > b:
            a, wa, b, wb = b, wb, a, wa
        if wa > 0 or wb > 0:
            if abs(wa - wb) > (wa + wb) * 2e-12:
                return a if wa > wb else b
        return _midpoint(a, b)
    pairs.sort()
    total = 0.0
    for pair in pairs:
        total += pair[1]
    if not total > 0:
        pairs = [(v, 1.0) for v, _w in pairs]
        total = float(len(pairs))
    half = total * 0.5
    slack = total * 1e-12  # absorbs rounding in the running sum
    cumulative = 0.0
    for i, (v, w) in enumerate(pairs):
        if w <= 0:
            continue
        cumulative += w
        if cumulative >= half - slack:
            if cumulative <= half + slack:
                for nv, nw in pairs[i + 1:]:
                    if nw > 0:
                        return _midpoint(v, nv)
            return v
    return pairs[-1][0]


def _pick(ranked: list[_Row], get: Callable[[SourceQuote], float | None]) -> float | None:
    for c in ranked:
        v = get(c[1])
        if v is not None:
            return v
    return None


def _pick_text(ranked: list[_Row], attr: str) -> str:
    for c in ranked:
        v: str = getattr(c[1], attr)
        if v:
            return v
    return ""


# --- helpers -----------------------------------------------------------------------------------


def _trust_lookup(trust: Trust) -> Callable[[str], float]:
    if isinstance(trust, Mapping):
        mapping = trust

        def lookup(source: str) -> float:
            return float(mapping.get(source, UNKNOWN_SOURCE_TRUST))

        return lookup
    return trust


def _clamp_trust(value: float) -> float:
    value = float(value)
    if value != value:  # NaN
        return 0.0
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def _order_key(q: SourceQuote) -> tuple[object, ...]:
    """A total order over quotes, to pick one of two same-time duplicates deterministically."""
    def num(x: float | None) -> tuple[int, float]:
        return (0, 0.0) if x is None else (1, float(x))

    return (num(q.price), num(q.market_cap), num(q.volume_24h), num(q.change_1h), num(q.change_24h),
            num(q.change_7d), num(q.circulating_supply), num(q.total_supply), num(q.max_supply),
            num(q.rank), q.name, q.symbol, (q.slug is not None, q.slug or ""),
            timestamp(q.collected_at), q.last_updated is not None)
