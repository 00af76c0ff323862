"""``/api/coins``: current values, one coin with each source's newest value, and history."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from cryptoviz.api import history as history_reader
from cryptoviz.api import queries
from cryptoviz.api.deps import EngineDep, SettingsDep
from cryptoviz.api.errors import ERRORS, NOT_FOUND, ApiError, bad_parameter
from cryptoviz.api.schemas import CoinDetail, CoinGapOut, CoinPage, CoinRow, GapsOut, HistoryOut, SourceQuoteOut
from cryptoviz.store.gaps import default_min_length, find_gaps
from cryptoviz.timeutil import utc

DEFAULT_RANGE = timedelta(hours=24)
DEFAULT_GAP_RANGE = timedelta(days=7)
MAX_TIER_ROWS = history_reader.MAX_TIER_ROWS

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)

CoinId = Annotated[str, PathParam(min_length=1, max_length=200, description="Canonical coin id, e.g. bitcoin.")]

router = APIRouter(tags=["coins"])


def parse_interval(value: str) -> int:
    """``30s``, ``1m``, ``5m``, ``1h``, ``1d``, ``1w`` or plain seconds -> seconds (1 s to 366 days)."""
    match = _INTERVAL.match(value)
    if not match:
        raise ValueError(f"expected a duration such as 30s, 1m, 5m, 1h, 1d or a number of seconds, got {value!r}")
    seconds = int(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if not 1 <= seconds <= 366 * 86_400:
        raise ValueError(f"must be between 1 second and 366 days, got {value!r}")
    return seconds


def _unknown(coin_id: str) -> ApiError:
    return ApiError(404, "not found", f"unknown coin {coin_id!r}")


@router.get("/api/coins", response_model=CoinPage, responses=ERRORS, summary="Current values of all coins",
            description="The current consensus of each coin, sorted and paginated. NULLs sort last. Each row "
                        "says what the value is worth: its 95 % interval (`price_low`, `price_high`), whether it "
                        "is `unverified`, its age (`age_s`, at the time of the request) and whether that age is "
                        "beyond the maximum staleness (`stale`); a stale coin stays listed.")
def list_coins(
    engine: EngineDep,
    settings: SettingsDep,
    sort: Annotated[queries.SortKey, Query(description="Sort key.")] = "market_cap",
    order: Annotated[queries.Order, Query(description="Sort order.")] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1 to 1000).")] = 100,
    offset: Annotated[int, Query(ge=0, description="Rows to skip.")] = 0,
) -> CoinPage:
    total, rows = queries.list_coins(engine, sort=sort, order=order, limit=limit, offset=offset,
                                     max_staleness=settings.max_staleness)
    return CoinPage(total=total, limit=limit, offset=offset, sort=sort, order=order,
                    coins=[CoinRow.model_validate(r) for r in rows])


@router.get("/api/coins/{coin_id}", response_model=CoinDetail, responses={**ERRORS, **NOT_FOUND},
            summary="One coin, with each source's newest value")
def get_coin(engine: EngineDep, settings: SettingsDep, coin_id: CoinId) -> CoinDetail:
    row = queries.get_coin(engine, coin_id, max_staleness=settings.max_staleness)
    if row is None:
        raise _unknown(coin_id)
    quotes = [SourceQuoteOut.model_validate(q) for q in queries.latest_source_quotes(engine, coin_id)]
    return CoinDetail.model_validate({**row, "source_quotes": quotes})


@router.get("/api/coins/{coin_id}/history", response_model=HistoryOut, responses={**ERRORS, **NOT_FOUND},
            summary="History: raw points or OHLC candles, from the tier that fits",
            description="The answer is read from the tier that fits the range and the step, and says which "
                        "(`tier`: raw, 5m, 1h, 1d; `interval`: the step used; `note`: why, when it differs from "
                        "what was asked). Without `interval`: raw consensus points for a range up to 2 days "
                        "that the raw rows cover, else candles of an automatic step (at most `max_candles`). "
                        "With `interval` (30s, 1m, 5m, 1h, 1d or seconds): OHLC candles (open = first price, "
                        "close = last, volume = last 24h volume, `n` observations, `n_backfill` backfilled "
                        "points, lowest confidence); a step finer than the stored tiers where the raw rows "
                        "are gone, or too fine for the range, gives coarser candles. `sources=true` adds each "
                        "source's own price line. `gaps` lists the stretches without data. Each point and candle "
                        "carries the value's 95 % interval (`price_low`, `price_high`: for a candle the lowest and "
                        "highest ends over its observations) and whether it was unverified (a candle: "
                        "`unverified_n` observations); `age_s` and `stale` are those of the coin's current value "
                        "at the time of the request. Default range: the last 24 hours.")
def history(
    engine: EngineDep,
    settings: SettingsDep,
    coin_id: CoinId,
    start: Annotated[datetime | None, Query(description="ISO-8601 start (default: end - 24h).")] = None,
    end: Annotated[datetime | None, Query(description="ISO-8601 end (default: now).")] = None,
    interval: Annotated[str | None, Query(max_length=20, description="Candle size, e.g. 1m, 5m, 1h, 1d, "
                                                                   "or seconds.")] = None,
    sources: Annotated[bool, Query(description="Add each source's own price line.")] = False,
    max_candles: Annotated[int, Query(ge=10, le=MAX_TIER_ROWS, description="Without interval, when the answer "
                                      "is candles: the automatic step gives at most this many.")]
    = history_reader.DEFAULT_MAX_CANDLES,
) -> HistoryOut:
    stop = utc(end) if end is not None else datetime.now(UTC)
    begin = utc(start) if start is not None else stop - DEFAULT_RANGE
    if begin >= stop:
        raise bad_parameter("start", f"start ({begin.isoformat()}) must be before end ({stop.isoformat()})")
    step: int | None = None
    if interval is not None:
        try:
            step = parse_interval(interval)
        except ValueError as exc:
            raise bad_parameter("interval", str(exc)) from None
    if not queries.coin_exists(engine, coin_id):
        raise _unknown(coin_id)
    request = history_reader.Request(coin_id, begin, stop, step, sources, max_candles,
                                     min_gap=default_min_length(settings).total_seconds())
    answer = history_reader.read(engine, request)
    fresh = queries.current_freshness(engine, coin_id, datetime.now(UTC), settings.max_staleness)
    if fresh is None:
        return answer
    return answer.model_copy(update={"age_s": fresh[0], "stale": fresh[1]})


def _gaps(engine: EngineDep, settings: SettingsDep, coins: list[str] | None, start: datetime | None,
          end: datetime | None, min_length: str | None, limit: int) -> GapsOut:
    stop = utc(end) if end is not None else datetime.now(UTC)
    begin = utc(start) if start is not None else stop - DEFAULT_GAP_RANGE
    if begin >= stop:
        raise bad_parameter("start", f"start ({begin.isoformat()}) must be before end ({stop.isoformat()})")
    shortest = default_min_length(settings)
    if min_length is not None:
        try:
            shortest = timedelta(seconds=parse_interval(min_length))
        except ValueError as exc:
            raise bad_parameter("min_length", str(exc)) from None
    found = find_gaps(engine, since=begin, until=stop, min_length=shortest, limit=limit, coins=coins)
    return GapsOut(start=begin, end=stop, min_length=shortest.total_seconds(),
                   gaps=[CoinGapOut(coin=g.coin, start=g.start, end=g.end, seconds=g.length.total_seconds())
                         for g in found])


GapStart = Annotated[datetime | None, Query(description="ISO-8601: gaps ending from here (default: end - 7 days).")]
GapEnd = Annotated[datetime | None, Query(description="ISO-8601: gaps ending until here (default: now).")]
MinLength = Annotated[str | None, Query(max_length=20, description="Shortest gap, e.g. 30m, 2h (default: twice "
                                                                   "the history heartbeat).")]
GapLimit = Annotated[int, Query(ge=1, le=1000, description="At most this many gaps, longest first.")]


@router.get("/api/coins/{coin_id}/gaps", response_model=GapsOut, responses={**ERRORS, **NOT_FOUND},
            summary="Stretches without data of one coin",
            description="Time ranges in which the coin got no history row although it should have (longer than "
                        "twice the history heartbeat), longest first. A gap a backfill filled is not reported.")
def coin_gaps(engine: EngineDep, settings: SettingsDep, coin_id: CoinId, start: GapStart = None,
              end: GapEnd = None, min_length: MinLength = None, limit: GapLimit = 100) -> GapsOut:
    if not queries.coin_exists(engine, coin_id):
        raise _unknown(coin_id)
    return _gaps(engine, settings, [coin_id], start, end, min_length, limit)


@router.get("/api/gaps", response_model=GapsOut, responses=ERRORS, summary="Stretches without data, all coins",
            description="The longest gaps of every coin in the range (an outage of the pipeline shows in every "
                        "coin), longest first.")
def gaps(engine: EngineDep, settings: SettingsDep, start: GapStart = None, end: GapEnd = None,
         min_length: MinLength = None, limit: GapLimit = 100) -> GapsOut:
    return _gaps(engine, settings, None, start, end, min_length, limit)
