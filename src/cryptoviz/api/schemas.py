"""The response models of the API (the error bodies are in :mod:`cryptoviz.api.errors`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class CoinRow(BaseModel):
    """A coin's current consensus value."""

    id: str = Field(description="Canonical coin id (CoinGecko id, else slug).")
    symbol: str
    name: str
    rank: int | None = Field(description="Market-cap rank reported by the sources.")
    price: float
    market_cap: float | None
    volume_24h: float | None
    change_1h: float | None = Field(description="Percent change over 1 hour.")
    change_24h: float | None = Field(description="Percent change over 24 hours.")
    change_7d: float | None = Field(description="Percent change over 7 days.")
    confidence: float = Field(ge=0, le=1, description="Agreement and freshness of the sources, 0 to 1.")
    n_sources: int = Field(description="Sources used for the consensus.")
    sources: list[str] = Field(description="Names of the sources used.")
    currency: str = Field(description="Quote currency, e.g. usd.")
    observed_at: datetime = Field(description="Cycle time of this value (UTC).")


class CoinPage(BaseModel):
    total: int = Field(description="Coins with a current value.")
    limit: int
    offset: int
    sort: str
    order: str
    coins: list[CoinRow]


class SourceQuoteOut(BaseModel):
    """One source's newest reading of the coin."""

    source: str
    source_id: str = Field(description="The source's own id of the coin.")
    price: float
    market_cap: float | None
    volume_24h: float | None
    last_updated: datetime | None = Field(description="The source's own time for the value.")
    observed_at: datetime
    used: bool = Field(description="Whether the value entered the consensus.")
    dropped_reason: str | None = Field(description="Why it did not: stale, outlier, disagreement.")


class CoinDetail(CoinRow):
    slug: str | None
    coingecko_id: str | None
    coinmarketcap_id: str | None
    circulating_supply: float | None
    total_supply: float | None
    max_supply: float | None
    first_seen_at: datetime
    last_seen_at: datetime
    updated_at: datetime = Field(description="When the database row was last written.")
    source_quotes: list[SourceQuoteOut]


class CandleOut(BaseModel):
    time: datetime = Field(description="Start of the bucket (UTC, aligned on the Unix epoch).")
    open: float = Field(description="First price of the bucket.")
    high: float
    low: float
    close: float = Field(description="Last price of the bucket.")
    volume: float | None = Field(description="Last 24h volume of the bucket.")
    n: int = Field(description="Observations in the bucket.")


class HistoryOut(BaseModel):
    coin: str
    start: datetime
    end: datetime
    interval: int | None = Field(description="Candle size in seconds; null for raw points.")
    columns: list[str] = Field(description="Meaning of each value of a point.")
    points: list[tuple[datetime, float, float | None, float | None, float]] | None = Field(
        description="Raw consensus points [observed_at, price, market_cap, volume_24h, confidence] "
                    "(without interval).")
    candles: list[CandleOut] | None = Field(description="OHLC candles (with interval).")
    sources: dict[str, list[tuple[datetime, float, bool]]] | None = Field(
        description="With sources=true: each source's own line, [observed_at, price, used].")


class SourceHealthOut(BaseModel):
    source: str
    up: bool = Field(description="The last cycle got an answer without error from this source.")
    last_ok: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failures_in_a_row: int
    errors_in_window: int
    runs_in_window: int
    breaker: str = Field(description="Circuit breaker: closed, open or half-open.")
    fetched: int = Field(description="Items fetched in the last cycle.")
    rejected: int = Field(description="Items rejected in the last cycle.")
    used: int = Field(description="Coins whose consensus used this source in the last cycle.")
    seconds: float
    reasons: dict[str, int] = Field(description="Rejections per reason code in the last cycle.")


class RunOut(BaseModel):
    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    fetched: int
    rejected: int
    published: int


class SourcesOut(BaseModel):
    runs: int = Field(description="Recorded cycles considered.")
    last_run: RunOut | None
    sources: list[SourceHealthOut]


class HealthOut(BaseModel):
    status: str
    database: str


class StreamSnapshot(BaseModel):
    observed_at: datetime | None
    total: int
    coins: list[CoinRow]
