"""``/api/coins``: current values, one coin with each source's newest value, and history."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from cryptoviz.api import queries
from cryptoviz.api.deps import EngineDep
from cryptoviz.api.errors import ERRORS, NOT_FOUND, ApiError, bad_parameter
from cryptoviz.api.schemas import CandleOut, CoinDetail, CoinPage, CoinRow, HistoryOut, SourceQuoteOut
from cryptoviz.timeutil import utc

MAX_POINTS = 50_000  # raw points (or source points) in one history answer
MAX_CANDLES = 10_000
DEFAULT_RANGE = timedelta(hours=24)
POINT_COLUMNS = ["observed_at", "price", "market_cap", "volume_24h", "confidence"]

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
            description="The current consensus of each coin, sorted and paginated. NULLs sort last.")
def list_coins(
    engine: EngineDep,
    sort: Annotated[queries.SortKey, Query(description="Sort key.")] = "market_cap",
    order: Annotated[queries.Order, Query(description="Sort order.")] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1 to 1000).")] = 100,
    offset: Annotated[int, Query(ge=0, description="Rows to skip.")] = 0,
) -> CoinPage:
    total, rows = queries.list_coins(engine, sort=sort, order=order, limit=limit, offset=offset)
    return CoinPage(total=total, limit=limit, offset=offset, sort=sort, order=order,
                    coins=[CoinRow.model_validate(r) for r in rows])


@router.get("/api/coins/{coin_id}", response_model=CoinDetail, responses={**ERRORS, **NOT_FOUND},
            summary="One coin, with each source's newest value")
def get_coin(engine: EngineDep, coin_id: CoinId) -> CoinDetail:
    row = queries.get_coin(engine, coin_id)
    if row is None:
        raise _unknown(coin_id)
    quotes = [SourceQuoteOut.model_validate(q) for q in queries.latest_source_quotes(engine, coin_id)]
    return CoinDetail.model_validate({**row, "source_quotes": quotes})


@router.get("/api/coins/{coin_id}/history", response_model=HistoryOut, responses={**ERRORS, **NOT_FOUND},
            summary="History: raw points or OHLC candles",
            description="Without `interval`: raw consensus points. With `interval` (30s, 1m, 5m, 1h, 1d or "
                        "seconds): OHLC candles (open = first price, close = last, volume = last 24h volume). "
                        "`sources=true` adds each source's own price line. Default range: the last 24 hours.")
def history(
    engine: EngineDep,
    coin_id: CoinId,
    start: Annotated[datetime | None, Query(description="ISO-8601 start (default: end - 24h).")] = None,
    end: Annotated[datetime | None, Query(description="ISO-8601 end (default: now).")] = None,
    interval: Annotated[str | None, Query(max_length=20, description="Candle size, e.g. 1m, 5m, 1h, 1d, "
                                                                   "or seconds.")] = None,
    sources: Annotated[bool, Query(description="Add each source's own price line.")] = False,
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
    points = candles = None
    if step is None:
        points = queries.history_points(engine, coin_id, begin, stop, MAX_POINTS + 1)
        if len(points) > MAX_POINTS:
            raise bad_parameter("interval", f"more than {MAX_POINTS} points in the range: pass an interval "
                                            "(e.g. interval=1h) or a shorter range")
    else:
        found = queries.history_candles(engine, coin_id, begin, stop, step, MAX_CANDLES + 1)
        if len(found) > MAX_CANDLES:
            raise bad_parameter("interval", f"more than {MAX_CANDLES} candles of {step}s in the range: "
                                            "pass a larger interval or a shorter range")
        candles = [CandleOut(time=c.time, open=c.open, high=c.high, low=c.low, close=c.close,
                             volume=c.volume, n=c.n) for c in found]
    lines = None
    if sources:
        lines = queries.source_lines(engine, coin_id, begin, stop, MAX_POINTS + 1)
        if sum(len(v) for v in lines.values()) > MAX_POINTS:
            raise bad_parameter("sources", f"more than {MAX_POINTS} source points in the range: "
                                           "pass a shorter range")
    return HistoryOut(coin=coin_id, start=begin, end=stop, interval=step, columns=POINT_COLUMNS,
                      points=points, candles=candles, sources=lines)
