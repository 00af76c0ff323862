"""SQLAlchemy tables: one model for SQLite (embedded) and PostgreSQL (production).

Names follow the original CryptoViz design. Every write is idempotent on the primary keys, so a
redelivered bus message never makes a second row.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

TS = sa.DateTime(timezone=True)
NUM: sa.Double[float] = sa.Double()
COIN_ID = sa.String(200)
# JSONB on PostgreSQL: merged with || when a batch brings a source's id.
SOURCE_IDS = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

currencies = sa.Table(
    "currencies", metadata,
    sa.Column("id", COIN_ID, primary_key=True, comment="canonical coin id (CoinGecko id, else slug)"),
    sa.Column("symbol", sa.String(64), nullable=False, comment="not unique: several coins share a symbol"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("slug", sa.String(200)),
    sa.Column("coingecko_id", sa.String(200)),
    sa.Column("coinmarketcap_id", sa.String(64)),
    sa.Column("source_ids", SOURCE_IDS, comment="source name -> that source's id of the coin"),
    sa.Column("first_seen_at", TS, nullable=False),
    sa.Column("last_seen_at", TS, nullable=False),
    sa.Index("ix_currencies_symbol", "symbol"),
    # Rewritten on every batch (last_seen_at): room in each page keeps the updates HOT (no index writes).
    postgresql_with={"fillfactor": 50},
)

_VALUE_COLUMNS = (
    ("price", NUM, False), ("market_cap", NUM, True), ("volume_24h", NUM, True),
    ("change_1h", NUM, True), ("change_24h", NUM, True), ("change_7d", NUM, True),
)


def _values() -> list[sa.Column[object]]:
    return [sa.Column(name, type_, nullable=nullable) for name, type_, nullable in _VALUE_COLUMNS]


def _interval() -> list[sa.Column[object]]:
    """What a value is worth: its interval, whether it is verified, when its price was quoted."""
    return [
        sa.Column("price_low", NUM, comment="low end of the nominal 95 % interval around price (NULL: none)"),
        sa.Column("price_high", NUM, comment="high end of the nominal 95 % interval around price (NULL: none)"),
        sa.Column("unverified", sa.Boolean, nullable=False, server_default=sa.false(),
                  comment="two sources disagree beyond tolerance and nothing settles which is right"),
        sa.Column("price_at", TS, comment="when the newest price used was quoted at its source (the value's age)"),
    ]


currency_data = sa.Table(
    "currency_data", metadata,
    sa.Column("currency_id", COIN_ID, sa.ForeignKey("currencies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("rank", sa.Integer),
    *_values(),
    sa.Column("circulating_supply", NUM),
    sa.Column("total_supply", NUM),
    sa.Column("max_supply", NUM),
    sa.Column("confidence", NUM, nullable=False),
    sa.Column("n_sources", sa.SmallInteger, nullable=False),
    sa.Column("sources", sa.String(200), nullable=False, comment="comma list of the sources used"),
    sa.Column("currency", sa.String(10), nullable=False),
    sa.Column("observed_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    *_interval(),
    postgresql_with={"fillfactor": 50},  # one update per coin per batch: keep them HOT
)

currency_data_history = sa.Table(
    "currency_data_history", metadata,
    sa.Column("currency_id", COIN_ID, sa.ForeignKey("currencies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("observed_at", TS, primary_key=True),
    sa.Column("rank", sa.Integer),
    *_values(),
    sa.Column("confidence", NUM, nullable=False),
    sa.Column("n_sources", sa.SmallInteger, nullable=False),
    sa.Column("sources", sa.String(200), nullable=False),
    sa.Column("currency", sa.String(10), nullable=False),
    *_interval(),
    sa.Index("ix_currency_data_history_observed_at", "observed_at"),
)

# No foreign key here: the busiest table (a row per coin, source and cycle) is insert-only and always
# written in the transaction that stores its coin, and a per-row key check doubled its write cost.
source_quotes = sa.Table(
    "source_quotes", metadata,
    sa.Column("currency_id", COIN_ID, primary_key=True),
    sa.Column("source", sa.String(40), primary_key=True),
    sa.Column("observed_at", TS, primary_key=True),
    sa.Column("source_id", sa.String(200), nullable=False),
    sa.Column("price", NUM, nullable=False),
    sa.Column("market_cap", NUM),
    sa.Column("volume_24h", NUM),
    sa.Column("last_updated", TS),
    sa.Column("used", sa.Boolean, nullable=False),
    sa.Column("dropped_reason", sa.String(40)),
    sa.Index("ix_source_quotes_observed_at", "observed_at"),
)


def _candles(name: str, width: str) -> sa.Table:
    """OHLC of the consensus price per coin and ``width`` bucket, kept up to date as batches are stored
    (see cryptoviz.store.candles)."""
    return sa.Table(
        name, metadata,
        sa.Column("currency_id", COIN_ID, primary_key=True),
        sa.Column("bucket", TS, primary_key=True, comment=f"start of the {width} bucket (UTC, epoch-aligned)"),
        sa.Column("open", NUM, nullable=False),
        sa.Column("high", NUM, nullable=False),
        sa.Column("low", NUM, nullable=False),
        sa.Column("close", NUM, nullable=False),
        sa.Column("open_at", TS, nullable=False, comment="time of the first observation"),
        sa.Column("close_at", TS, nullable=False, comment="time of the last observation"),
        sa.Column("market_cap", NUM, comment="of the last observation"),
        sa.Column("volume_24h", NUM, comment="of the last observation"),
        sa.Column("n", sa.Integer, nullable=False, comment="history rows in the bucket"),
        sa.Column("n_backfill", sa.Integer, nullable=False, server_default="0",
                  comment="points a backfill added (0: live data only)"),
        sa.Column("confidence_min", NUM, comment="lowest confidence of the history rows"),
        sa.Column("sources", sa.String(200), nullable=False, comment="comma list of the sources behind it"),
        sa.Column("source_close", SOURCE_IDS, comment="each source's own price at the last observation"),
        sa.Column("price_low", NUM, comment="lowest low end of the history rows' intervals (NULL: none)"),
        sa.Column("price_high", NUM, comment="highest high end of the history rows' intervals (NULL: none)"),
        sa.Column("unverified_n", sa.Integer, nullable=False, server_default="0",
                  comment="history rows in the bucket whose value was unverified"),
        sa.Index(f"ix_{name}_bucket", "bucket"),
        # A candle is updated by every batch that brings a row of its bucket: room in each page keeps
        # those updates HOT (no new index entries).
        postgresql_with={"fillfactor": 50},
    )


candles_5m = _candles("candles_5m", "5-minute")
candles_1h = _candles("candles_1h", "1-hour")
candles_1d = _candles("candles_1d", "1-day")

pipeline_runs = sa.Table(
    "pipeline_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("status", sa.String(20), nullable=False, comment="ok, partial, failed, skipped"),
    sa.Column("fetched", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("published", sa.Integer, nullable=False, server_default="0"),
    sa.Column("recorded", sa.Integer, nullable=False, server_default="0",
              comment="of the published, those that made a history row (write on change)"),
    sa.Column("sources", sa.JSON, nullable=False, 
              comment="per source: fetched, rejected, used, error, ms, breaker"),
    sa.Column("errors", sa.JSON, nullable=False),
    sa.Index("ix_pipeline_runs_started_at", "started_at"),
)

quote_rejections = sa.Table(
    "quote_rejections", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE")),
    sa.Column("rejected_at", TS, nullable=False),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("coin", sa.String(200), nullable=False),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_quote_rejections_rejected_at", "rejected_at"),
)

dead_letters = sa.Table(
    "dead_letters", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("dead_at", TS, nullable=False),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("key", sa.Text),
    sa.Column("error", sa.Text, nullable=False),
    # A redelivered poison message is recorded once.
    sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_position"),
    sa.Index("ix_dead_letters_dead_at", "dead_at"),
)
