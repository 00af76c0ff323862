"""CoinGecko API v3 ``GET /coins/{id}/market_chart``: a coin's past, fetched (I/O) and parsed (pure).

A body holds three series of ``[unix milliseconds, value]`` pairs, e.g. (CoinGecko's own example)::

    {"prices": [[1779027899041, 77953.82550382407], [1779028199661, 78052.87543398788]],
     "market_caps": [[1779027899041, 1560631481361.8042], ...],
     "total_volumes": [[1779027899041, 18688431751.857048], ...]}

Granularity is automatic: ``days=1`` gives 5-minutely points, 2 to 90 days hourly points, more than 90
days daily points (00:00 UTC); the last point is the current price. The keyless and demo API serve at most
the past 365 days: asking more is refused with error 10012 (HTTP 401). An unknown coin is HTTP 404
``{"error": "coin not found"}``; the other errors are CoinGecko's usual envelopes
(:func:`cryptoviz.sources.coingecko.check_envelope`).

The parser keeps every readable point and rejects the others with a reason (``not_a_pair``,
``bad_timestamp``, ``not_a_number``, ``not_positive``, ``negative``...), like the coin-list parsers. The
history types here (:class:`HistoryPoint`, :class:`History`) are shared by the other history parsers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, SourceError, TerminalSourceError, TransientSourceError
from cryptoviz.models import Rejection
from cryptoviz.sources.api import ApiSource
from cryptoviz.sources.base import RawPage, brief_text, printable
from cryptoviz.sources.coingecko import DEMO_KEY_BUDGET, KEYLESS_BUDGET, check_envelope
from cryptoviz.sources.fields import got, load_json
from cryptoviz.sources.http import HttpClient, http_status_error
from cryptoviz.sources.spec import RequestBudget

SOURCE = "coingecko"
MAX_DAYS = 365  # the keyless and demo API's reach into the past
RANGE_ERROR_CODE = 10012
SERIES = ("prices", "market_caps", "total_volumes")
_LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: later times cannot be datetimes


# --- what the history parsers return ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One past observation of a coin, in the requested currency."""

    at: datetime
    price: float
    market_cap: float | None = None
    volume_24h: float | None = None


@dataclass(slots=True)
class History:
    """A coin's points (oldest first, one per time) and the items that could not be read."""

    coin: str
    points: list[HistoryPoint] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def spacing(self) -> float | None:
        """Median seconds between consecutive points (``None`` with fewer than two): the granularity."""
        if len(self.points) < 2:
            return None
        stamps = [p.at.timestamp() for p in self.points]
        return float(statistics.median(b - a for a, b in zip(stamps, stamps[1:], strict=False)))


class UnknownCoinError(TerminalSourceError):
    """The source does not know this coin (or has no history for it): skip it, go on with the others."""


class HistoryRangeError(TerminalSourceError):
    """The request reaches further into the past than the source (or the key's plan) allows."""


def granularity(days: float) -> int:
    """Seconds between the points CoinGecko serves for ``days`` (automatic granularity)."""
    if days <= 1:
        return 300
    return 3600 if days <= 90 else 86_400


def range_error(days: object, said: str = "") -> HistoryRangeError:
    detail = f" ({said})" if said else ""
    return HistoryRangeError(
        SOURCE, f"the keyless and demo API serve at most the past {MAX_DAYS} days, {days} were asked{detail}; "
                f"use --days {MAX_DAYS} or less")


# --- pure parsing ----------------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def _number(value: Any) -> float:
    if value is None:
        raise _Bad("missing_field", "null")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad("not_a_number", got(value))
    try:
        number = float(value)
    except OverflowError:
        raise _Bad("not_a_number", "too large for a float") from None
    if not math.isfinite(number):
        raise _Bad("not_a_number", got(value))
    return number


def read_pair(item: Any) -> tuple[int, Any]:
    """``[ms, value]`` -> (ms, value); raises ``_Bad`` for anything else."""
    if not isinstance(item, list) or len(item) != 2:
        raise _Bad("not_a_pair", got(item) if not isinstance(item, list) else f"got a list of {len(item)}")
    try:
        ms = _number(item[0])
    except _Bad as bad:
        raise _Bad("bad_timestamp", bad.detail) from None
    if not 0 <= ms <= _LATEST_MS:
        raise _Bad("bad_timestamp", f"{ms!r:.30} ms is not a time")
    return int(ms), item[1]


def at_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _series(doc: dict[str, Any], name: str, coin: str, rejected: list[Rejection]) -> list[Any]:
    """The pairs of one series. Prices must be there; a market cap or volume series that is missing is
    empty, one that is not a list is rejected (the prices are still kept)."""
    value = doc.get(name)
    if isinstance(value, list):
        return value
    what = "nothing" if value is None else type(value).__name__
    if name == "prices":
        raise ParseError(f"{SOURCE}: expected {name!r} to be a list of [time, value] pairs, got {what}")
    if value is not None:
        rejected.append(Rejection(SOURCE, coin, name, "not_a_list", f"got {what}"))
    return []


def _values(doc: dict[str, Any], name: str, coin: str, rejected: list[Rejection]) -> dict[int, float | None]:
    """One series as time (ms) -> value; an unreadable pair is rejected (the others are kept)."""
    out: dict[int, float | None] = {}
    positive = name == "prices"
    for index, item in enumerate(_series(doc, name, coin, rejected)):
        try:
            ms, raw = read_pair(item)
            value = _number(raw)
            if positive and value <= 0:
                raise _Bad("not_positive", f"{value!r}")
            if value < 0:
                raise _Bad("negative", f"{value!r}")
        except _Bad as bad:
            rejected.append(Rejection(SOURCE, coin, f"{name}[{index}]", bad.reason, bad.detail))
            continue
        # A market cap of 0 is CoinGecko's "unknown" (no supply figures): kept as absent.
        out[ms] = None if value == 0 and name == "market_caps" else value
    return out


def history_error(doc: Any, status: int | None, coin: str) -> SourceError | None:
    """The error a market_chart error body stands for (``None``: not an error body)."""
    if not isinstance(doc, dict):
        return None
    inner: dict[str, Any] = doc["error"] if isinstance(doc.get("error"), dict) else doc
    found = inner.get("status")
    state: dict[str, Any] = found if isinstance(found, dict) else {}
    code, message = state.get("error_code"), state.get("error_message") or doc.get("error")
    text = brief_text(message) if message is not None else ""
    if code == RANGE_ERROR_CODE or "past 365 days" in text:
        return HistoryRangeError(
            SOURCE, f"the keyless and demo API serve at most the past {MAX_DAYS} days (error {RANGE_ERROR_CODE}: "
                    f"{text}); use --days {MAX_DAYS} or less")
    if text.lower() == "coin not found" or (status == 404 and "coin" in text.lower()):
        said = f" ({text})" if text and text.lower() != "coin not found" else ""
        return UnknownCoinError(SOURCE, f"coin {printable(coin)!r} not found{said}", status=status)
    try:
        check_envelope(doc, status)
    except SourceError as exc:
        return exc
    return None


def parse_market_chart(body: bytes, coin: str) -> History:
    """Parse a ``/coins/{id}/market_chart`` body into the coin's points, oldest first.

    A pair that cannot be read is a ``Rejection`` (field ``prices[i]``...); a point needs a positive price,
    its market cap and volume are kept when readable. Raises ``SourceError`` for an error envelope and
    ``ParseError`` for a body of another shape.
    """
    doc = load_json(body, SOURCE)
    error = history_error(doc, None, coin)
    if error is not None:
        raise error
    if not isinstance(doc, dict):
        raise ParseError(f"{SOURCE}: expected a JSON object with prices, market_caps and total_volumes, "
                         f"got {type(doc).__name__}")
    history = History(coin)
    prices, caps, volumes = (_values(doc, name, coin, history.rejected) for name in SERIES)
    history.points = [HistoryPoint(at_ms(ms), price, caps.get(ms), volumes.get(ms))
                      for ms, price in sorted(prices.items()) if price is not None]
    return history


# --- fetching --------------------------------------------------------------------------------------


def budget(settings: Settings) -> RequestBudget:
    """The requests a minute CoinGecko allows this configuration (a demo key raises them)."""
    key = settings.coingecko_api_key
    return DEMO_KEY_BUDGET if key is not None and key.get_secret_value() else KEYLESS_BUDGET


def check_chart(coin: str) -> Callable[[httpx.Response], int]:
    """The response check of one coin's chart: raises the error it stands for, else counts its prices."""

    def check(response: httpx.Response) -> int:
        status = response.status_code
        try:
            doc = load_json(response.content, SOURCE)
        except ParseError as exc:
            what = str(exc).removeprefix(f"{SOURCE}: ")
            if status >= 400:
                raise http_status_error(SOURCE, status, key_hint="check CRYPTOVIZ_COINGECKO_API_KEY",
                                        base_url_var="CRYPTOVIZ_COINGECKO_BASE_URL") from None
            raise TransientSourceError(SOURCE, f"{what} (HTTP {status}); the body was cut short? retry later",
                                       status=status) from None
        error = history_error(doc, status, coin)
        if error is not None:
            raise error
        if status >= 400:
            raise http_status_error(SOURCE, status, key_hint="check CRYPTOVIZ_COINGECKO_API_KEY",
                                    base_url_var="CRYPTOVIZ_COINGECKO_BASE_URL")
        if not isinstance(doc, dict) or not isinstance(doc.get("prices"), list):
            raise TerminalSourceError(SOURCE, "expected an object with a prices list; has the API changed? "
                                              "check CRYPTOVIZ_COINGECKO_BASE_URL", status=status)
        return len(doc["prices"])

    return check


class MarketChartClient(ApiSource):
    """Fetches ``market_chart`` bodies through the shared ``HttpClient`` (the ``coingecko`` rate limit and
    circuit breaker: one budget for live collection and backfill). It leaves the rate limit as it finds it."""

    name = SOURCE
    key_header = "x-cg-demo-api-key"

    def __init__(self, settings: Settings, http: HttpClient) -> None:
        super().__init__(settings, http, settings.coingecko_api_key)

    def url(self, coin_id: str) -> str:
        return f"{self._settings.coingecko_base_url.rstrip('/')}/coins/{quote(coin_id, safe='')}/market_chart"

    def fetch(self, coin_id: str, days: int, params: Mapping[str, str | int] | None = None) -> RawPage:
        """The chart of the past ``days`` days; raises ``SourceError`` (``UnknownCoinError``,
        ``HistoryRangeError``...) when there is none to have."""
        if days > MAX_DAYS:
            raise range_error(days)
        query: dict[str, str | int] = {"vs_currency": self._settings.vs_currency, "days": days, **(params or {})}
        page, _count = self._get_page(self.url(coin_id), query, check_chart(coin_id))
        return page

    def get(self, url: str, params: Mapping[str, str | int], check: Callable[[httpx.Response], int]) -> RawPage:
        """Any other GET of this API with its key, limit and breaker (the coin list of an empty database)."""
        page, _count = self._get_page(url, params, check)
        return page
