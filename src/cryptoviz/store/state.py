"""What the collector reads back from the store, and where it records its cycles, behind small protocols.

The collector never queries tables itself: it asks a :class:`MarketState` for the previous consensus
prices (to settle a two-source disagreement) and the coin ids it already knows (to keep a coin under its
usual id when the source that names it missed a cycle), and hands each finished cycle to a
:class:`RunLog`. :class:`StoreState` answers both from the database; :class:`NoState` knows nothing and
keeps nothing (a collector without a database, e.g. ``collect`` publishing to Kafka with no store).
"""

from __future__ import annotations

from typing import Any, Protocol

import sqlalchemy as sa

from cryptoviz.errors import StoreError
from cryptoviz.store.engine import redact
from cryptoviz.store.runs import RunReport, record_run
from cryptoviz.store.tables import currencies, currency_data

# (source or id namespace name, that source's id of the coin) -> the coin's id in the store
KnownIds = dict[tuple[str, str], str]


class MarketState(Protocol):
    def previous_prices(self) -> dict[str, float]:
        """Current consensus price per coin id; raises ``StoreError`` when it cannot be read."""
        ...

    def known_ids(self) -> KnownIds:
        """The ids each source gives to coins already stored; raises ``StoreError``."""
        ...


class RunLog(Protocol):
    def record_run(self, run: RunReport) -> None:
        """Keep the report of one cycle; raises ``StoreError``."""
        ...


class NoState:
    """A collector without a store: no previous prices, no known ids, cycles only logged."""

    def previous_prices(self) -> dict[str, float]:
        return {}

    def known_ids(self) -> KnownIds:
        return {}

    def record_run(self, run: RunReport) -> None:
        """Nothing to keep the run in."""


class StoreState:
    """:class:`MarketState` and :class:`RunLog` over the database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _read(self, what: str, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
        try:
            with self.engine.connect() as conn:
                return [tuple(row) for row in conn.execute(query)]
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"reading {what} from {redact(str(self.engine.url))} failed: {exc.orig}") from exc

    def previous_prices(self) -> dict[str, float]:
        rows = self._read("current prices", sa.select(currency_data.c.currency_id, currency_data.c.price))
        return {coin: float(price) for coin, price in rows}

    def known_ids(self) -> KnownIds:
        query = sa.select(currencies.c.id, currencies.c.coingecko_id, currencies.c.coinmarketcap_id,
                          currencies.c.source_ids)
        known: KnownIds = {}
        for coin, coingecko_id, coinmarketcap_id, source_ids in self._read("coin ids", query):
            if isinstance(source_ids, dict):
                for source, source_id in source_ids.items():
                    if isinstance(source_id, str):
                        known[(str(source), source_id)] = coin
            # Rows written before source_ids existed still name their ids in these columns.
            if coingecko_id:
                known.setdefault(("coingecko", coingecko_id), coin)
            if coinmarketcap_id:
                known.setdefault(("coinmarketcap", coinmarketcap_id), coin)
        return known

    def record_run(self, run: RunReport) -> None:
        record_run(self.engine, run)
