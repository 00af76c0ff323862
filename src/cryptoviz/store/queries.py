"""Read side: what the collector, ``cryptoviz status`` and the API read back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cryptoviz.errors import StoreError
from cryptoviz.store.engine import redact
from cryptoviz.store.tables import (
    currencies,
    currency_data,
    currency_data_history,
    pipeline_runs,
    quote_rejections,
    source_quotes,
)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def previous_prices(engine: sa.Engine) -> dict[str, float]:
    """Current consensus price per coin: the reconciler's tie-breaker for two disagreeing sources."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(currency_data.c.currency_id, currency_data.c.price))
            return {coin: float(price) for coin, price in rows}
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"reading current prices from {redact(str(engine.url))} failed: {exc.orig}") from exc


def known_coin_ids(engine: sa.Engine) -> dict[str, str]:
    """CoinMarketCap id -> canonical id, for coins already known under their CoinGecko id."""
    query = sa.select(currencies.c.coinmarketcap_id, currencies.c.id).where(
        currencies.c.coinmarketcap_id.is_not(None), currencies.c.coingecko_id.is_not(None))
    try:
        with engine.connect() as conn:
            return {str(cmc): str(coin) for cmc, coin in conn.execute(query)}
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"reading coin ids from {redact(str(engine.url))} failed: {exc.orig}") from exc


def row_counts(engine: sa.Engine) -> dict[str, int]:
    tables = (currencies, currency_data, currency_data_history, source_quotes,
              pipeline_runs, quote_rejections)
    with engine.connect() as conn:
        return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in tables}


def last_runs(engine: sa.Engine, limit: int = 1) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(pipeline_runs).order_by(pipeline_runs.c.id.desc()).limit(limit)
        ).mappings().all()
    return [{**row, "started_at": as_utc(row["started_at"]), "finished_at": as_utc(row["finished_at"])}
            for row in rows]


def source_health(engine: sa.Engine, runs: int = 10) -> dict[str, dict[str, Any]]:
    """Per source over the last ``runs`` cycles: last success, last error, failures in a row, breaker."""
    health: dict[str, dict[str, Any]] = {}
    for run in reversed(last_runs(engine, runs)):
        for name, rep in (run["sources"] or {}).items():
            h = health.setdefault(name, {"last_ok": None, "last_error": None, "failures_in_a_row": 0,
                                         "fetched": 0, "rejected": 0, "breaker": "closed"})
            h["fetched"], h["rejected"] = rep.get("fetched", 0), rep.get("rejected", 0)
            h["breaker"] = rep.get("breaker", "closed")
            if rep.get("error"):
                h["last_error"] = rep["error"]
                h["failures_in_a_row"] += 1
            else:
                h["last_ok"] = run["finished_at"] or run["started_at"]
                h["failures_in_a_row"] = 0
    return health
