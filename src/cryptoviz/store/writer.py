"""The SQL sink: batches of snapshots as multi-row ``INSERT ... ON CONFLICT`` statements (SQLite).

:func:`snapshot_rows` turns a batch into each table's rows, de-duplicated on each table's key (the latest
observation wins); one compiled statement per table is executed over them. The PostgreSQL sink
(:mod:`cryptoviz.store.pg_copy`) writes the same rows with binary COPY and set-based merges.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from cryptoviz.errors import StoreError
from cryptoviz.models import CoinSnapshot
from cryptoviz.store.candles import Point, fold_into
from cryptoviz.store.engine import insert_for, redact
from cryptoviz.store.sink import WriteResult
from cryptoviz.store.tables import currencies, currency_data, currency_data_history, source_quotes
from cryptoviz.timeutil import utc, utc_now

logger = logging.getLogger(__name__)


def _later(a: datetime, b: datetime) -> bool:
    return utc(a) > utc(b)


# What a history row gives its candles (cryptoviz.store.candles.Point), in this order.
_POINT_COLUMNS = ("currency_id", "observed_at", "price", "market_cap", "volume_24h", "confidence", "sources",
                  "price_low", "price_high", "unverified")


def source_ids(snapshot: CoinSnapshot) -> dict[str, str]:
    """Each source's own id of the coin (``currencies.source_ids``)."""
    return {v.source: v.source_id for v in snapshot.sources}


def _merged_ids(dialect: str, stored: Any, new: Any) -> Any:
    """The stored ids updated with the new ones (a source's newer id replaces its older one)."""
    if dialect == "postgresql":
        return sa.func.coalesce(stored, sa.cast("{}", JSONB)).op("||")(new)
    return sa.func.json_patch(sa.func.coalesce(stored, "{}"), new)


def snapshot_rows(snapshots: Sequence[CoinSnapshot], now: datetime) -> dict[str, Any]:
    """Rows for each table, de-duplicated on each table's key (latest observation wins), and each recorded
    observation's source prices (``source_prices``: (coin, observed_at) -> {source: price})."""
    coins: dict[str, dict[str, Any]] = {}
    current: dict[str, dict[str, Any]] = {}
    history: dict[tuple[str, datetime], dict[str, Any]] = {}
    quotes: dict[tuple[str, str, datetime], dict[str, Any]] = {}
    for s in snapshots:
        observed = utc(s.observed_at)
        used = ",".join(s.sources_used)
        n_used = sum(1 for v in s.sources if v.used) or 1
        values = {
            "currency_id": s.coin_id, "rank": s.rank, "price": s.price, "market_cap": s.market_cap,
            "volume_24h": s.volume_24h, "change_1h": s.change_1h, "change_24h": s.change_24h,
            "change_7d": s.change_7d, "confidence": s.confidence, "n_sources": n_used,
            "sources": used[:200], "currency": s.currency, "observed_at": observed,
            "price_low": s.price_low, "price_high": s.price_high, "unverified": s.unverified,
            "price_at": utc(s.price_at) if s.price_at else None,
        }
        known = coins.get(s.coin_id)
        if known is None or observed >= known["last_seen_at"]:
            coins[s.coin_id] = {
                "id": s.coin_id, "symbol": s.symbol, "name": s.name, "slug": s.slug,
                "coingecko_id": s.coingecko_id, "coinmarketcap_id": s.coinmarketcap_id,
                "source_ids": source_ids(s),
                "first_seen_at": min(observed, known["first_seen_at"]) if known else observed,
                "last_seen_at": observed,
            }
        elif observed < known["first_seen_at"]:
            known["first_seen_at"] = observed
        latest = current.get(s.coin_id)
        if latest is None or observed >= latest["observed_at"]:
            current[s.coin_id] = {**values, "circulating_supply": s.circulating_supply,
                                  "total_supply": s.total_supply, "max_supply": s.max_supply,
                                  "updated_at": now}
        if not s.record:
            continue  # current value only: nothing changed since the coin's last history row
        history[(s.coin_id, observed)] = values
        for v in s.sources:
            quotes[(s.coin_id, v.source, observed)] = {
                "currency_id": s.coin_id, "source": v.source, "observed_at": observed,
                "source_id": v.source_id, "price": v.price, "market_cap": v.market_cap,
                "volume_24h": v.volume_24h,
                "last_updated": utc(v.last_updated) if v.last_updated else None,
                "used": v.used, "dropped_reason": v.dropped_reason,
            }
    prices: dict[tuple[str, datetime], dict[str, float]] = {}
    for (coin, source, observed), row in quotes.items():
        prices.setdefault((coin, observed), {})[source] = row["price"]
    return {"currencies": list(coins.values()), "currency_data": list(current.values()),
            "history": list(history.values()), "source_quotes": list(quotes.values()),
            "source_prices": prices}


class SqlSink:
    """Writes snapshot batches with SQLAlchemy upserts (any database with ``ON CONFLICT``: SQLite here)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._statements = self._build_statements(engine.dialect.name)

    def close(self) -> None:
        """Nothing of its own to release: the engine belongs to the caller."""

    @staticmethod
    def _build_statements(d: str) -> dict[str, Any]:
        ins = insert_for(currencies, d)
        ex = ins.excluded
        upsert_currencies = ins.on_conflict_do_update(
            index_elements=[currencies.c.id],
            set_={
                "symbol": ex.symbol, "name": ex.name,
                "slug": sa.func.coalesce(ex.slug, currencies.c.slug),
                "coingecko_id": sa.func.coalesce(ex.coingecko_id, currencies.c.coingecko_id),
                "coinmarketcap_id": sa.func.coalesce(ex.coinmarketcap_id, currencies.c.coinmarketcap_id),
                "source_ids": _merged_ids(d, currencies.c.source_ids, ex.source_ids),
                "first_seen_at": sa.case((ex.first_seen_at < currencies.c.first_seen_at, ex.first_seen_at),
                                         else_=currencies.c.first_seen_at),
                "last_seen_at": sa.case((ex.last_seen_at > currencies.c.last_seen_at, ex.last_seen_at),
                                        else_=currencies.c.last_seen_at),
            },
        )
        ins = insert_for(currency_data, d)
        ex = ins.excluded
        upsert_current = ins.on_conflict_do_update(
            index_elements=[currency_data.c.currency_id],
            set_={c.name: getattr(ex, c.name) for c in currency_data.c if c.name != "currency_id"},
            # An older (replayed or late) record never overwrites a newer current value.
            where=currency_data.c.observed_at <= ex.observed_at,
        )
        return {
            "currencies": upsert_currencies,
            "currency_data": upsert_current,
            # RETURNING counts the rows really inserted (rowcount is not reliable on every driver).
            "history": insert_for(currency_data_history, d).on_conflict_do_nothing()
            .returning(*(currency_data_history.c[name] for name in _POINT_COLUMNS)),
            "source_quotes": insert_for(source_quotes, d).on_conflict_do_nothing()
            .returning(source_quotes.c.currency_id),
        }

    def write(self, snapshots: Sequence[CoinSnapshot]) -> WriteResult:
        if not snapshots:
            return WriteResult(0, 0, 0)
        rows = snapshot_rows(snapshots, utc_now())
        inserted = {"history": 0, "source_quotes": 0}
        try:
            with self.engine.begin() as conn:
                # Order matters: currencies first (foreign keys), then the rows that point at them.
                for table in ("currencies", "currency_data", "history", "source_quotes"):
                    if not rows[table]:
                        continue
                    # executemany of one compiled statement: SQLAlchemy sends multi-row VALUES pages
                    # ("insertmanyvalues"), so no statement is compiled per batch.
                    result = conn.execute(self._statements[table], rows[table])
                    if table == "history":
                        # RETURNING gives the rows really inserted: those, and only those, make candles.
                        new = [Point(r[0], utc(r[1]), r[2], r[3], r[4], r[5], r[6] or "",
                                     rows["source_prices"].get((r[0], utc(r[1]))), r[7], r[8], bool(r[9]))
                               for r in result.all()]
                        inserted["history"] = len(new)
                        fold_into(conn, new)
                    elif table == "source_quotes":
                        inserted[table] = len(result.all())
        except sa.exc.DBAPIError as exc:
            raise StoreError(
                f"writing {len(snapshots)} snapshots to {redact(str(self.engine.url))} failed: "
                f"{type(exc.orig).__name__}: {str(exc.orig).strip().splitlines()[0] if exc.orig else exc}"
            ) from exc
        return WriteResult(len(snapshots), inserted["history"], inserted["source_quotes"])
