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

Consensus, per coin (rule ``INTERVAL``, the default)
    * A quote older than ``max_staleness`` by the age of its price (``last_updated``, else
      ``collected_at``; never the age of the HTTP answer) is kept in ``sources`` with ``used=False,
      dropped_reason="stale"``. The others are fresh; weight = trust x freshness, freshness =
      ``max(0.05, 1 - age / max_staleness)`` (1 for a future time).
    * 3+ fresh quotes: center c = the weighted median of their prices; weighted MAD = the weighted median
      (same weights) of |p - c|; limit L = ``max(3.5 * 1.4826 * MAD, disagreement_tolerance * c)``.
      A quote with |p - c| > L is an outlier ("outlier"). Hysteresis: a source in
      ``memory.excluded[coin_id]`` (an outlier of the previous cycle, see ``remember``) stays an outlier
      until |p - c| <= L / 2. (No test runs, L = infinity, when max - min <= tol x min and no source is
      held: no price could fail it.) price = c. Robustness: c is a weighted median of every fresh price, so manipulated
      quotes holding less than half the fresh weight cannot take it outside the honest quotes' range,
      whatever their size; the outlier rule only decides which quotes make the interval.
    * 2 fresh quotes farther apart than the tolerance ((max - min) > tol * max): if ``previous[coin_id]``
      is known and the coin is not in ``memory.unverified`` (an unverified price settles nothing), the
      price farther from it is dropped ("disagreement") and price = the other; else (or on a tie) both
      are used, price = their weighted median, and ``unverified=True``.
    * Otherwise (1 quote, or 2 that agree): price = the weighted median of the fresh prices.
    * Weighted median: the value at which the cumulative weight (ascending values, ties in source order)
      first reaches half the total; exactly half (within a relative 1e-12): the midpoint of that value and
      the next one with a weight (see ``consensus.weighted_median``); all weights 0: the plain median.
    * market_cap, volume_24h: weighted median over the used quotes that have the field. A NaN market_cap
      or volume_24h is no value (None in ``sources``). name, symbol, changes, supplies: from the
      highest-weight used quote that has them; rank and slug: from the most trusted (used, for rank)
      quote that has them; ties go to the first by source name.
    * ``price_at``: the newest price time (``last_updated``, else ``collected_at``) of the used quotes,
      taken as UTC when naive, ``observed_at`` when that time is in the future.

Interval (``price_low``, ``price_high``): a nominal 95 % interval around the price
    It reads every fresh quote (used or dropped, so that dropping one never narrows it), with weights w_i
    (all 0: equal weights), in source order:
    * own = the weighted mean of the quotes' own 95 % half-widths u_i at the consensus price
      (``precision.half_width``: the source's declared noise, the drift of a price of the quote's age
      plus the source's latency, the rounding of a page);
    * D = the weighted mean of |p_i - price|, each clipped to the outlier limit L (L = infinity when no
      outlier test ran), x n / (n - 1) for n fresh quotes (0 for one): the sources' disagreement;
    * spread = 1.96 x sqrt(pi / 2) x 1.2533 x D (the mean absolute deviation as a standard deviation,
      as the error of a median);
    * margin = sqrt((own^2 + spread^2) / m), m = the number of independent sources (distinct id
      namespaces) among the fresh quotes: agreeing independent sources narrow it.
    price_low = price - margin, price_high = price + margin; an unverified pair's interval is widened to
    hold both prices. (Percentiles of Pyth-style votes were tried: their width either ignores the number
    of sources or shrinks as sources drift apart; this one grows with every disagreement.)

Confidence, in [0, 1]
    confidence = (1 - 2^-n) x tol / (tol + w) (``consensus.confidence_of``), where n = the number of
    independent sources among the used quotes (distinct id namespaces: an API and the same site's pages
    are one), tol = ``disagreement_tolerance`` and w = (price_high - price_low) / price. One source alone
    is worth at most 1/2, two 3/4, three 7/8; an interval as wide as the tolerance halves it; more
    disagreement (the quotes spread further around the price) never raises it. tol = 0: (1 - 2^-n) when
    w = 0, else 0.

Rule ``BASELINE`` (``reconcile.baseline``, kept to compare with): the MAD rule around the plain median of
the fresh prices with the tolerance floor, the 2-candidate disagreement settled by the previous price
(no ``unverified``), price = weighted median of the used quotes, no interval, no ``price_at``, and
confidence from trust: t (one candidate); t_max + (combined - t_max) x (1 - spread / tol) within the
tolerance, combined = 1 - prod(1 - t_i); t_max x tol / spread beyond it; x |candidates| / |fresh| when
outliers were dropped.

A coin whose quotes are all stale yields no snapshot. Quote ages are measured against
``observed_at``; naive datetimes are taken as UTC. Trust missing from a mapping is 0.5; a NaN trust is 0.
Where the order of float operations matters, it is the sources' name order (the total weight of a
median, the baseline's product of trusts).

Modules: ``identity`` (keys, grouping, coin ids), ``consensus`` (one coin's values, interval and
confidence), ``precision`` (each source's uncertainty), ``memory`` (the state one cycle leaves the next),
``baseline`` (the former rule), ``rows`` (what is kept of each quote).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Literal

from cryptoviz.gcpause import paused_gc
from cryptoviz.models import CoinSnapshot, SourceQuote
from cryptoviz.reconcile.baseline import baseline_snapshot
from cryptoviz.reconcile.consensus import SourceFact, SourceFacts, coin_snapshot, confidence_of
from cryptoviz.reconcile.identity import (
    NamespaceOf,
    coin_ids,
    default_namespaces,
    group,
    identity_keys,
    namespace_lookup,
    normalise_name,
)
from cryptoviz.reconcile.memory import DISAGREEMENT, EMPTY, OUTLIER, ConsensusMemory, remember
from cryptoviz.reconcile.precision import DEFAULT_PRECISION, Precision, half_width, precision_of
from cryptoviz.reconcile.rows import Trust, trust_lookup
from cryptoviz.sources.spec import IdNamespace
from cryptoviz.validate import STALE, timestamp

DROPPED_REASONS = (STALE, OUTLIER, DISAGREEMENT)

Rule = Literal["interval", "baseline"]
INTERVAL: Rule = "interval"  # the rule documented above
BASELINE: Rule = "baseline"  # the rule before intervals (see reconcile.baseline)
RULES = (INTERVAL, BASELINE)

__all__ = ["BASELINE", "DEFAULT_PRECISION", "DISAGREEMENT", "DROPPED_REASONS", "INTERVAL", "OUTLIER", "RULES",
           "ConsensusMemory", "Precision", "Trust", "confidence_of", "half_width", "identity_keys",
           "normalise_name", "reconcile", "remember"]

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
    memory: ConsensusMemory | None = None,
    precision: Mapping[str, Precision] | None = None,
    rule: Rule = INTERVAL,
) -> list[CoinSnapshot]:
    """One ``CoinSnapshot`` per coin, sorted by (coin_id, currency) (see the package docstring for the rules).

    ``trust``: source name -> weight in [0, 1] (mapping or callable); ``max_staleness`` in seconds;
    ``previous``: coin_id -> previous consensus price, used to settle a two-source disagreement;
    ``namespaces``: source name -> its id namespace (None: the source registry's);
    ``memory``: ``remember(snapshots)`` of the previous cycle (the hysteresis' state; None: nothing
    remembered); ``precision``: source -> its declared precision (None: ``DEFAULT_PRECISION``); ``rule``:
    ``INTERVAL`` or ``BASELINE`` (which ignores ``memory`` and ``precision``).
    Quotes without a positive finite price are skipped (validation rejects them earlier).
    The cyclic garbage collector is paused while it runs: it creates a few acyclic objects per quote,
    which the collector would walk again and again for nothing.
    """
    if not max_staleness > 0:
        raise ValueError(f"max_staleness must be > 0 seconds, got {max_staleness!r}")
    if not disagreement_tolerance >= 0:
        raise ValueError(f"disagreement_tolerance must be >= 0, got {disagreement_tolerance!r}")
    if rule not in RULES:
        raise ValueError(f"unknown reconciliation rule {rule!r}; known: {', '.join(RULES)}")
    namespace_of = namespace_lookup(default_namespaces() if namespaces is None else namespaces)
    with paused_gc():
        return _reconcile(quotes, observed_at, trust_lookup(trust), namespace_of, max_staleness,
                          disagreement_tolerance, previous, memory or EMPTY, precision, rule)


def _facts(namespace_of: NamespaceOf, table: Mapping[str, Precision] | None, observed_ts: float) -> SourceFacts:
    """The sources' precision and independent group, looked up once per source and call."""
    known: dict[str, SourceFact] = {}

    def learn(source: str) -> SourceFact:
        precision = precision_of(source, table)
        fact = known[source] = (precision.noise * precision.noise, precision.latency, precision.rounded,
                                namespace_of(source).name)
        return fact

    return SourceFacts(known, learn, observed_ts)


def _reconcile(
    quotes: Sequence[SourceQuote],
    observed_at: datetime,
    trust_of: Callable[[str], float],
    namespace_of: NamespaceOf,
    max_staleness: float,
    tol: float,
    previous: Mapping[str, float] | None,
    memory: ConsensusMemory,
    precision: Mapping[str, Precision] | None,
    rule: Rule,
) -> list[CoinSnapshot]:
    # A function of its own: what it builds on the way is freed before the collector runs again.
    observed_ts = timestamp(observed_at)
    coins = group(quotes, observed_ts, trust_of, namespace_of, max_staleness)
    ids, twins = coin_ids(coins, namespace_of)
    if rule == BASELINE:
        snapshots = [
            snapshot for rows, coin in zip(coins, ids, strict=True)
            if (snapshot := baseline_snapshot(rows, coin, observed_at, tol, previous)) is not None
        ]
    else:
        facts = _facts(namespace_of, precision, observed_ts)
        snapshots = [
            snapshot for rows, coin in zip(coins, ids, strict=True)
            if (snapshot := coin_snapshot(rows, coin, observed_at, tol, previous, memory, facts)) is not None
        ]
    # Coins sharing an id (see coin_ids) come out in the order of their sources.
    snapshots.sort(key=_twin_order if twins else _ORDER)
    return snapshots


def _twin_order(s: CoinSnapshot) -> tuple[str, str, str, str]:
    return s.coin_id, s.currency, s.sources[0].source, s.sources[0].source_id
