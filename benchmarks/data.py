"""Deterministic synthetic records for the benchmarks (no network, no randomness between runs)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from cryptoviz.models import CoinSnapshot, SourceQuote, SourceValue

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOURCES = ("coingecko", "coinmarketcap", "coingecko-html")
# A fourth source in a namespace of its own, joined to the others by name and symbol only (no slug).
PAPRIKA = "coinpaprika"
SOURCES_4 = (*SOURCES, PAPRIKA)
TRUST = {"coinmarketcap": 0.9, "coingecko": 0.8, "coinpaprika": 0.75, "coinmarketcap-html": 0.7,
         "coingecko-html": 0.6}


def coin_name(i: int) -> str:
    return f"Coin {i:05d}"


def quotes(coins: int, *, now: datetime = T0, seed: int = 1, sources: tuple[str, ...] = SOURCES) -> list[SourceQuote]:
    """One quote per source per coin, like one cycle of ``CRYPTOVIZ_TOP_N=all``: the 3 ``SOURCES``, or any of
    them plus ``"coinpaprika"`` (``SOURCES_4``).

    Prices agree within a few tenths of a percent; one coin in 50 has an outlier on one source, one in
    100 a stale quote; some fields are missing, as on the real pages. coinpaprika draws its own noise, so
    the other sources' quotes are the same with or without it.
    """
    unknown = set(sources) - set(SOURCES_4)
    if unknown:
        raise ValueError(f"unknown benchmark source(s) {sorted(unknown)}; known: {', '.join(SOURCES_4)}")
    rng = random.Random(seed)
    paprika = random.Random(seed + 1)
    out: list[SourceQuote] = []
    for i in range(coins):
        slug = f"coin-{i:05d}"
        symbol = f"C{i % 4000}"
        base = 10 ** rng.uniform(-8, 5)
        supply = 10 ** rng.uniform(5, 11)
        for k, source in enumerate(SOURCES):
            price = base * (1 + rng.uniform(-0.003, 0.003))
            if k == 2 and i % 50 == 7:
                price *= 10  # outlier
            age = 30.0 + rng.uniform(0, 60)
            if k == 1 and i % 100 == 3:
                age = 1200.0  # stale
            sid = str(100_000 + i) if source == "coinmarketcap" else slug
            quote = SourceQuote(
                source=source, source_id=sid, symbol=symbol, name=coin_name(i),
                slug=slug if source == "coinmarketcap" else None, rank=i + 1, price=price,
                market_cap=price * supply if k != 2 else None, volume_24h=price * supply * 0.05,
                change_1h=rng.uniform(-2, 2), change_24h=rng.uniform(-10, 10),
                change_7d=None if k == 2 else rng.uniform(-30, 30),
                circulating_supply=supply, total_supply=supply * 1.2 if k == 0 else None,
                max_supply=None, last_updated=now - timedelta(seconds=age), collected_at=now, currency="usd",
            )
            if source in sources:  # (built anyway: the random draws stay the same whichever sources are asked)
                out.append(quote)
        if PAPRIKA in sources:
            price = base * (1 + paprika.uniform(-0.002, 0.002))
            out.append(SourceQuote(
                source=PAPRIKA, source_id=f"{symbol.lower()}-{slug}", symbol=symbol, name=coin_name(i), slug=None,
                rank=i + 1, price=price, market_cap=price * supply, volume_24h=price * supply * 0.04,
                change_1h=paprika.uniform(-2, 2), change_24h=paprika.uniform(-10, 10),
                change_7d=paprika.uniform(-30, 30), circulating_supply=supply, total_supply=None, max_supply=None,
                last_updated=now - timedelta(seconds=20.0 + paprika.uniform(0, 40)), collected_at=now,
                currency="usd",
            ))
    rng.shuffle(out)
    return out


def snapshot(coin: int, cycle: int, *, at: datetime | None = None, cycle_seconds: int = 60) -> CoinSnapshot:
    """The reconciled record of ``coin`` in ``cycle``: two sources, as most coins have."""
    observed = at if at is not None else T0 + timedelta(seconds=cycle * cycle_seconds)
    cid = f"coin-{coin:05d}"
    price = (1.0 + coin % 997) * (1.0 + cycle / 1000.0)
    supply = 1e6 + coin
    return CoinSnapshot(
        coin_id=cid, symbol=f"C{coin % 4000}", name=coin_name(coin), slug=cid, rank=coin + 1, price=price,
        market_cap=price * supply, volume_24h=price * supply * 0.05, change_1h=0.12, change_24h=-1.5,
        change_7d=None, circulating_supply=supply, total_supply=supply * 1.2, max_supply=None,
        confidence=0.93, observed_at=observed, currency="usd", coingecko_id=cid,
        coinmarketcap_id=str(100_000 + coin),
        sources=(
            SourceValue("coingecko", cid, price, price * supply, price * supply * 0.05,
                        observed - timedelta(seconds=30)),
            SourceValue("coinmarketcap", str(100_000 + coin), price * 1.001, None, None,
                        observed - timedelta(seconds=20)),
        ),
    )
