"""The read-only REST API, the live stream, the metrics and the built-in dashboard.

``create_app(engine, settings)`` builds a FastAPI application over an existing database; it never
writes. Serve it with :mod:`cryptoviz.api.server` (``cryptoviz serve``, or ``cryptoviz run`` alongside
the job).
"""

from __future__ import annotations

import hmac
import importlib.resources
import logging
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cryptoviz import __version__, metrics
from cryptoviz.api import queries
from cryptoviz.api.stream import snapshot_events
from cryptoviz.config import Settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
MAX_POINTS = 50_000  # raw points (or source points) in one history answer
MAX_CANDLES = 10_000
DEFAULT_RANGE = timedelta(hours=24)
STREAM_ROWS = 100
POINT_COLUMNS = ["observed_at", "price", "market_cap", "volume_24h", "confidence"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)


def plotly_js() -> Path:
    """The plotly.min.js bundled with the installed plotly package (served locally, never from a CDN)."""
    return Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))


_BEARER = HTTPBearer(auto_error=False, description="The value of CRYPTOVIZ_API_TOKEN.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
CoinId = Annotated[str, PathParam(min_length=1, max_length=200, description="Canonical coin id, e.g. bitcoin.")]


def parse_interval(value: str) -> int:
    """``30s``, ``1m``, ``5m``, ``1h``, ``1d``, ``1w`` or plain seconds -> seconds (1 s to 366 days)."""
    match = _INTERVAL.match(value)
    if not match:
        raise ValueError(f"expected a duration such as 30s, 1m, 5m, 1h, 1d or a number of seconds, got {value!r}")
    seconds = int(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if not 1 <= seconds <= 366 * 86_400:
        raise ValueError(f"must be between 1 second and 366 days, got {value!r}")
    return seconds


# --- errors ------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered as ``{"error": ..., "detail": ...}`` (plus ``parameter`` for a bad parameter)."""

    def __init__(self, status: int, error: str, detail: str, *, parameter: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.parameter, self.headers = parameter, headers


def bad_parameter(parameter: str, detail: str) -> ApiError:
    return ApiError(422, "invalid parameter", detail, parameter=parameter)


class ErrorOut(BaseModel):
    error: str = Field(description="Short error kind, e.g. 'not found', 'invalid parameter', 'unauthorized'.")
    detail: str = Field(description="What went wrong, in words.")


class ParameterErrorOut(ErrorOut):
    parameter: str = Field(description="The query or path parameter that was rejected.")


def _error_body(exc: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.error}
    if exc.parameter is not None:
        body["parameter"] = exc.parameter
    body["detail"] = exc.detail
    return body


# --- response models ---------------------------------------------------------------------------------


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


# --- the application ---------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or wrong bearer token (when CRYPTOVIZ_API_TOKEN is set)."},
    422: {"model": ParameterErrorOut, "description": "A parameter is invalid; `parameter` names it."},
    503: {"model": ErrorOut, "description": "The database does not answer."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "Unknown coin."}}

DESCRIPTION = """\
Read-only access to what CryptoViz stored: the current consensus per coin, its history (raw points or
OHLC candles), each source's own values, the health of the sources, and a live stream.

* Times are ISO-8601 and UTC.
* Errors are JSON: `{"error": ..., "detail": ...}`; a bad parameter adds `"parameter"`.
* When `CRYPTOVIZ_API_TOKEN` is set, `/api/*` and `/metrics` need `Authorization: Bearer <token>`
  (`/api/stream` also accepts `?token=`, since a browser's EventSource cannot send headers).
"""


def _api_token(settings: Settings) -> str | None:
    secret = getattr(settings, "api_token", None)
    if secret is None:
        return None
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return value or None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_app(engine: sa.Engine, settings: Settings, *, poll_interval: float = 2.0) -> FastAPI:
    """The API and dashboard over ``engine`` (read-only). ``poll_interval``: seconds between stream polls."""
    if poll_interval <= 0:
        raise ValueError("poll_interval must be > 0")
    token = _api_token(settings)
    app = FastAPI(
        title="CryptoViz API", version=__version__, description=DESCRIPTION,
        openapi_tags=[
            {"name": "coins", "description": "Current values, per-source values and history."},
            {"name": "sources", "description": "Health of the data sources."},
            {"name": "live", "description": "Server-Sent Events."},
            {"name": "operations", "description": "Health check and Prometheus metrics."},
        ],
    )
    app.state.engine = engine
    app.state.shutdown = threading.Event()  # set by the server on exit: open streams end

    def check(request: Request, credentials: HTTPAuthorizationCredentials | None, *, query: bool) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else None
        if given is None and query:
            given = request.query_params.get("token")
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "unauthorized",
                           "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})

    def require_token(request: Request, credentials: Credentials) -> None:
        check(request, credentials, query=False)

    def require_token_or_query(request: Request, credentials: Credentials) -> None:
        check(request, credentials, query=True)

    protected = [Depends(require_token)] if token else []
    protected_stream = [Depends(require_token_or_query)] if token else []

    # -- errors --

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_error_body(exc), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "header", "body")]
        parameter = loc[0] if loc else "?"
        detail = str(first.get("msg", "invalid value"))
        if "input" in first and isinstance(first["input"], str | int | float):
            detail += f" (got {str(first['input'])[:100]!r})"
        return JSONResponse(_error_body(bad_parameter(parameter, detail)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "error")
        return JSONResponse({"error": error, "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(sa.exc.SQLAlchemyError)
    async def _database_error(_request: Request, exc: sa.exc.SQLAlchemyError) -> JSONResponse:
        logger.warning("API: database error %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300])
        return JSONResponse({"error": "database unavailable",
                             "detail": f"the database query failed ({type(exc).__name__})"}, status_code=503)

    # -- coins --

    @app.get("/api/coins", response_model=CoinPage, tags=["coins"], dependencies=protected, responses=_ERRORS,
             summary="Current values of all coins",
             description="The current consensus of each coin, sorted and paginated. NULLs sort last.")
    def list_coins(
        sort: Annotated[queries.SortKey, Query(description="Sort key.")] = "market_cap",
        order: Annotated[queries.Order, Query(description="Sort order.")] = "desc",
        limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1 to 1000).")] = 100,
        offset: Annotated[int, Query(ge=0, description="Rows to skip.")] = 0,
    ) -> CoinPage:
        total, rows = queries.list_coins(engine, sort=sort, order=order, limit=limit, offset=offset)
        return CoinPage(total=total, limit=limit, offset=offset, sort=sort, order=order,
                        coins=[CoinRow.model_validate(r) for r in rows])

    def unknown(coin_id: str) -> ApiError:
        return ApiError(404, "not found", f"unknown coin {coin_id!r}")

    @app.get("/api/coins/{coin_id}", response_model=CoinDetail, tags=["coins"], dependencies=protected,
             responses={**_ERRORS, **_NOT_FOUND}, summary="One coin, with each source's newest value")
    def get_coin(coin_id: CoinId) -> CoinDetail:
        row = queries.get_coin(engine, coin_id)
        if row is None:
            raise unknown(coin_id)
        quotes = [SourceQuoteOut.model_validate(q) for q in queries.latest_source_quotes(engine, coin_id)]
        return CoinDetail.model_validate({**row, "source_quotes": quotes})

    @app.get("/api/coins/{coin_id}/history", response_model=HistoryOut, tags=["coins"], dependencies=protected,
             responses={**_ERRORS, **_NOT_FOUND}, summary="History: raw points or OHLC candles",
             description="Without `interval`: raw consensus points. With `interval` (30s, 1m, 5m, 1h, 1d or "
                         "seconds): OHLC candles (open = first price, close = last, volume = last 24h volume). "
                         "`sources=true` adds each source's own price line. Default range: the last 24 hours.")
    def history(
        coin_id: CoinId,
        start: Annotated[datetime | None, Query(description="ISO-8601 start (default: end - 24h).")] = None,
        end: Annotated[datetime | None, Query(description="ISO-8601 end (default: now).")] = None,
        interval: Annotated[str | None, Query(max_length=20, description="Candle size, e.g. 1m, 5m, 1h, 1d, "
                                                                       "or seconds.")] = None,
        sources: Annotated[bool, Query(description="Add each source's own price line.")] = False,
    ) -> HistoryOut:
        stop = _utc(end) if end is not None else datetime.now(UTC)
        begin = _utc(start) if start is not None else stop - DEFAULT_RANGE
        if begin >= stop:
            raise bad_parameter("start", f"start ({begin.isoformat()}) must be before end ({stop.isoformat()})")
        step: int | None = None
        if interval is not None:
            try:
                step = parse_interval(interval)
            except ValueError as exc:
                raise bad_parameter("interval", str(exc)) from None
        if not queries.coin_exists(engine, coin_id):
            raise unknown(coin_id)
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

    # -- sources --

    @app.get("/api/sources", response_model=SourcesOut, tags=["sources"], dependencies=protected,
             responses=_ERRORS, summary="Health of each source over the last cycles",
             description="From `pipeline_runs`: last success, last error, failures in a row, circuit breaker, "
                         "fetched / rejected / used in the last cycle.")
    def sources_health(
        runs: Annotated[int, Query(ge=1, le=1000, description="Recorded cycles to consider.")] = 20,
    ) -> SourcesOut:
        return SourcesOut.model_validate(queries.sources_health(engine, runs))

    # -- live --

    def encode_snapshot(observed_at: datetime | None) -> str:
        total, rows = queries.list_coins(engine, sort="market_cap", order="desc", limit=STREAM_ROWS)
        return StreamSnapshot(observed_at=observed_at, total=total,
                              coins=[CoinRow.model_validate(r) for r in rows]).model_dump_json()

    @app.get("/api/stream", tags=["live"], dependencies=protected_stream, response_class=StreamingResponse,
             summary="Live snapshots (Server-Sent Events)",
             description=f"`event: snapshot` with the top {STREAM_ROWS} coins by market cap (JSON: observed_at, "
                         f"total, coins) at once and whenever a newer observation is stored; a `: keepalive` "
                         f"comment on every other poll ({poll_interval:g}s). With a token set, pass it as "
                         "`?token=` (EventSource cannot send headers) or as a bearer header.",
             responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                              "description": "An endless event stream."}, 401: _ERRORS[401]})
    async def stream() -> StreamingResponse:
        events = snapshot_events(engine, encode_snapshot, poll_interval=poll_interval, stop=app.state.shutdown)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- operations --

    @app.get("/healthz", response_model=HealthOut, tags=["operations"], summary="Liveness and database check",
             responses={503: {"model": HealthOut, "description": "The database does not answer."}})
    def healthz() -> Any:
        try:
            queries.ping(engine)
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("healthz: database error %s", type(exc).__name__)
            return JSONResponse({"status": "error", "database": "unavailable"}, status_code=503)
        return HealthOut(status="ok", database="ok")

    @app.get("/metrics", tags=["operations"], dependencies=protected, response_class=Response,
             summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format."}, 401: _ERRORS[401]})
    def prometheus_metrics() -> Response:
        try:
            state = queries.database_state(engine)
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("metrics: database error %s", type(exc).__name__)
            metrics.set_database_state(up=False)
        else:
            metrics.set_database_state(up=True, rows=state.rows, last_observation=state.last_observation,
                                       last_run=state.last_run, sources_up=state.sources_up,
                                       dlq_messages=state.dlq_messages)
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    # -- dashboard --

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly() -> FileResponse:
        path = plotly_js()
        if not path.is_file():
            raise ApiError(404, "not found", f"plotly.min.js is missing from the plotly package ({path})")
        return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
