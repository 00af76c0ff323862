"""The baseline rule: today's consensus as it was before price intervals (weighted median of the prices
left after the MAD outlier rule, trust-based confidence; see ``BASELINE`` in the package docstring).

Kept callable (``reconcile(..., rule=BASELINE)``) so that the ground-truth benchmark measures both rules in
one run. Its snapshots have no interval (``price_low``/``price_high`` None) and are never ``unverified``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from cryptoviz.models import CoinSnapshot, SourceValue
from cryptoviz.reconcile.consensus import (
    _BY_MARKET_CAP,
    _BY_PRICE,
    _BY_VOLUME,
    _MARKET_CAP,
    _PRICE,
    _TAKEN,
    _TRUST,
    _VOLUME,
    MAD_CUTOFF,
    MAD_SCALE,
    _field_median,
    _from_heavier,
    _median,
    _settle,
    weighted_median,
)
from cryptoviz.reconcile.identity import CoinId
from cryptoviz.reconcile.memory import OUTLIER
from cryptoviz.reconcile.rows import Row
from cryptoviz.validate import STALE


def baseline_snapshot(
    rows: list[Row],
    ids: CoinId,
    observed_at: datetime,
    tol: float,
    previous: Mapping[str, float] | None,
) -> CoinSnapshot | None:
    """The snapshot of one coin (``rows`` sorted by source name), None when all its quotes are stale."""
    coin_id, slug, coingecko_id, coinmarketcap_id = ids
    dropped: dict[str, str] = {}
    fresh = rows
    for row in rows:
        if row[3] < 0.0:
            fresh = [r for r in rows if r[3] >= 0.0]
            if not fresh:
                return None
            dropped = dict.fromkeys([r[0] for r in rows if r[3] < 0.0], STALE)
            break

    by_price = sorted(fresh, key=_BY_PRICE)  # ties in source order
    candidates = fresh
    if len(by_price) >= 3 and by_price[-1][4] - by_price[0][4] > tol * by_price[0][4]:
        # (else |p - median| <= max - min <= tol * min <= tol * median: no price can be an outlier)
        by_price = _without_outliers(by_price, tol, dropped)
        if len(by_price) < len(fresh):
            candidates = [row for row in fresh if row[0] not in dropped]
    used = candidates
    if len(candidates) > 1:
        lo = by_price[0][4]
        hi = by_price[-1][4]
        spread = (hi - lo) / hi
        if len(candidates) == 2 and spread > tol and previous:
            used = _settle(candidates, previous.get(coin_id), dropped)
            if len(used) == 1:
                by_price = used

    # One pass over the used quotes, in source order (the order of the float operations): the total weight,
    # the heaviest and the most trusted (the first on a tie), and the confidence terms.
    total = 0.0
    miss = 1.0  # prod(1 - t): the chance that every used source is wrong
    heaviest = trusted = used[0]
    for row in used:
        total += row[3]
        miss *= 1.0 - row[2]
        if row[3] > heaviest[3]:
            heaviest = row
        if row[2] > trusted[2]:
            trusted = row
    t_max = trusted[2]
    if len(candidates) == 1:
        confidence = t_max
    elif spread <= tol:
        combined = 1.0 - miss
        confidence = combined if tol == 0 else t_max + (combined - t_max) * (1.0 - spread / tol)
    else:
        confidence = t_max * tol / spread
    confidence = 0.0 if confidence < 0.0 else 1.0 if confidence > 1.0 else confidence
    if len(candidates) < len(fresh):
        # An outlier is a source that disagreed: only the agreeing share of the fresh sources vouches.
        confidence *= len(candidates) / len(fresh)

    price = weighted_median(by_price, _PRICE, total)
    market_cap = _field_median(used, _BY_MARKET_CAP, _MARKET_CAP, total)
    volume = _field_median(used, _BY_VOLUME, _VOLUME, total)

    top = heaviest[1]
    symbol = top.symbol
    name = top.name
    taken = _TAKEN(top)
    if None in taken or not (symbol and name):
        symbol, name, taken = _from_heavier(used, symbol, name, taken)
    change_1h, change_24h, change_7d, circulating, total_supply, max_supply = taken
    rank = trusted[1].rank
    if rank is None:
        for row in sorted(used, key=_TRUST, reverse=True):  # a stable sort: ties in source order
            if (rank := row[1].rank) is not None:
                break

    return CoinSnapshot(
        coin_id, symbol, name, slug, rank, price, market_cap, volume, change_1h, change_24h, change_7d, circulating,
        total_supply, max_supply, confidence, observed_at, top.currency, coingecko_id, coinmarketcap_id,
        tuple([SourceValue(source, source_id, p, cap, vol, updated, (reason := dropped.get(source)) is None, reason)
               for source, _q, _t, _w, p, cap, vol, source_id, updated, _ts in rows]),
    )


def _without_outliers(by_price: list[Row], tol: float, dropped: dict[str, str]) -> list[Row]:
    """``by_price`` (3+ rows sorted by price) without its outliers, which are noted in ``dropped``."""
    prices = [row[4] for row in by_price]
    median = _median(prices)
    mad = _median(sorted([abs(p - median) for p in prices]))
    limit = max(MAD_CUTOFF * MAD_SCALE * mad, tol * median)
    kept = []
    for row in by_price:
        if abs(row[4] - median) > limit:
            dropped[row[0]] = OUTLIER
        else:
            kept.append(row)
    return kept


