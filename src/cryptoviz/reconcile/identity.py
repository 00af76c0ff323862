"""Which quotes are one coin, and the id it is stored under (the rules: see the package docstring).

Grouping is a union-find over the quotes, joined through their keys. One pass joins everything that
shares a key and notes, per coin, the sources it holds; a coin that holds no source twice needs nothing
more (no key of it is ambiguous, nothing chained two quotes of one source, no quote is repeated). The
others, rare, are rebuilt by the careful rules in ``_rebuild``: every key of their quotes was held only by
quotes of the same coin, so each can be rebuilt on its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

from cryptoviz.models import SourceQuote
from cryptoviz.reconcile.rows import MIN_FRESHNESS, STALE_WEIGHT, Row
from cryptoviz.sources.spec import IdNamespace
from cryptoviz.validate import timestamp

Key = tuple[str, ...]
NamespaceOf = Callable[[str], IdNamespace]

# Key classes, strongest first: the order in which ``_rebuild`` applies them.
ID, SLUG, NAME_SYMBOL = "id", "slug", "ns"
_CLASSES = (ID, SLUG, NAME_SYMBOL)
# The CoinSnapshot fields that keep a namespace's id (IdNamespace.column).
ID_COLUMNS = ("coingecko_id", "coinmarketcap_id")

_NON_ALNUM = re.compile(r"[\W_]+")
# (name, symbol) as reported -> the name+symbol key as one string (see _name_key). Kept across calls: the
# same coins come back every cycle.
_NAME_KEYS: dict[tuple[str, str], str | None] = {}
_NAME_KEYS_LIMIT = 1 << 16
_ALIAS: list[Row] = []  # the rows of a node that only stands for another coin (never a root: stays empty)


@lru_cache(maxsize=1 << 16)
def normalise_name(name: str) -> str:
    """Casefolded, without spaces or punctuation: "Wrapped Bitcoin (WBTC)" -> "wrappedbitcoinwbtc"."""
    return _NON_ALNUM.sub("", name.casefold())


def default_namespaces() -> Mapping[str, IdNamespace]:
    """The namespaces of the known sources (imported here: the registry imports every source module)."""
    from cryptoviz.sources import registry

    return registry.namespaces()


def namespace_lookup(namespaces: Mapping[str, IdNamespace]) -> NamespaceOf:
    """Source -> its namespace; a source missing from ``namespaces`` has one of its own, named after it."""
    def namespace_of(source: str) -> IdNamespace:
        found = namespaces.get(source)
        return found if found is not None else IdNamespace(source)

    return namespace_of


def identity_keys(quote: SourceQuote, namespaces: Mapping[str, IdNamespace] | None = None) -> list[Key]:
    """The keys that may join ``quote`` to quotes of other sources (first element: the key class).

    ``namespaces``: source -> id namespace, the registry's when None.
    """
    if namespaces is None:
        namespaces = default_namespaces()
    return _keys(quote, namespace_lookup(namespaces)(quote.source))


def _keys(quote: SourceQuote, namespace: IdNamespace) -> list[Key]:
    cur = quote.currency
    sid, own, slug, name_symbol = _key_values(quote, namespace.ids_are_slugs)
    keys: list[Key] = [(ID, cur, namespace.name, sid)]
    keys += [(SLUG, cur, s) for s in (own, slug) if s is not None]
    if name_symbol is not None:
        name, _, symbol = name_symbol.partition("\x00")
        keys.append((NAME_SYMBOL, cur, name, symbol))
    return keys


def _key_values(quote: SourceQuote, ids_are_slugs: bool) -> tuple[str, str | None, str | None, str | None]:
    """(id, id as a slug, slug, name+symbol) of a quote, None for a key it does not have.

    The id is a key even when empty: it is what makes two quotes of one (source, id) meet.
    """
    sid = quote.source_id
    own = sid.lower() if ids_are_slugs and sid else None
    slug = quote.slug
    if slug:
        slug = slug.strip().lower()
    if not slug or slug == own:
        slug = None
    raw = (quote.name, quote.symbol)
    name_symbol = _NAME_KEYS.get(raw, "")
    if name_symbol == "":
        if len(_NAME_KEYS) >= _NAME_KEYS_LIMIT:
            _NAME_KEYS.clear()
        name_symbol = _NAME_KEYS[raw] = _name_key(*raw)
    return sid, own, slug, name_symbol


def _name_key(name: str, symbol: str) -> str | None:
    """"normalised name NUL upper symbol" (a normalised name holds no NUL), None when a part is empty."""
    name = normalise_name(name)
    symbol = symbol.strip().upper()
    return f"{name}\x00{symbol}" if name and symbol else None


# --- grouping --------------------------------------------------------------------------------------


class _Tables(NamedTuple):
    """The keys of one vs currency (keys of two currencies never meet): key -> the quote that first held it."""

    ids: dict[str, dict[str, int]]  # per namespace
    slugs: dict[str, int]
    names: dict[str, int]
    sources: dict[str, tuple[float, int, dict[str, int], bool]]  # (trust, bit, ids of its namespace, ids_are_slugs)


def group(
    quotes: Sequence[SourceQuote],
    observed_ts: float,
    trust_of: Callable[[str], float],
    namespace_of: NamespaceOf,
    max_staleness: float,
) -> list[list[Row]]:
    """The rows (see ``rows.Row``) of each coin, sorted by source name, in no particular order of coins.
    Quotes without a positive finite price are skipped."""
    parent: list[int] = []  # per quote; a root stands for its coin
    rows_of: list[list[Row]] = []  # per root: the coin's rows
    sources_of: list[int] = []  # per root: the coin's sources, one bit each
    bits: dict[str, int] = {}
    by_currency: dict[str, _Tables] = {}
    currency: str | None = None  # the first quote sets the tables below
    tables = _Tables({}, {}, {}, {})
    slugs = names = tables.slugs
    inf = math.inf
    # Memory order: a quote, its strings, floats and datetimes are read several times over; in a shuffled
    # order nearly every read is a cache miss. Quotes in the order they were built are already sorted.
    for q in sorted(quotes, key=id):
        p = q.price
        if p is None or not 0.0 < p < inf:
            continue
        if q.currency != currency:
            currency = q.currency
            tables = by_currency.get(currency) or by_currency.setdefault(currency, _Tables({}, {}, {}, {}))
            slugs = tables.slugs
            names = tables.names
        source = q.source
        info = tables.sources.get(source)
        if info is None:
            namespace = namespace_of(source)
            id_table = tables.ids.setdefault(namespace.name, {})
            bit = bits.setdefault(source, 1 << len(bits))
            info = tables.sources[source] = (trust_of(source), bit, id_table, namespace.ids_are_slugs)
        t, bit, id_table, ids_are_slugs = info

        when = q.last_updated
        if when is None:
            when = q.collected_at
        ts = when.timestamp() if when.tzinfo is not None else timestamp(when)
        age = observed_ts - ts
        if age > max_staleness:
            w = STALE_WEIGHT
        elif age <= 0.0:
            w = t
        else:
            freshness = 1.0 - age / max_staleness
            w = t * (freshness if freshness > MIN_FRESHNESS else MIN_FRESHNESS)

        # The coin of the first key already held, merged with the coins of the others; a new coin if none.
        # A key seen first points at that coin; before one is found, at `new`: the new coin, or an alias of
        # the coin found later. Keys most quotes share come first, so that aliases are few.
        new = len(parent)
        c = -1
        alias = False
        sid, own, slug, name_symbol = _key_values(q, ids_are_slugs)
        for table, key in ((names, name_symbol), (slugs, slug), (slugs, own),
                           # quotes sharing an id that is a slug share that slug key too: one key joins them
                           (id_table, sid if own is None else None)):
            if key is None:
                continue
            x = table.setdefault(key, new if c < 0 else c)
            if x == new:
                alias = True
                continue
            if x == c:
                continue
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            if c < 0:
                c = x
            elif x != c:
                c = _merge(c, x, parent, rows_of, sources_of)
        cap = q.market_cap
        volume = q.volume_24h
        row = (source, q, t, w, p, cap if cap == cap else None, volume if volume == volume else None, sid,
               q.last_updated, ts)
        if c < 0:
            parent.append(new)
            rows_of.append([row])
            sources_of.append(bit)
        else:
            rows_of[c].append(row)
            sources_of[c] |= bit
            if alias:
                parent.append(c)
                rows_of.append(_ALIAS)
                sources_of.append(0)

    coins: list[list[Row]] = []
    for c, rows in enumerate(rows_of):
        if parent[c] != c:
            continue
        if len(rows) == sources_of[c].bit_count():
            rows.sort()  # distinct sources: by source name
            coins.append(rows)
        else:
            coins += _rebuild(rows, namespace_of)
    return coins


def _merge(a: int, b: int, parent: list[int], rows_of: list[list[Row]], sources_of: list[int]) -> int:
    """Join coins ``a`` and ``b`` (roots) into the older one."""
    if b < a:
        a, b = b, a
    rows_of[a] += rows_of[b]
    sources_of[a] |= sources_of[b]
    parent[b] = a
    return a


def _rebuild(rows: list[Row], namespace_of: NamespaceOf) -> list[list[Row]]:
    """The coins of a group that joined two quotes of one source, by the careful rules.

    The newest quote of each (source, source_id) is kept. A key held by two of them of one source is
    ambiguous and not used. Then the key classes are applied strongest first, quotes in (source,
    source_id) order and each key's holders in that order, refusing any join that would put two quotes
    of one source in one coin: so the result does not depend on the input order.
    """
    newest: dict[tuple[str, str], Row] = {}
    for row in rows:
        at = (row[0], row[1].source_id)
        kept = newest.get(at)
        if kept is None or _recency(row) > _recency(kept):
            newest[at] = row
    members = [newest[at] for at in sorted(newest)]
    holders: dict[Key, list[int]] = {}
    for i, row in enumerate(members):
        for key in _keys(row[1], namespace_of(row[0])):
            holders.setdefault(key, []).append(i)
    parent = list(range(len(members)))
    sources = [{row[0]} for row in members]  # per root

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for key_class in _CLASSES:
        for key, held in holders.items():
            if key[0] != key_class or len({members[i][0] for i in held}) < len(held):
                continue
            for i in held[1:]:
                a, b = find(held[0]), find(i)
                if a != b and sources[a].isdisjoint(sources[b]):
                    parent[b] = a
                    sources[a] |= sources[b]
    parts: dict[int, list[Row]] = {}
    for i, row in enumerate(members):
        parts.setdefault(find(i), []).append(row)
    return list(parts.values())


def _recency(row: Row) -> tuple[float, str]:
    """Orders two quotes of one (source, source_id): the newer; at the same time, an arbitrary but fixed
    choice (the larger repr, which shows every field)."""
    return row[9], repr(row[1])


# --- coin ids --------------------------------------------------------------------------------------


# (coin_id, slug, coingecko_id, coinmarketcap_id)
CoinId = tuple[str, str | None, str | None, str | None]

_BY_ID, _BY_SLUG, _BY_SOURCE_ID = 0, 1, 2  # how a coin_id was found, strongest first
_NOT_TAKEN = 1 << 62  # the preference of a source whose id is not taken (see _preferences)


def coin_ids(coins: list[list[Row]], namespace_of: NamespaceOf) -> tuple[list[CoinId], bool]:
    """The id of each coin, and whether two coins of one currency still share one (``"{source}:{id}"`` can
    equal another coin's id).

    Should coins of one currency claim one id, the one holding it by the stronger rule keeps it (same
    rule: the one whose smallest (source, source_id) sorts first); the others take their fallback id.
    """
    preference = _preferences({row[0] for rows in coins for row in rows}, namespace_of)
    ids = [_identify(rows, preference) for rows in coins]
    first: dict[str, int] = {}
    contested: dict[str, list[int]] = {}
    for g, found in enumerate(ids):
        held = first.setdefault(found[0], g)
        if held != g:
            contested.setdefault(found[0], [held]).append(g)
    for holders in contested.values():
        by_currency: dict[str, list[int]] = {}
        for g in holders:
            by_currency.setdefault(coins[g][0][1].currency, []).append(g)
        for claims in by_currency.values():
            claims.sort(key=lambda g: _claim(coins[g], ids[g], preference))
            for g in claims[1:]:
                _lost, slug, coingecko_id, coinmarketcap_id = ids[g]
                ids[g] = (_fallback_id(coins[g]), slug, coingecko_id, coinmarketcap_id)
    twins = bool(contested) and len({(rows[0][1].currency, found[0]) for rows, found in zip(coins, ids, strict=True)
                                     }) < len(ids)
    return ids, twins


def _preferences(sources: set[str], namespace_of: NamespaceOf) -> dict[str, tuple[int, int, int]]:
    """Source -> its preference as the source of the coin_id, of coingecko_id, of coinmarketcap_id: lower
    is preferred, ``_NOT_TAKEN`` for an id it does not give.

    By namespace name, within a namespace the source named like it first, then by source name
    ("coingecko" before "coingecko-html").
    """
    spaces = {source: namespace_of(source) for source in sources}
    order = sorted(sources, key=lambda s: (spaces[s].name, s != spaces[s].name, s))
    cg_column, cmc_column = ID_COLUMNS
    return {
        source: (rank if spaces[source].canonical else _NOT_TAKEN,
                 rank if spaces[source].column == cg_column else _NOT_TAKEN,
                 rank if spaces[source].column == cmc_column else _NOT_TAKEN)
        for rank, source in enumerate(order)
    }


def _identify(rows: list[Row], preference: dict[str, tuple[int, int, int]]) -> CoinId:
    """The ids of one coin, ``rows`` sorted by source name."""
    coin_id = coingecko_id = coinmarketcap_id = slug = None
    best = best_cg = best_cmc = _NOT_TAKEN
    slug_trust = -1.0
    for row in rows:
        q = row[1]
        for_coin, for_cg, for_cmc = preference[row[0]]
        if for_coin < best:
            best = for_coin
            coin_id = q.source_id
        if for_cg < best_cg:
            best_cg = for_cg
            coingecko_id = q.source_id
        if for_cmc < best_cmc:
            best_cmc = for_cmc
            coinmarketcap_id = q.source_id
        s = q.slug
        if s and row[2] > slug_trust and (s := s.strip()):
            slug = s
            slug_trust = row[2]
    if coin_id is None:
        coin_id = _fallback_id(rows) if slug is None else slug.lower()
    return coin_id, slug, coingecko_id, coinmarketcap_id


def _claim(rows: list[Row], ids: CoinId, preference: dict[str, tuple[int, int, int]]) -> tuple[int, str, str]:
    """The strength of a coin's claim to its id, strongest first: how it was found, then the smallest
    (source, source_id) of the coin."""
    if any(preference[row[0]][0] != _NOT_TAKEN for row in rows):
        how = _BY_ID
    else:
        how = _BY_SOURCE_ID if ids[1] is None else _BY_SLUG
    return how, *min((row[0], row[1].source_id) for row in rows)


def _fallback_id(rows: list[Row]) -> str:
    """``"{source}:{source_id}"`` of the most trusted source; on a tie, the first by name."""
    best = rows[0]
    for row in rows:
        if row[2] > best[2]:
            best = row
    return f"{best[0]}:{best[1].source_id}"
