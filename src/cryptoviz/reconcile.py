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
from datetime import datetime
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import overload

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

    Reconciling creates a few container objects per quote and no reference cycles; left on, the
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
    fast: bool = True,
) -> list[CoinSnapshot]:
    """``fast=False`` forces the general path (``_gather``, ``_snapshots``); both give the same snapshots."""
    observed_ts = timestamp(observed_at)
    trust_of: dict[str, float] = {}
    if fast:
        # The fast path visits the quotes in memory order (its result does not depend on the order): a
        # quote, its strings, floats and datetimes are read several times over, and in a shuffled order
        # nearly every read is a cache miss. Quotes in the order they were built are already sorted.
        coins = _gather_fast(sorted(quotes, key=id), observed_ts, lookup, trust_of, max_staleness)
        if coins is not None:
            snapshots = _snapshots_fast(coins, trust_of, observed_at, disagreement_tolerance, previous)
            if snapshots is not None:
                return snapshots
            groups = [list(filter(None, slots)) for slots in coins if slots is not None]
            return _snapshots(groups, observed_at, disagreement_tolerance, previous)
    groups = _gather(quotes, observed_ts, lookup, trust_of, max_staleness)
    return _snapshots(groups, observed_at, disagreement_tolerance, previous)


# --- grouping ----------------------------------------------------------------------------------


def _trust(source: str, trust_of: dict[str, float], lookup: Callable[[str], float]) -> float:
    t = trust_of.get(source)
    if t is None:
        t = trust_of[source] = _clamp_trust(lookup(source))
    return t


def _weight(t: float, age: float, max_staleness: float) -> float:
    """trust x freshness, or -1.0 for a stale quote."""
    if age > max_staleness:
        return -1.0
    if age <= 0:
        return t
    freshness = 1.0 - age / max_staleness
    return t * (freshness if freshness > MIN_FRESHNESS else MIN_FRESHNESS)


def _gather(
    quotes: Sequence[SourceQuote],
    observed_ts: float,
    lookup: Callable[[str], float],
    trust_of: dict[str, float],
    max_staleness: float,
) -> list[list[_Row]]:
    """The rows of each coin (sorted by source name), for any input: the newest quote per (currency, source,
    source_id), grouped by ``_group``."""
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
    groups: list[list[_Row]] = []
    for members in _group(kept):
        rows: list[_Row] = []
        for i in members:
            q = kept[i]
            t = _trust(q.source, trust_of, lookup)
            rows.append((q.source, q, t, _weight(t, observed_ts - times[i], max_staleness), prices[i]))
        rows.sort()  # sources are distinct within a coin: this orders by source name
        groups.append(rows)
    return groups


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


# (name, symbol) as reported -> the name+symbol key as one string, "normalised name NUL symbol" (a normalised
# name holds no NUL, so this is one-to-one), or "" when there is none (an empty part). One string per key:
# its hash is computed once and lookups compare keys by identity.
_NAME_KEYS: dict[tuple[str, str], str] = {}
_NAME_KEYS_LIMIT = 1 << 16
# The sources the fast grouping knows, in name order (the order of a coin's rows): slot -> source.
_SLOTS = ("coingecko", "coingecko-html", "coinmarketcap", "coinmarketcap-html")
_SLOT_OF = {source: slot for slot, source in enumerate(_SLOTS)}
# A coin of the fast path: its row (or None) per slot.
_Coin = list[_Row | None]


def _gather_fast(
    quotes: Sequence[SourceQuote],
    observed_ts: float,
    lookup: Callable[[str], float],
    trust_of: dict[str, float],
    max_staleness: float,
) -> list[_Coin | None] | None:
    """The coins (each a list of rows indexed by slot, see ``_SLOTS``; None for a coin merged into another)
    for the usual input, in one pass; or None when the general algorithm (``_gather``) is needed.

    Usual: one vs currency, only the sources of ``_SLOTS``, no two quotes of one (source, source_id), and
    no coin that would hold two quotes of one source. The coins are then the connected components of the
    key graph, as ``_gather`` finds them, each quote read once: without a repeated source in a component no
    key is ambiguous (an ambiguous key joins two quotes of one source), so a repeated source is the only
    case to hand over. Keys sit in plain dicts per key class, keyed by strings (the currency is the same for
    all). A CoinGecko id needs no key of its own: two CoinGecko-namespace quotes with one id share the
    own-slug key too. A coin's rows come out in source-name order without sorting.

    Union-find over coins: ``parent[c] == c`` for a live coin; a key maps to the coin that first held it,
    or to an alias of a coin it was merged into.
    """
    if not quotes:
        return []
    currency = quotes[0].currency
    name_keys = _NAME_KEYS
    if len(name_keys) > _NAME_KEYS_LIMIT:
        name_keys.clear()
    info: dict[str, tuple[float, int]] = {}  # source -> (trust, slot)
    coins: list[_Coin | None] = []  # per coin: its row per slot (None once merged into another)
    parent: list[int] = []
    by_cmc: dict[str, int] = {}
    by_slug: dict[str, int] = {}
    by_name: dict[str, int] = {}
    inf = math.inf
    min_freshness = MIN_FRESHNESS
    new = 0  # len(parent): the coin a quote starts when none of its keys is known yet
    for q in quotes:
        p = q.price
        if p is None or not 0.0 < p < inf:
            continue
        if q.currency != currency:
            return None
        source = q.source
        si = info.get(source)
        if si is None:
            slot = _SLOT_OF.get(source, -1)
            if slot < 0:
                return None
            si = info[source] = (_trust(source, trust_of, lookup), slot)
        t, slot = si
        when = q.last_updated
        if when is None:
            when = q.collected_at
        age = observed_ts - (when.timestamp() if when.tzinfo is not None else timestamp(when))
        if age > max_staleness:
            w = -1.0
        elif age <= 0:
            w = t
        else:
            w = 1.0 - age / max_staleness
            w = t * (w if w > min_freshness else min_freshness)

        # The coin c this quote joins through its keys (-1: none yet); `new` is its own coin otherwise.
        if slot < 2:  # CoinGecko namespace: the id is a slug too
            own = q.source_id.lower()
            x = by_slug.setdefault(own, new)
        else:
            own = ""
            x = by_cmc.setdefault(q.source_id, new)
        if x == new:
            c = -1
            inserted = True  # a key now maps to `new`
        else:
            while parent[x] != x:
                x = parent[x]
            c = x
            inserted = False
        slug = q.slug
        if slug:
            slug = slug.strip().lower()
            if slug and slug != own:
                x = by_slug.setdefault(slug, new)
                if x == new:
                    inserted = True
                else:
                    while parent[x] != x:
                        x = parent[x]
                    if c < 0:
                        c = x
                    elif x != c:
                        c = _merge(c, x, parent, coins)
                        if c < 0:
                            return None
        raw = (q.name, q.symbol)
        key = name_keys.get(raw)
        if key is None:
            key = name_keys[raw] = _name_key(raw)
        if key:
            x = by_name.setdefault(key, new)
            if x == new:
                inserted = True
            else:
                while parent[x] != x:
                    x = parent[x]
                if c < 0:
                    c = x
                elif x != c:
                    c = _merge(c, x, parent, coins)
                    if c < 0:
                        return None

        row = (source, q, t, w, p)
        if c < 0:
            parent.append(new)
            new += 1
            slots: _Coin = [None, None, None, None]
            slots[slot] = row
            coins.append(slots)
        else:
            slots = coins[c]  # type: ignore[assignment]
            if slots[slot] is not None:
                return None  # two quotes of one source in one coin: an ambiguous key, a chain or a repeat
            slots[slot] = row
            if inserted:
                parent.append(c)
                new += 1
                coins.append(None)
    return coins


def _name_key(raw: tuple[str, str]) -> str:
    name = normalise_name(raw[0])
    symbol = raw[1].strip().upper()
    return f"{name}\x00{symbol}" if name and symbol else ""


def _merge(a: int, b: int, parent: list[int], coins: list[_Coin | None]) -> int:
    """Join coins ``a`` and ``b`` (roots) into the older one; -1 if they hold a common source."""
    if b < a:
        a, b = b, a
    into = coins[a]
    other = coins[b]
    assert into is not None and other is not None
    for slot, row in enumerate(other):
        if row is not None:
            if into[slot] is not None:
                return -1
            into[slot] = row
    parent[b] = a
    coins[b] = None
    return a


# --- identity ----------------------------------------------------------------------------------


_SNAPSHOT_ORDER = attrgetter("coin_id", "currency")


def _snapshots(
    groups: list[list[_Row]],
    observed_at: datetime,
    tol: float,
    previous: Mapping[str, float] | None,
) -> list[CoinSnapshot]:
    """One snapshot per coin (``groups``: each coin's rows, sorted by source name), sorted by (coin_id, currency)."""
    out: list[CoinSnapshot | None] = []
    claims: dict[tuple[str, str], int] = {}
    contested: dict[tuple[str, str], list[int]] = {}
    for g, rows in enumerate(groups):
        coin_id, _tier, slug, coingecko_id, coinmarketcap_id = _identify(rows)
        claim = (rows[0][1].currency, coin_id)
        first = claims.setdefault(claim, g)
        if first != g:
            contested.setdefault(claim, [first]).append(g)
        out.append(_snapshot(rows, coin_id, slug, coingecko_id, coinmarketcap_id, observed_at, tol, previous))
    # Rare: coins claiming one id. The best claim keeps it; the others are redone under their fallback id
    # (the id matters to the consensus: it selects the previous price).
    for holders in contested.values():
        for g in _claim_losers(groups, holders):
            rows = groups[g]
            _coin_id, _tier, slug, coingecko_id, coinmarketcap_id = _identify(rows)
            out[g] = _snapshot(rows, _fallback_id(rows), slug, coingecko_id, coinmarketcap_id, observed_at, tol,
                               previous)
    snapshots = [s for s in out if s is not None]
    # A fallback id can equal another coin's id (ids holding a ':'): order such twins by their sources.
    snapshots.sort(key=_snapshot_order_full if contested else _SNAPSHOT_ORDER)
    return snapshots


def _snapshot_order_full(s: CoinSnapshot) -> tuple[str, str, list[tuple[str, str]]]:
    return s.coin_id, s.currency, [(v.source, v.source_id) for v in s.sources]


def _identify(rows: list[_Row]) -> tuple[str, int, str | None, str | None, str | None]:
    """(coin_id, tier, slug, coingecko_id, coinmarketcap_id) of one coin (``rows`` sorted by source name).

    tier: how coin_id was chosen: 0 = CoinGecko id, 1 = slug, 2 = source:source_id.
    """
    coingecko_id = coinmarketcap_id = slug = None
    slug_trust = -1.0
    for row in rows:
        source = row[0]
        q = row[1]
        if source in COINGECKO_SOURCES:
            if coingecko_id is None or source == COINGECKO_SOURCES[0]:
                coingecko_id = q.source_id
        elif source in COINMARKETCAP_SOURCES:
            if coinmarketcap_id is None or source == COINMARKETCAP_SOURCES[0]:
                coinmarketcap_id = q.source_id
        s = q.slug
        if s and row[2] > slug_trust:
            s = s.strip()
            if s:
                slug = s
                slug_trust = row[2]
    if coingecko_id is not None:
        return coingecko_id, 0, slug, coingecko_id, coinmarketcap_id
    if slug is not None:
        return slug.lower(), 1, slug, coingecko_id, coinmarketcap_id
    return _fallback_id(rows), 2, slug, coingecko_id, coinmarketcap_id


def _fallback_id(rows: list[_Row]) -> str:
    """``"{source}:{source_id}"`` of the most trusted source; on a tie, the first by name."""
    best = rows[0]
    for row in rows:
        if row[2] > best[2]:
            best = row
    return f"{best[0]}:{best[1].source_id}"


def _claim_losers(groups: list[list[_Row]], holders: list[int]) -> list[int]:
    """Of coins claiming one id, all but the best (lowest tier, then smallest (source, source_id))."""
    def rank(g: int) -> tuple[int, tuple[str, str]]:
        rows = groups[g]
        return _identify(rows)[1], min((r[0], r[1].source_id) for r in rows)

    return sorted(holders, key=rank)[1:]


_COIN_ID = attrgetter("coin_id")
_new = object.__new__


def _snapshots_fast(
    coins: list[_Coin | None],
    trust_of: dict[str, float],
    observed_at: datetime,
    tol: float,
    previous: Mapping[str, float] | None,
) -> list[CoinSnapshot] | None:
    """``_snapshots`` for the coins of ``_gather_fast``; None if two coins claim one id (rare), which
    ``_snapshots`` settles."""
    # Slots by trust, most trusted first and in source order on a tie: the order in which the "most
    # trusted source that has it" rules look (trust is per source, so the order is the same for every coin).
    by_trust = sorted(range(len(_SLOTS)), key=lambda k: -trust_of.get(_SLOTS[k], 0.0))
    out: list[CoinSnapshot] = []
    ids: list[str] = []
    for slots in coins:
        if slots is None:
            continue
        # Identity, as _identify finds it: rows sorted by source name put "coingecko" before
        # "coingecko-html" and "coinmarketcap" before "coinmarketcap-html".
        row = slots[0] or slots[1]
        coingecko_id = row[1].source_id if row else None
        row = slots[2] or slots[3]
        coinmarketcap_id = row[1].source_id if row else None
        best = slug = None
        for k in by_trust:
            row = slots[k]
            if row is not None:
                if best is None:
                    best = row
                s = row[1].slug
                if s:
                    s = s.strip()
                    if s:
                        slug = s
                        break
        if coingecko_id is not None:
            coin_id = coingecko_id
        elif slug is not None:
            coin_id = slug.lower()
        else:
            assert best is not None
            coin_id = f"{best[0]}:{best[1].source_id}"
        rows = list(filter(None, slots))  # the rows present, in source order
        snap = _snapshot(rows, coin_id, slug, coingecko_id, coinmarketcap_id, observed_at, tol, previous)
        ids.append(coin_id)
        if snap is not None:
            out.append(snap)
    if len(set(ids)) < len(ids):
        return None
    out.sort(key=_COIN_ID)  # one currency
    return out


# --- consensus ---------------------------------------------------------------------------------


def _snapshot(
    rows: list[_Row],
    coin_id: str,
    slug: str | None,
    coingecko_id: str | None,
    coinmarketcap_id: str | None,
    observed_at: datetime,
    tol: float,
    previous: Mapping[str, float] | None,
) -> CoinSnapshot | None:
    """The snapshot of one coin (``rows`` sorted by source name), None when all its quotes are stale."""
    n = len(rows)
    if n == 3:
        snap = _snapshot3(rows, coin_id, slug, coingecko_id, coinmarketcap_id, observed_at, tol)
        if snap is not None:
            return snap
    elif n == 2:
        snap = _snapshot2(rows, coin_id, slug, coingecko_id, coinmarketcap_id, observed_at, tol, previous)
        if snap is not None:
            return snap
    return _snapshot_general(rows, coin_id, slug, coingecko_id, coinmarketcap_id, observed_at, tol, previous)


def _snapshot_general(
    rows: list[_Row],
    coin_id: str,
    slug: str | None,
    coingecko_id: str | None,
    coinmarketcap_id: str | None,
    observed_at: datetime,
    tol: float,
    previous: Mapping[str, float] | None,
) -> CoinSnapshot | None:
    if len(rows) == 1:  # one source: its own reading, confidence = its trust
        source, q, t, w, p = rows[0]
        if w < 0.0:
            return None
        cap = q.market_cap
        volume = q.volume_24h
        return CoinSnapshot(
            coin_id, q.symbol or "", q.name or "", slug, q.rank, p, cap, volume,
            q.change_1h, q.change_24h, q.change_7d, q.circulating_supply, q.total_supply, q.max_supply,
            t, observed_at, q.currency, coingecko_id, coinmarketcap_id,
            (SourceValue(source, q.source_id, p, cap, volume, q.last_updated),),
        )

    dropped: dict[str, str] = {}
    fresh = rows
    if any(r[3] < 0 for r in rows):
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
            prev = previous.get(coin_id)
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
    # arguments make these dataclasses markedly slower to build, and this runs per quote.
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
        coin_id, symbol, name, slug, rank, price, market_cap, volume,
        change_1h, change_24h, change_7d, circulating, total, maximum,
        confidence, observed_at, top.currency, coingecko_id, coinmarketcap_id, sources,
    )


# --- consensus, usual cases --------------------------------------------------------------------
# Shortcuts for the usual coin: two or three fresh sources that agree within the tolerance. Each returns
# what ``_snapshot_general`` returns for its rows, or None to leave the coin to it; they only skip work
# (the MAD, sorting, building lists, calls) whose outcome is known.

# A weighted median of three values is the middle value when no weight reaches half the total, whatever
# the order of summation: this margin keeps the largest weight far (1e-9) from half, against a slack of
# 1e-12 and rounding of ~1e-16 in ``_weighted_median``.
_BALANCED = 0.5 * (1.0 - 1e-9)
_TINY_WEIGHT = 1e-100  # below it (or stale, or zero) the general code decides


def _snapshot3(
    rows: list[_Row],
    coin_id: str,
    slug: str | None,
    coingecko_id: str | None,
    coinmarketcap_id: str | None,
    observed_at: datetime,
    tol: float,
) -> CoinSnapshot | None:
    (sa, qa, ta, wa, pa), (sb, qb, tb, wb, pb), (sc, qc, tc, wc, pc) = rows
    if not (wa > _TINY_WEIGHT and wb > _TINY_WEIGHT and wc > _TINY_WEIGHT):
        return None
    lo = hi = pa
    if pb < lo:
        lo = pb
    elif pb > hi:
        hi = pb
    if pc < lo:
        lo = pc
    elif pc > hi:
        hi = pc
    if hi - lo > tol * lo:
        return None  # an outlier is possible
    # Ranked by weight (descending, source order on a tie): top, second, third.
    if wb > wa:
        if wc > wb:
            top, second, third, w_top = qc, qb, qa, wc
        else:
            top, second, third, w_top = (qb, qa, qc, wb) if wa >= wc else (qb, qc, qa, wb)
    elif wc > wa:
        top, second, third, w_top = qc, qa, qb, wc
    else:
        top, second, third, w_top = (qa, qb, qc, wa) if wb >= wc else (qa, qc, qb, wa)
    if w_top >= (wa + wb + wc) * _BALANCED:
        return None  # one weight may decide the medians alone
    # Ranked by trust, the same way: for rank, and t_max (trusts are > 0 here, as the weights are).
    if tb > ta:
        if tc > tb:
            x, y, z, t_max = qc, qb, qa, tc
        else:
            x, y, z, t_max = (qb, qa, qc, tb) if ta >= tc else (qb, qc, qa, tb)
    elif tc > ta:
        x, y, z, t_max = qc, qa, qb, tc
    else:
        x, y, z, t_max = (qa, qb, qc, ta) if tb >= tc else (qa, qc, qb, ta)

    spread = (hi - lo) / hi
    if spread <= tol:
        combined = 1.0 - (1.0 - ta) * (1.0 - tb) * (1.0 - tc)
        confidence = combined if tol == 0 else t_max + (combined - t_max) * (1.0 - spread / tol)
    else:
        confidence = t_max * tol / spread
    confidence = 0.0 if confidence < 0.0 else 1.0 if confidence > 1.0 else confidence

    rank = x.rank
    if rank is None:
        rank = y.rank if y.rank is not None else z.rank
    ca = qa.market_cap
    cb = qb.market_cap
    cc = qc.market_cap
    va = qa.volume_24h
    vb = qb.volume_24h
    vc = qc.volume_24h
    symbol = top.symbol or second.symbol or third.symbol or ""
    name = top.name or second.name or third.name or ""
    change_1h = top.change_1h
    if change_1h is None:
        change_1h = second.change_1h if second.change_1h is not None else third.change_1h
    change_24h = top.change_24h
    if change_24h is None:
        change_24h = second.change_24h if second.change_24h is not None else third.change_24h
    change_7d = top.change_7d
    if change_7d is None:
        change_7d = second.change_7d if second.change_7d is not None else third.change_7d
    circulating = top.circulating_supply
    if circulating is None:
        circulating = second.circulating_supply if second.circulating_supply is not None \
            else third.circulating_supply
    total = top.total_supply
    if total is None:
        total = second.total_supply if second.total_supply is not None else third.total_supply
    maximum = top.max_supply
    if maximum is None:
        maximum = second.max_supply if second.max_supply is not None else third.max_supply
    # The price median inline (three distinct prices: the middle one; see _median3)
    if pa < pb:
        price = pb if pb < pc else pa if pc < pa else pc if pa < pc < pb else _median3(pa, wa, pb, wb, pc, wc)
    elif pb < pa:
        price = pa if pa < pc else pb if pc < pb else pc if pb < pc < pa else _median3(pa, wa, pb, wb, pc, wc)
    else:
        price = _median3(pa, wa, pb, wb, pc, wc)
    # Built field by field on a bare instance: the same objects as CoinSnapshot(...) and SourceValue(...)
    # (test_reconcile checks it), without calling a class, which costs more than the rest of this function.
    new = _new
    value_a = new(SourceValue)
    value_a.source = sa
    value_a.source_id = qa.source_id
    value_a.price = pa
    value_a.market_cap = ca
    value_a.volume_24h = va
    value_a.last_updated = qa.last_updated
    value_a.used = True
    value_a.dropped_reason = None
    value_b = new(SourceValue)
    value_b.source = sb
    value_b.source_id = qb.source_id
    value_b.price = pb
    value_b.market_cap = cb
    value_b.volume_24h = vb
    value_b.last_updated = qb.last_updated
    value_b.used = True
    value_b.dropped_reason = None
    value_c = new(SourceValue)
    value_c.source = sc
    value_c.source_id = qc.source_id
    value_c.price = pc
    value_c.market_cap = cc
    value_c.volume_24h = vc
    value_c.last_updated = qc.last_updated
    value_c.used = True
    value_c.dropped_reason = None
    snap = new(CoinSnapshot)
    snap.coin_id = coin_id
    snap.symbol = symbol
    snap.name = name
    snap.slug = slug
    snap.rank = rank
    snap.price = price
    snap.market_cap = _median3(ca, wa, cb, wb, cc, wc)
    snap.volume_24h = _median3(va, wa, vb, wb, vc, wc)
    snap.change_1h = change_1h
    snap.change_24h = change_24h
    snap.change_7d = change_7d
    snap.circulating_supply = circulating
    snap.total_supply = total
    snap.max_supply = maximum
    snap.confidence = confidence
    snap.observed_at = observed_at
    snap.currency = top.currency
    snap.coingecko_id = coingecko_id
    snap.coinmarketcap_id = coinmarketcap_id
    snap.sources = (value_a, value_b, value_c)
    return snap


def _snapshot2(
    rows: list[_Row],
    coin_id: str,
    slug: str | None,
    coingecko_id: str | None,
    coinmarketcap_id: str | None,
    observed_at: datetime,
    tol: float,
    previous: Mapping[str, float] | None,
) -> CoinSnapshot | None:
    (sa, qa, ta, wa, pa), (sb, qb, tb, wb, pb) = rows
    if not (wa >= 0.0 and wb >= 0.0):
        return None  # a stale quote
    lo, hi = (pa, pb) if pb > pa else (pb, pa)
    spread = (hi - lo) / hi
    if spread > tol and previous:
        return None  # the previous price may settle the disagreement
    t_max = 0.0
    if ta > t_max:
        t_max = ta
    if tb > t_max:
        t_max = tb
    if spread <= tol:
        combined = 1.0 - (1.0 - ta) * (1.0 - tb)
        confidence = combined if tol == 0 else t_max + (combined - t_max) * (1.0 - spread / tol)
    else:
        confidence = t_max * tol / spread
    confidence = 0.0 if confidence < 0.0 else 1.0 if confidence > 1.0 else confidence

    top, second = (qa, qb) if wa >= wb else (qb, qa)
    ca = qa.market_cap
    cb = qb.market_cap
    va = qa.volume_24h
    vb = qb.volume_24h
    if tb > ta:
        rank = qb.rank if qb.rank is not None else qa.rank
    else:
        rank = qa.rank if qa.rank is not None else qb.rank
    change_1h = top.change_1h
    if change_1h is None:
        change_1h = second.change_1h
    change_24h = top.change_24h
    if change_24h is None:
        change_24h = second.change_24h
    change_7d = top.change_7d
    if change_7d is None:
        change_7d = second.change_7d
    circulating = top.circulating_supply
    if circulating is None:
        circulating = second.circulating_supply
    total = top.total_supply
    if total is None:
        total = second.total_supply
    maximum = top.max_supply
    if maximum is None:
        maximum = second.max_supply
    return CoinSnapshot(
        coin_id, top.symbol or second.symbol or "", top.name or second.name or "", slug, rank,
        _median2(pa, wa, pb, wb),
        ca if cb is None else cb if ca is None else _median2(ca, wa, cb, wb),
        va if vb is None else vb if va is None else _median2(va, wa, vb, wb),
        change_1h, change_24h, change_7d, circulating, total, maximum,
        confidence, observed_at, top.currency, coingecko_id, coinmarketcap_id,
        (SourceValue(sa, qa.source_id, pa, ca, va, qa.last_updated),
         SourceValue(sb, qb.source_id, pb, cb, vb, qb.last_updated)),
    )


@overload
def _median3(a: float, wa: float, b: float, wb: float, c: float, wc: float) -> float: ...
@overload
def _median3(a: float | None, wa: float, b: float | None, wb: float, c: float | None, wc: float) -> float | None: ...
def _median3(a: float | None, wa: float, b: float | None, wb: float, c: float | None, wc: float) -> float | None:
    """``_weighted_median`` of the values that are not None, for balanced weights (see ``_BALANCED``)."""
    if a is None:
        if b is None:
            return c
        return b if c is None else _median2(b, wb, c, wc)
    if b is None:
        return a if c is None else _median2(a, wa, c, wc)
    if c is None:
        return _median2(a, wa, b, wb)
    # Distinct values: the middle one. A tie or a NaN: the general walk (ties are ordered by weight).
    if a < b:
        if b < c:
            return b
        if c < a:
            return a
        if a < c < b:
            return c
    elif b < a:
        if a < c:
            return a
        if c < b:
            return b
        if b < c < a:
            return c
    return _weighted_median([(a, wa), (b, wb), (c, wc)])


def _median2(a: float, wa: float, b: float, wb: float) -> float:
    """``_weighted_median`` of two values (a, b in source order): the heavier one, or the midpoint."""
    if a == b:
        return a
    if a > b:
        a, wa, b, wb = b, wb, a, wa
    if (wa > 0 or wb > 0) and abs(wa - wb) > (wa + wb) * 2e-12:
        return a if wa > wb else b
    return _midpoint(a, b)


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
        return _median2(a, wa, b, wb)
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
