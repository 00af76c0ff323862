"""The history parsers: CoinGecko's ``market_chart`` and CoinMarketCap's ``quotes/historical``, on bodies
shaped like the public documentation, and their fetching through the shared HTTP client.

Fixtures (``tests/fixtures``): ``coingecko/market-chart-example.json`` is the example of CoinGecko's OpenAPI
description, unchanged; ``market-chart-5m.json``, ``-hourly.json`` and ``-daily.json`` are hand-made in its
shape with the automatic granularity's spacing (1, 2 and 92 days), the last point being "now";
``market-chart-malformed.json`` breaks points in every way; ``market-chart-error-365-days.json`` is the
keyless API's answer to more than a year (as quoted in public bug reports) and ``market-chart-coin-not-found
.json`` its 404. ``coinmarketcap/historical-docs-example.json`` is CoinMarketCap's documented example,
``historical-v2-hourly.json`` a hand-made answer keyed by id (as asked by ``id``), ``historical-error-1006
.json`` the free plan's refusal.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from cryptoviz.config import load_settings
from cryptoviz.errors import ParseError, SourceError, TerminalSourceError, TransientSourceError
from cryptoviz.sources import coingecko_history as cgh
from cryptoviz.sources import coinmarketcap_history as cmh
from cryptoviz.sources.coingecko_history import (
    HistoryRangeError,
    MarketChartClient,
    UnknownCoinError,
    granularity,
    parse_market_chart,
)
from cryptoviz.sources.coinmarketcap_history import QuotesHistoricalClient, parse_quotes_historical
from cryptoviz.sources.http import HttpClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CG = FIXTURES / "coingecko"
CMC = FIXTURES / "coinmarketcap"


def body(path: Path) -> bytes:
    return path.read_bytes()


@pytest.fixture(scope="module")
def chart_schema() -> Draft202012Validator:
    spec = json.loads((CG / "coingecko-demo-api.openapi.json").read_text())
    return Draft202012Validator(spec["components"]["schemas"]["CoinsMarketChart"])


# --- CoinGecko: parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["example", "5m", "hourly", "daily"])
def test_the_fixtures_have_the_documented_shape(name: str, chart_schema: Draft202012Validator) -> None:
    chart_schema.validate(json.loads((CG / f"market-chart-{name}.json").read_text()))


def test_the_documented_example_parses_exactly() -> None:
    history = parse_market_chart(body(CG / "market-chart-example.json"), "bitcoin")
    assert history.coin == "bitcoin" and history.rejected == []
    first, second = history.points
    assert first.at == datetime(2026, 5, 17, 14, 24, 59, 41_000, tzinfo=UTC)
    assert (first.price, first.market_cap, first.volume_24h) == (77953.82550382407, 1560631481361.8042,
                                                                 18688431751.857048)
    assert second.at - first.at == timedelta(seconds=300.62)
    assert second.price == 78052.87543398788


@pytest.mark.parametrize(("name", "points", "spacing"), [("5m", 289, 300), ("hourly", 49, 3600),
                                                          ("daily", 93, 86_400)])
def test_the_spacing_says_the_granularity(name: str, points: int, spacing: int) -> None:
    history = parse_market_chart(body(CG / f"market-chart-{name}.json"), "bitcoin")
    assert len(history.points) == points and not history.rejected
    assert history.spacing() == pytest.approx(spacing)
    times = [p.at for p in history.points]
    assert times == sorted(times)
    assert all(p.price > 0 and p.volume_24h is not None for p in history.points)


def test_a_market_cap_of_zero_is_unknown() -> None:
    history = parse_market_chart(body(CG / "market-chart-hourly.json"), "bitcoin")
    assert history.points[10].market_cap is None
    assert history.points[11].market_cap is not None


def test_daily_points_are_at_midnight_utc_but_the_last_one() -> None:
    history = parse_market_chart(body(CG / "market-chart-daily.json"), "bitcoin")
    assert all(p.at.hour == p.at.minute == p.at.second == 0 for p in history.points[:-1])
    assert history.points[-1].at == datetime(2026, 5, 18, 12, 47, 5, 123_000, tzinfo=UTC)
    assert all(isinstance(p.price, float) for p in history.points)  # JSON integers come out as floats


def test_malformed_points_are_rejected_with_reasons_and_the_rest_is_kept() -> None:
    history = parse_market_chart(body(CG / "market-chart-malformed.json"), "bitcoin")
    reasons = {r.field: r.reason for r in history.rejected}
    assert reasons == {
        "prices[1]": "not_a_number", "prices[2]": "not_a_pair", "prices[3]": "not_a_pair",
        "prices[4]": "not_positive", "prices[5]": "missing_field", "prices[6]": "bad_timestamp",
        "prices[7]": "bad_timestamp", "prices[8]": "not_positive", "prices[9]": "bad_timestamp",
        "prices[12]": "not_a_pair", "market_caps[1]": "negative", "market_caps[2]": "not_a_number",
        "total_volumes": "not_a_list",
    }
    assert all(r.source == "coingecko" and r.coin == "bitcoin" for r in history.rejected)
    # two points stand; of two points at the same time the later one in the body wins
    assert [(p.price, p.market_cap, p.volume_24h) for p in history.points] == [
        (77953.82550382407, 1560631481361.8042, None), (78110.75, None, None)]


@pytest.mark.parametrize(("doc", "error", "words"), [
    ("market-chart-error-365-days.json", HistoryRangeError, ["365 days", "error 10012", "--days 365"]),
    ("market-chart-coin-not-found.json", UnknownCoinError, ["coin 'bitcoin' not found"]),
    ("error-429.json", TransientSourceError, ["rate limit"]),
    ("error-invalid-key.json", TerminalSourceError, ["CRYPTOVIZ_COINGECKO_API_KEY"]),
])
def test_error_bodies_are_source_errors(doc: str, error: type[SourceError], words: list[str]) -> None:
    with pytest.raises(error) as raised:
        parse_market_chart(body(CG / doc), "bitcoin")
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize("raw", [b"[]", b"{}", b'{"prices": {}}', b"<html>blocked</html>", b"", b'"x"'])
def test_other_shapes_are_parse_errors(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_market_chart(raw, "bitcoin")


@pytest.mark.parametrize(("days", "seconds"), [(1, 300), (2, 3600), (30, 3600), (90, 3600), (91, 86_400),
                                               (365, 86_400)])
def test_granularity_follows_the_documented_rules(days: int, seconds: int) -> None:
    assert granularity(days) == seconds
    assert cmh.interval_for(days)[1] == seconds


# --- CoinGecko: fetching -----------------------------------------------------------------------------


def _client(handler: Any, **settings: Any) -> tuple[MarketChartClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        result: httpx.Response = handler(request)
        return result

    config = load_settings(coingecko_base_url="https://api.example.test/api/v3", http_retries=1, **settings)
    http = HttpClient(config, httpx.Client(transport=httpx.MockTransport(record)), sleep=lambda _s: None)
    return MarketChartClient(config, http), seen


def test_fetch_asks_the_chart_of_the_coin_with_the_key_header() -> None:
    client, seen = _client(lambda r: httpx.Response(200, content=body(CG / "market-chart-example.json")),
                           coingecko_api_key="CG-demo-key-1234")
    page = client.fetch("bitcoin", 30)
    assert parse_market_chart(page.body, "bitcoin").points
    (request,) = seen
    assert request.url.path == "/api/v3/coins/bitcoin/market_chart"
    assert dict(request.url.params) == {"vs_currency": "usd", "days": "30"}
    assert request.headers["x-cg-demo-api-key"] == "CG-demo-key-1234"


def test_fetch_refuses_more_than_a_year_without_asking() -> None:
    client, seen = _client(lambda r: httpx.Response(500))
    with pytest.raises(HistoryRangeError, match="at most the past 365 days, 400 were asked; use --days 365"):
        client.fetch("bitcoin", 400)
    assert seen == []


@pytest.mark.parametrize(("status", "doc", "error"), [
    (401, "market-chart-error-365-days.json", HistoryRangeError),
    (404, "market-chart-coin-not-found.json", UnknownCoinError),
])
def test_fetch_turns_the_answers_into_their_errors(status: int, doc: str, error: type[SourceError]) -> None:
    client, seen = _client(lambda r: httpx.Response(status, content=body(CG / doc)))
    with pytest.raises(error):
        client.fetch("bitcoin", 30)
    assert len(seen) == 1  # terminal: never retried


def test_a_body_cut_short_is_retried() -> None:
    whole = body(CG / "market-chart-example.json")
    answers = [httpx.Response(200, content=whole[:40]), httpx.Response(200, content=whole)]
    client, seen = _client(lambda r: answers.pop(0))
    assert client.fetch("bitcoin", 1).body == whole
    assert len(seen) == 2


def test_a_wrong_base_url_is_not_an_unknown_coin() -> None:
    client, _seen = _client(lambda r: httpx.Response(404, json={"error": "Incorrect path"}))
    with pytest.raises(TerminalSourceError) as raised:
        client.fetch("bitcoin", 30)
    assert not isinstance(raised.value, UnknownCoinError)
    assert "CRYPTOVIZ_COINGECKO_BASE_URL" in str(raised.value)


def test_the_client_leaves_the_shared_rate_limit_alone() -> None:
    config = load_settings()
    http = HttpClient(config, httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))))
    live = http.set_rate_limit("coingecko", 10, 2)
    MarketChartClient(config, http)
    assert http.limiter("coingecko") is live
    assert cgh.budget(config).per_minute == 10
    assert cgh.budget(load_settings(coingecko_api_key="CG-demo-key-1234")).per_minute == 30


# --- CoinMarketCap -----------------------------------------------------------------------------------


def test_cmc_documented_example_parses() -> None:
    history = parse_quotes_historical(body(CMC / "historical-docs-example.json"), "1", "usd")
    assert not history.rejected
    assert [(p.at, p.price, p.market_cap, p.volume_24h) for p in history.points] == [
        (datetime(2018, 6, 22, 19, 29, 37, tzinfo=UTC), 6242.29, 106800038746.48, 4681670000.0),
        (datetime(2018, 6, 22, 19, 34, 33, tzinfo=UTC), 6242.82, 106809106575.84, 4682330000.0)]


def test_cmc_answer_keyed_by_id_parses() -> None:
    history = parse_quotes_historical(body(CMC / "historical-v2-hourly.json"), "1", "usd")
    assert len(history.points) == 24 and history.spacing() == 3600
    assert history.points[0].at == datetime(2026, 5, 17, tzinfo=UTC)


def test_cmc_malformed_quotes_are_rejected_with_reasons() -> None:
    doc = json.loads((CMC / "historical-v2-hourly.json").read_text())
    quotes = doc["data"]["1"]["quotes"]
    quotes[0]["quote"]["USD"]["price"] = "n/a"
    quotes[1]["quote"] = {"EUR": quotes[1]["quote"]["USD"]}
    quotes[2] = "broken"
    quotes[3]["quote"]["USD"]["price"] = -3
    quotes[4]["quote"]["USD"]["market_cap"] = -3
    del quotes[5]["quote"]["USD"]["timestamp"]
    del quotes[5]["timestamp"]
    history = parse_quotes_historical(json.dumps(doc).encode(), "1", "usd")
    assert {(r.field, r.reason) for r in history.rejected} == {
        ("quotes[0].quote.USD.price", "not_a_number"), ("quotes[1].quote.USD", "missing_field"),
        ("quotes[2].item", "not_an_object"), ("quotes[3].quote.USD.price", "not_positive"),
        ("quotes[4].quote.USD.market_cap", "negative"), ("quotes[5].timestamp", "missing_field")}
    assert len(history.points) == 18


def test_cmc_free_plan_refusal_names_the_plan() -> None:
    with pytest.raises(TerminalSourceError) as raised:
        parse_quotes_historical(body(CMC / "historical-error-1006.json"), "1", "usd")
    message = str(raised.value)
    assert "error 1006" in message and "free Basic plan" in message and "Hobbyist" in message
    assert "--source coingecko" in message and "\n" not in message


@pytest.mark.parametrize(("doc", "error"), [
    ({"status": {"error_code": 400, "error_message": 'Invalid value for "id": "99999999"'}}, UnknownCoinError),
    ({"status": {"error_code": 400, "error_message": "Your plan is limited to 1 month of historical data"}},
     HistoryRangeError),
    ({"status": {"error_code": 1008, "error_message": "rate"}}, TransientSourceError),
])
def test_cmc_other_envelopes(doc: dict[str, Any], error: type[SourceError]) -> None:
    with pytest.raises(error):
        parse_quotes_historical(json.dumps(doc).encode(), "99999999", "usd")


def test_cmc_fetch_asks_by_id_over_the_range_with_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body(CMC / "historical-v2-hourly.json"))

    config = load_settings(coinmarketcap_base_url="https://pro.example.test", coinmarketcap_api_key="cmc-key-5678")
    http = HttpClient(config, httpx.Client(transport=httpx.MockTransport(handler)))
    end = datetime(2026, 5, 18, tzinfo=UTC)
    page = QuotesHistoricalClient(config, http).fetch("1", end - timedelta(days=30), end)
    assert parse_quotes_historical(page.body, "1", "usd").points
    params = dict(seen[0].url.params)
    assert seen[0].url.path == "/v2/cryptocurrency/quotes/historical"
    assert params == {"id": "1", "time_start": "2026-04-18T00:00:00+00:00", "time_end": "2026-05-18T00:00:00+00:00",
                      "interval": "hourly", "count": "722", "convert": "USD"}
    assert seen[0].headers["X-CMC_PRO_API_KEY"] == "cmc-key-5678"


def test_cmc_fetch_of_a_free_key_is_refused_once() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(403, content=body(CMC / "historical-error-1006.json"))

    config = load_settings(coinmarketcap_api_key="cmc-key-5678")
    http = HttpClient(config, httpx.Client(transport=httpx.MockTransport(handler)))
    end = datetime(2026, 5, 18, tzinfo=UTC)
    with pytest.raises(TerminalSourceError, match="free Basic plan"):
        QuotesHistoricalClient(config, http).fetch("1", end - timedelta(days=1), end)
    assert len(seen) == 1
