"""Reconciliation: group one coin's quotes across sources and agree on one value with a confidence.

Pure and deterministic: the output does not depend on the order of the input quotes.

Identity
    Every source reports its coins under ids of an id namespace (``IdNamespace``, from the source
    registry unless given): the sources of one namespace (an API and the same site's pages) share ids.
    A source missing from the namespaces has one of its own, named after it. Quotes are joined by
    union-find over keys, never by symbol alone:
    1. id: the source id, within its namespace;
    2. slug, lower-cased: the quote's slug, and its id when the namespace's ids are slugs
       (``ids_are_slugs``: a CoinGecko id equals CoinMarketCap's slug for most coins);
    3. normalised name (casefolded, spaces and punctuation removed) + upper-cased symbol (a source
       without slugs, like coinpaprika, joins the others by this key alone).
    An empty slug, name or symbol makes no key. Two quotes of the same source are never one coin: a
    key shared by two quotes of one source is ambiguous and not used, and a chain of keys that would
    still join two quotes of one source is undone (the coin is rebuilt key class by key class, in a
    fixed order, refusing such joins; see ``identity._rebuild``).
    Keys include the vs currency, so quotes in different currencies are never joined.
    When one source reports the same source id twice, the newest quote is kept (at the same time: an
    arbitrary but fixed one, see ``identity._recency``).

    coin_id = the id from a canonical namespace (``canonical``) when one reports the coin, else the slug
    (lower-cased, of the most trusted source that has one), else ``"{source}:{source_id}"`` of the most
    trusted source (ties: the first by source name). An id is taken from the namespaces in name order
    and, within one, from the source named like it first, then by source name ("coingecko" before
    "coingecko-html"); ``coingecko_id`` and ``coinmarketcap_id`` come the same way from the namespaces
    whose ``column`` names them. Should two coins of one currency claim the same id, the one holding it
    by the higher rule keeps it (same rule: the one whose smallest (source, source_id) sorts first) and
    the others fall back to ``"{source}:{source_id}"``.

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
      trust x freshness, freshness = ``max(0.05, 1 - age / max_staleness)`` (1 for a future time). When
      the cumulative weight hits exactly half, the midpoint of the two middle values is taken (see
      ``consensus.weighted_median``). A NaN market_cap or volume_24h is no value (None in ``sources``).
    * name, symbol, changes, supplies: from the highest-weight used quote that has them; rank and
      slug: from the most trusted (used, for rank) quote that has them; ties go to the first by source
      name.

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
``observed_at``; naive datetimes are taken as UTC. Trust missing from a mapping is 0.5; a NaN trust is 0.
Where the order of float operations matters, it is the sources' name order (the product above, the
total weight of a median).

Modules: ``identity`` (keys, grouping, coin ids), ``consensus`` (one coin's values and confidence),
``rows`` (what is kept of each quote).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from operator import attrgetter

from cryptoviz.gcpause import paused_gc
from cryptoviz.models import CoinSnapshot, SourceQuote
from cryptoviz.reconcile.consensus import DISAGREEMENT, OUTLIER, coin_snapshot
from cryptoviz.reconcile.identity import (
    NamespaceOf,
    coin_ids,
    default_namespaces,
    group,
    identity_keys,
    namespace_lookup,
    normalise_name,
)
from cryptoviz.reconcile.rows import Trust, trust_lookup
from cryptoviz.sources.spec import IdNamespace
from cryptoviz.validate import STALE, timestamp

DROPPED_REASONS = (STALE, OUTLIER, DISAGREEMENT)

__all__ = ["DISAGREEMENT", "DROPPED_REASONS", "OUTLIER", "Trust", "identity_keys", "normalise_name", "reconcile"]

_ORDER = attrgetter("coin_id", "currency")


def reconcile(
    quotes: Sequence[SourceQuote],
    *,
    observed_at: datetime,
    trust: Trust,
    max_staleness: float,
    disagreement_tolerance: float = 0.05,
    previous: Mapping[str, float] | None = None,
    namespaces: Mapping[str, IdNamespace] | None = None,
) -> list[CoinSnapshot]:
    """One ``CoinSnapshot`` per coin, sorted by (coin_id, currency) (see the package docstring for the rules).

    ``trust``: source name -> weight in [0, 1] (mapping or callable); ``max_staleness`` in seconds;
    ``previous``: coin_id -> previous consensus price, used to settle a two-source disagreement;
    ``namespaces``: source name -> its id namespace (None: the source registry's).
    Quotes without a positive finite price are skipped (validation rejects them earlier).
    The cyclic garbage collector is paused while it runs: it creates a few acyclic objects per quote,
    which the collector would walk again and again for nothing.
    """
    if not max_staleness > 0:
        raise ValueError(f"max_staleness must be > 0 seconds, got {max_staleness!r}")
    if not disagreement_tolerance >= 0:
        raise ValueError(f"disagreement_tolerance must be >= 0, got {disagreement_tolerance!r}")
    namespace_of = namespace_lookup(default_namespaces() if namespaces is None else namespaces)
    with paused_gc():
        return _reconcile(quotes, observed_at, trust_lookup(trust), namespace_of, max_staleness,
                          disagreement_tolerance, previous)


def _reconcile(
    quotes: Sequence[SourceQuote],
    observed_at: datetime,
    trust_of: Callable[[str], float],
    namespace_of: NamespaceOf,
    max_staleness: float,
    tol: float,
    previous: Mapping[str, float] | None,
) -> list[CoinSnapshot]:
    # A function of its own: what it builds on the way is freed before the collector runs again.
    coins = group(quotes, timestamp(observed_at), trust_of, namespace_of, max_staleness)
    ids, twins = coin_ids(coins, namespace_of)
    snapshots = [
        snapshot for rows, coin in zip(coins, ids, strict=True)
        if (snapshot := coin_snapshot(rows, coin, observed_at, tol, previous)) is not None
    ]
    # Coins sharing an id (see coin_ids) come out in the order of their sources.
    snapshots.sort(key=_twin_order if twins else _ORDER)
    return snapshots


def _twin_order(s: CoinSnapshot) -> tuple[str, str, str, str]:
    return s.coin_id, s.currency, s.sources[0].source, s.sources[0].source_id
