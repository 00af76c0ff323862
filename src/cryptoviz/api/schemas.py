"""The response models of the API (the error bodies are in :mod:`cryptoviz.api.errors`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

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
    price_low: float | None = Field(
        description="Low end of a nominal 95 % interval around `price`, from the sources' values and their own "
                    "uncertainty; null when not computed.")
    price_high: float | None = Field(description="High end of the same interval; null when not computed.")
    unverified: bool = Field(
        description="Two sources disagree beyond tolerance and nothing settles which is right: treat `price` "
                    "with care.")
    price_at: datetime | None = Field(
        description="When the newest price used was quoted at its source (UTC); null when no source said.")
    age_s: float = Field(
        ge=0, description="Seconds from `price_at` (else `observed_at`) to the time of the request (for the live "
                          "stream: to the time the row was read).")
    stale: bool = Field(
        description="`age_s` is beyond the configured maximum staleness (CRYPTOVIZ_MAX_STALENESS): the coin "
                    "has had no fresh quote for that long. It stays listed.")


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
    n: int = Field(description="Observations (history rows) in the bucket.")
    n_backfill: int = Field(0, description="Backfilled points in the bucket (0: live data only).")
    backfilled: bool = Field(False, description="The bucket holds backfilled points (n_backfill > 0).")
    confidence_min: float | None = Field(None, description="Lowest confidence of the bucket's observations.")
    open_at: datetime | None = Field(None, description="Time of the bucket's first observation.")
    close_at: datetime | None = Field(None, description="Time of the bucket's last observation.")
    price_low: float | None = Field(None, description="Lowest low end of the observations' 95 % intervals "
                                                      "(null: none had one).")
    price_high: float | None = Field(None, description="Highest high end of the observations' 95 % intervals "
                                                       "(null: none had one).")
    unverified_n: int = Field(0, description="Observations of the bucket whose value was unverified (two sources "
                                             "disagreed beyond tolerance).")
    unverified: bool = Field(False, description="Some observation of the bucket was unverified (unverified_n > 0).")


TierName = Literal["raw", "5m", "1h", "1d"]


class GapOut(BaseModel):
    """A stretch without data: from the last observation before it to the first one after."""

    start: datetime
    end: datetime


class CoinGapOut(BaseModel):
    coin: str
    start: datetime = Field(description="The coin's last observation before the gap.")
    end: datetime = Field(description="Its first observation after the gap.")
    seconds: float = Field(description="Length of the gap.")


class GapsOut(BaseModel):
    start: datetime
    end: datetime
    min_length: float = Field(description="Seconds: shorter silences are no gap (default: twice the history "
                                          "heartbeat, the longest a quiet coin goes without a row).")
    gaps: list[CoinGapOut] = Field(description="The longest gaps ending in the range, longest first.")


class HistoryOut(BaseModel):
    coin: str
    start: datetime
    end: datetime
    interval: int | None = Field(description="Candle size in seconds actually used; null for raw points.")
    columns: list[str] = Field(description="Meaning of each value of a point.")
    points: list[tuple[datetime, float, float | None, float | None, float, float | None, float | None, bool,
                       datetime | None]] | None = Field(
        description="Raw consensus points [observed_at, price, market_cap, volume_24h, confidence, price_low, "
                    "price_high, unverified, price_at] (tier raw without interval): price_low / price_high the "
                    "nominal 95 % interval (null: none), unverified whether sources disagreed beyond tolerance, "
                    "price_at when the newest price used was quoted.")
    candles: list[CandleOut] | None = Field(description="OHLC candles (with an interval, or an automatic one).")
    sources: dict[str, list[tuple[datetime, float, bool]]] | None = Field(
        description="With sources=true: each source's own line, [time, price, used]: raw source quotes "
                    "(downsampled to the step) from the raw tier, else each candle's per-source close at the "
                    "time of its last observation.")
    tier: TierName = Field(
        description="What the answer was read from: raw history rows, or the 5-minute, 1-hour or 1-day candles.")
    requested_interval: int | None = Field(description="The interval asked for, in seconds (null: none).")
    note: str | None = Field(None, description="Why the step or tier differs from what was asked, if it does.")
    gap_after: float = Field(description="Seconds between two consecutive points or candles beyond which data "
                                         "is missing (a gap).")
    gaps: list[GapOut] = Field(description="Stretches of the range without data between two points or candles.")
    age_s: float | None = Field(
        default=None, description="Seconds from the coin's current value's `price_at` (else its `observed_at`) to "
                                  "the time of the request.")
    stale: bool | None = Field(
        default=None, description="`age_s` is beyond the configured maximum staleness (CRYPTOVIZ_MAX_STALENESS).")


class FeedOut(BaseModel):
    """A push source's connection (exchange websocket feeds)."""

    connected: bool
    since: datetime | None = Field(default=None, description="When the current connection opened.")
    last_message_at: datetime | None = Field(default=None, description="Last frame, heartbeats included.")
    reconnects: int = Field(default=0, description="Connections opened again since start.")
    stalls: int = Field(default=0, description="Connections given up for silence since start.")
    gaps: int = Field(default=0, description="Sequence gaps seen since start.")
    dropped: int = Field(default=0, description="Frames dropped because they were not taken in time.")
    disabled: str | None = Field(default=None, description="Why the feed is switched off, if it is.")
    last_error: str | None = None


class PairsOut(BaseModel):
    """An exchange's pairs at the last cycle: mapped to a coin, or not (never guessed)."""

    mapped: int
    unmapped: int
    reasons: dict[str, int] = Field(description="unknown_symbol, ambiguous_symbol, other_quote, ...")
    unmapped_pairs: list[str] = Field(description="Up to 50 of the pairs left out.")


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
    strategy: str | None = Field(default=None, description="Scraped pages: the extraction strategy that read the "
                                 "last fetch (e.g. next-data:cryptoCurrencyList, table).")
    fell_back: bool = Field(default=False, description="An earlier extraction strategy found nothing first: the "
                            "site is drifting from the layout CryptoViz knows best.")
    layout: str | None = Field(default=None, description="A layout-drift alarm of the newest cycle (no coins found, "
                               "or far fewer than the last fetch); the page is kept under data/failed-pages/.")
    feed: FeedOut | None = Field(default=None, description="Push sources: the connection's state.")
    pairs: PairsOut | None = Field(default=None, description="Exchanges: pairs mapped to coins, and not.")


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
