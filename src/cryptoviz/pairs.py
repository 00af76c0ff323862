"""Exchange pairs to coins, and their quotes into the vs currency.

An exchange quotes pairs (``BTCUSDT``, ``BTC-USD``, ``BTC/USD``), not coins, and a symbol can name
several coins. A pair's base asset is mapped to a coin only when that is unambiguous:

* ``CRYPTOVIZ_SYMBOL_MAP`` says so (``UNI=uniswap``), or
* the symbol names exactly one coin among those the aggregators report (learnt from each published cycle
  whose coin an aggregator vouched for).

Never on a symbol two coins share: such pairs, and symbols no aggregator knows, are counted and listed
(``unmapped``), not guessed. A ticker an exchange renamed first (``POL`` for ``MATIC``, see :data:`RENAMED`)
is read as the old one while no aggregator knows the new. Exchange aliases (``XBT``, ``XDG``) are the parsers' business
(:mod:`cryptoviz.sources.feed`).

Quote assets: the vs currency is taken as it is; against ``usd``, USDT and USDC quotes are converted with
the stablecoin's own live consensus price (never assumed to be 1); any other quote asset is ignored. Of
several pairs of one coin on one exchange, the one quoted in the vs currency wins, then USDT, then USDC:
one quote per coin and exchange, as for any source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from cryptoviz.models import CoinSnapshot, SourceQuote

# Stablecoins a USD quote may be converted through: quote asset -> its symbol among the coins.
STABLE_QUOTES = {"usdt": "USDT", "usdc": "USDC"}
# Bridged and wrapped copies share these symbols on the aggregators: the originals are named outright
# (CRYPTOVIZ_SYMBOL_MAP can say otherwise).
KNOWN_SYMBOLS = {"USDT": "tether", "USDC": "usd-coin"}
_PREFERENCE = ("usdt", "usdc")  # after the vs currency itself
# Tickers an exchange renamed before every aggregator did: new ticker -> the one it replaced. Used only while
# no aggregator reports the new ticker itself, and, like any symbol, only when that names one coin.
RENAMED = {"POL": "MATIC", "RENDER": "RNDR", "S": "FTM"}


@dataclass(slots=True)
class MappingReport:
    """One exchange's pairs in one pass: how many became quotes of a coin, and why the others did not."""

    mapped: int = 0
    unmapped: Counter[str] = field(default_factory=Counter)  # pair -> times unmapped (unknown/ambiguous symbol)
    reasons: Counter[str] = field(default_factory=Counter)  # reason -> pairs

    def as_json(self) -> dict[str, object]:
        return {"mapped": self.mapped, "unmapped": sum(self.unmapped.values()), "reasons": dict(self.reasons),
                "unmapped_pairs": sorted(self.unmapped)[:50]}


class PairMapper:
    """Knows which coin each symbol names (see the module docstring) and the stablecoins' prices."""

    def __init__(self, *, explicit: Mapping[str, str] | None = None, vs_currency: str = "usd",
                 exchanges: Iterable[str] = ()) -> None:
        self.explicit = {**KNOWN_SYMBOLS, **{k.upper(): v for k, v in (explicit or {}).items()}}
        self.vs_currency = vs_currency.lower()
        self.exchanges = frozenset(exchanges)
        self._coins: dict[str, set[str]] = {}  # symbol -> coin ids
        self._prices: dict[str, float] = {}  # coin id -> consensus price
        # coin id -> its name: a mapped quote carries it, so it still joins the coin by name and symbol in
        # a cycle where the aggregator whose id it took (its slug) is missing.
        self._names: dict[str, str] = {}

    def learn(self, snapshots: Sequence[CoinSnapshot]) -> None:
        """Take in a published cycle: the symbols of coins an aggregator vouched for, and every price."""
        for s in snapshots:
            self._prices[s.coin_id] = s.price
            if s.name:
                self._names.setdefault(s.coin_id, s.name)
            if s.currency == self.vs_currency and any(v.source not in self.exchanges for v in s.sources):
                self._coins.setdefault(s.symbol.strip().upper(), set()).add(s.coin_id)

    def coin_of(self, symbol: str) -> tuple[str | None, str]:
        """(coin id, "") or (None, why not) for a base asset."""
        symbol = symbol.strip().upper()
        if symbol in self.explicit:
            return self.explicit[symbol], ""
        coins = self._coins.get(symbol)
        if not coins and symbol in RENAMED:
            coins = self._coins.get(RENAMED[symbol])
        if not coins:
            return None, "unknown_symbol"
        if len(coins) > 1:
            return None, "ambiguous_symbol"
        return next(iter(coins)), ""

    def rate(self, quote_asset: str) -> tuple[float | None, str]:
        """(factor to the vs currency, "") or (None, why not) for a pair's quote asset."""
        if quote_asset == self.vs_currency:
            return 1.0, ""
        stable = STABLE_QUOTES.get(quote_asset)
        if stable is None or self.vs_currency != "usd":
            return None, "other_quote"
        coin, _why = self.coin_of(stable)
        price = self._prices.get(coin) if coin is not None else None
        if price is None or not price > 0:
            return None, "no_stablecoin_price"
        return price, ""

    def map(self, quotes: Iterable[SourceQuote]) -> tuple[list[SourceQuote], dict[str, MappingReport]]:
        """Exchange quotes -> quotes of a coin in the vs currency (one per exchange and coin); quotes of
        other sources pass through unchanged."""
        out: list[SourceQuote] = []
        reports: dict[str, MappingReport] = {}
        best: dict[tuple[str, str], tuple[int, SourceQuote]] = {}
        for q in quotes:
            if q.source not in self.exchanges:
                out.append(q)
                continue
            report = reports.setdefault(q.source, MappingReport())
            coin, why = self.coin_of(q.symbol)
            rate: float | None = None
            if coin is not None:
                rate, why = self.rate(q.currency)
            if coin is None or rate is None or q.price is None:
                report.unmapped[q.source_id] += 1
                report.reasons[why or "no_price"] += 1
                continue
            rank = 0 if q.currency == self.vs_currency else 1 + _PREFERENCE.index(q.currency)
            converted = replace(q, slug=coin, name=self._names.get(coin, q.name), currency=self.vs_currency,
                                price=q.price * rate,
                                volume_24h=None if q.volume_24h is None else q.volume_24h * rate)
            key = (q.source, coin)
            held = best.get(key)
            if held is None or rank < held[0] or (rank == held[0] and q.source_id < held[1].source_id):
                best[key] = (rank, converted)
        for (source, _coin), (_rank, q) in best.items():
            reports[source].mapped += 1
            out.append(q)
        return out, reports
