"""CoinGecko ``/coins/markets``: the fixture against the official schema, exact parsed values, errors, fetch."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from pydantic import SecretStr

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, TerminalSourceError, TransientSourceError
from cryptoviz.models import Rejection
from cryptoviz.sources.coingecko import CoinGeckoSource, page_plan, parse_markets
from cryptoviz.sources.http import HttpClient
from tests.unit.test_http import FakeClock, Reply, Script, ScriptedServer, Seen, ServerPool, make_http

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "coingecko"
T = datetime(2026, 5, 18, 12, 50, 0, tzinfo=UTC)
KEY = "CG-test-demo-key-5f3a9c"


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    with ServerPool() as pool:
        yield pool.start


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def items() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(body("markets-usd-page1.json"))
    return loaded


# --- the fixture is what the official spec describes ---------------------------------------------


def _openapi_to_jsonschema(node: Any, spec: dict[str, Any]) -> Any:
    """Inline ``$ref``s to components and turn OpenAPI 3.0 ``nullable: true`` into a JSON-schema type."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n, spec) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _openapi_to_jsonschema(target, spec)
    out = {k: _openapi_to_jsonschema(v, spec) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@pytest.fixture(scope="module")
def markets_schema() -> Any:
    spec = json.loads(body("coingecko-demo-api.openapi.json"))
    response = spec["paths"]["/coins/markets"]["get"]["responses"]["200"]["content"]["application/json"]
    return _openapi_to_jsonschema(response["schema"], spec)


def test_fixture_matches_the_official_coins_markets_schema(markets_schema: Any) -> None:
    jsonschema.Draft202012Validator.check_schema(markets_schema)
    jsonschema.validate(items(), markets_schema, cls=jsonschema.Draft202012Validator)


def test_schema_check_would_catch_a_wrong_type(markets_schema: Any) -> None:
    bad = items()
    bad[0]["current_price"] = "77671"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, markets_schema, cls=jsonschema.Draft202012Validator)


# --- exact values --------------------------------------------------------------------------------


def test_parses_every_coin_of_the_fixture() -> None:
    result = parse_markets(body("markets-usd-page1.json"), T, "usd")
    assert result.rejected == []
    assert [q.source_id for q in result.quotes] == [
        "bitcoin", "ethereum", "tether", "solana", "dogecoin", "baby-doge-coin"]
    assert {q.source for q in result.quotes} == {"coingecko"}
    assert {q.currency for q in result.quotes} == {"usd"}
    assert {q.collected_at for q in result.quotes} == {T}


def test_bitcoin_exact_values() -> None:
    btc = parse_markets(body("markets-usd-page1.json"), T, "USD").quotes[0]
    assert (btc.source_id, btc.slug, btc.symbol, btc.name, btc.rank) == ("bitcoin", "bitcoin", "BTC", "Bitcoin", 1)
    assert btc.price == 77671.0
    assert isinstance(btc.price, float)
    assert btc.market_cap == 1555886872303.0
    assert btc.volume_24h == 33235034316.0
    assert btc.change_1h == 0.5823392426906319
    assert btc.change_24h == -0.9530164743774191  # the *_in_currency value wins over the plain one
    assert btc.change_7d == -4.042267423689584
    assert (btc.circulating_supply, btc.total_supply, btc.max_supply) == (20030493.0, 20030843.0, 21000000.0)
    assert btc.last_updated == datetime(2026, 5, 18, 12, 49, 21, 599000, tzinfo=UTC)
    assert btc.currency == "usd"


def test_integers_become_floats_and_null_max_supply_stays_none() -> None:
    eth = parse_markets(body("markets-usd-page1.json"), T, "usd").quotes[1]
    assert eth.price == 3012.0 and isinstance(eth.price, float)
    assert eth.circulating_supply == 120697499.0 and isinstance(eth.circulating_supply, float)
    assert eth.max_supply is None
    usdt = parse_markets(body("markets-usd-page1.json"), T, "usd").quotes[2]
    assert (usdt.symbol, usdt.price, usdt.market_cap) == ("USDT", 1.0, 151207734521.0)


def test_older_item_without_in_currency_fields() -> None:
    sol = parse_markets(body("markets-usd-page1.json"), T, "usd").quotes[3]
    assert sol.change_1h is None
    assert sol.change_24h == 1.16259  # falls back to price_change_percentage_24h
    assert sol.change_7d is None
    assert sol.price == 171.42


def test_newer_item_with_unknown_fields() -> None:
    doge = parse_markets(body("markets-usd-page1.json"), T, "usd").quotes[4]
    assert (doge.symbol, doge.price, doge.rank, doge.change_7d) == ("DOGE", 0.213455, 9, -8.4)


def test_tiny_price_and_huge_supply() -> None:
    tiny = parse_markets(body("markets-usd-page1.json"), T, "usd").quotes[5]
    assert tiny.price == 1.2e-11
    assert tiny.rank is None
    assert tiny.volume_24h == 0.0
    assert tiny.change_1h is None
    assert tiny.circulating_supply == 1.6135587639345497e20
    assert tiny.max_supply == 4.2e17


def test_malformed_items_are_rejected_and_the_rest_kept() -> None:
    good = items()
    btc = good[0]
    bad: list[Any] = [
        btc,
        {**btc, "id": "price-string", "current_price": "abc"},
        {k: v for k, v in btc.items() if k != "id"},
        42,
        {**btc, "id": "bad-time", "last_updated": "yesterday"},
        {**btc, "id": "half-rank", "market_cap_rank": 1.5},
        {**btc, "id": "bool-cap", "market_cap": True},
        {**btc, "id": "numeric-symbol", "symbol": 7},
        {**btc, "id": "   "},
        {**btc, "id": "negative", "current_price": -5},  # a range problem: validation's call, not parsing's
        {**btc, "id": "float-rank", "market_cap_rank": 3.0},
    ]
    result = parse_markets(orjson.dumps(bad), T, "usd")
    assert [q.source_id for q in result.quotes] == ["bitcoin", "negative", "float-rank"]
    assert result.quotes[1].price == -5.0
    assert result.quotes[2].rank == 3
    assert result.rejected == [
        Rejection("coingecko", "price-string", "current_price", "not_a_number", "got str 'abc'"),
        Rejection("coingecko", "item 2", "id", "missing_field", ""),
        Rejection("coingecko", "item 3", "item", "not_an_object", "got int"),
        Rejection("coingecko", "bad-time", "last_updated", "bad_timestamp", "not ISO-8601: 'yesterday'"),
        Rejection("coingecko", "half-rank", "market_cap_rank", "not_an_integer", "got float 1.5"),
        Rejection("coingecko", "bool-cap", "market_cap", "not_a_number", "got bool True"),
        Rejection("coingecko", "numeric-symbol", "symbol", "not_a_string", "got int 7"),
        Rejection("coingecko", "item 8", "id", "missing_field", "blank string"),
    ]


def test_empty_list_parses_to_nothing() -> None:
    result = parse_markets(b"[]", T, "usd")
    assert result.quotes == [] and result.rejected == []


# --- error bodies --------------------------------------------------------------------------------


def test_rate_limit_envelope_is_transient() -> None:
    with pytest.raises(TransientSourceError) as info:
        parse_markets(body("error-429.json"), T, "usd")
    assert info.value.status == 429
    assert info.value.retry_after == 60.0
    assert str(info.value).startswith("coingecko: rate limit exceeded (error 429: You've exceeded the Rate Limit.")
    assert "CRYPTOVIZ_COINGECKO_API_KEY" in str(info.value)


def test_invalid_key_envelope_is_terminal() -> None:
    with pytest.raises(TerminalSourceError) as info:
        parse_markets(body("error-invalid-key.json"), T, "usd")
    assert str(info.value).startswith("coingecko: request refused (error 10011: Invalid API Key.")
    assert "check CRYPTOVIZ_COINGECKO_API_KEY" in str(info.value)


def test_nested_envelope_and_plain_error_are_understood() -> None:
    nested = orjson.dumps({"error": {"status": {"error_code": 10002, "error_message": "API Key Missing"}}})
    with pytest.raises(TerminalSourceError, match="error 10002: API Key Missing"):
        parse_markets(nested, T, "usd")
    with pytest.raises(TerminalSourceError, match="check CRYPTOVIZ_VS_CURRENCY"):
        parse_markets(body("error-vs-currency.json"), T, "usd")
    with pytest.raises(TransientSourceError, match="server error"):
        parse_markets(b'{"status": {"error_code": 503, "error_message": "down"}}', T, "usd")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body("cloudflare-1020.html"), "coingecko: expected JSON, got HTML (Cloudflare block?)"),
        (b"", "coingecko: expected JSON, got an empty body"),
        (b'[{"id": "bitcoin"', "coingecko: expected JSON, got invalid JSON"),
        (b'{"coins": []}', "coingecko: expected a JSON list of coins, got dict"),
        (b'"hello"', "coingecko: expected a JSON list of coins, got str"),
    ],
)
def test_unusable_bodies_raise_parse_error(raw: bytes, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_markets(raw, T, "usd")
    assert str(info.value).startswith(message)


# --- paging --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("top_n", "plan"),
    [(1, (1, 1)), (100, (100, 1)), (250, (250, 1)), (300, (150, 2)), (1000, (250, 4)), (1001, (201, 5)),
     ("all", (250, 200))],
)
def test_page_plan(top_n: int | str, plan: tuple[int, int]) -> None:
    assert page_plan(top_n) == plan


# --- fetching from a local server ----------------------------------------------------------------


def fake_markets(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` schema-shaped items, ids coin-<start>..; built from the fixture's bitcoin."""
    template = items()[0]
    return [{**copy.deepcopy(template), "id": f"coin-{i}", "symbol": f"c{i}", "name": f"Coin {i}",
             "market_cap_rank": i + 1} for i in range(start, start + n)]


def paged(total: int, per_page_cap: int = 250) -> Any:
    """A server answering /coins/markets like CoinGecko for ``total`` coins."""
    def reply(seen: Seen) -> Reply:
        if seen.path != "/api/v3/coins/markets":
            return Reply(404, {"error": "Not Found"})
        page, per_page = int(seen.params["page"]), min(per_page_cap, int(seen.params["per_page"]))
        first = (page - 1) * per_page
        return Reply(200, fake_markets(max(0, min(per_page, total - first)), first))
    return reply


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(coingecko_base_url=f"{url}/api/v3", **overrides)


def source_for(settings: Settings) -> tuple[CoinGeckoSource, HttpClient, FakeClock]:
    clock = FakeClock()
    http = make_http(settings, clock)
    return CoinGeckoSource(settings, http, now=lambda: T), http, clock


def test_fetch_top_300_asks_two_pages_with_the_key_header(serve: Any) -> None:
    server = serve(paged(10_000))
    source, http, _ = source_for(settings_for(server.url, top_n=300, coingecko_api_key=SecretStr(KEY)))
    pages = source.fetch()
    assert len(server.seen) == 2
    for number, seen in enumerate(server.seen, start=1):
        assert seen.path == "/api/v3/coins/markets"
        assert seen.params == {"vs_currency": "usd", "order": "market_cap_desc", "per_page": "150",
                               "page": str(number), "price_change_percentage": "1h,24h,7d"}
        assert seen.headers["x-cg-demo-api-key"] == KEY
        assert seen.headers["accept"] == "application/json"
    assert [(p.source, p.extension, p.fetched_at) for p in pages] == [("coingecko", "json", T)] * 2
    assert pages[1].url.endswith("page=2&price_change_percentage=1h%2C24h%2C7d")
    quotes = [q for p in pages for q in source.parse(p).quotes]
    assert len(quotes) == 300
    assert quotes[0].source_id == "coin-0" and quotes[-1].source_id == "coin-299"
    limiter = http.limiter("coingecko")
    assert limiter is not None and (limiter.rate_per_minute, limiter.burst) == (30, 5)


def test_fetch_without_key_sends_no_key_header_and_uses_the_keyless_rate(serve: Any) -> None:
    server = serve(paged(10_000))
    source, http, clock = source_for(settings_for(server.url, top_n=1000))
    pages = source.fetch()
    assert len(pages) == 4
    assert "x-cg-demo-api-key" not in server.seen[0].headers
    limiter = http.limiter("coingecko")
    assert limiter is not None and (limiter.rate_per_minute, limiter.burst) == (10, 2)
    assert clock.sleeps == [pytest.approx(6.0), pytest.approx(6.0)]  # 10/min after a burst of 2


@pytest.mark.parametrize(("total", "requests"), [(503, 3), (500, 3), (0, 1)])
def test_fetch_all_pages_until_a_short_or_empty_page(serve: Any, total: int, requests: int) -> None:
    server = serve(paged(total))
    source, _, _ = source_for(settings_for(server.url, top_n="all"))
    pages = source.fetch()
    assert len(server.seen) == requests
    assert [s.params["per_page"] for s in server.seen] == ["250"] * requests
    assert sum(len(source.parse(p).quotes) for p in pages) == total


def test_fetch_stops_early_when_the_api_has_fewer_coins(serve: Any) -> None:
    server = serve(paged(120))
    source, _, _ = source_for(settings_for(server.url, top_n=1000))
    pages = source.fetch()
    assert len(server.seen) == 1
    assert len(source.parse(pages[0]).quotes) == 120


def test_a_failed_later_page_keeps_the_earlier_ones(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = serve([Reply(200, fake_markets(150)), Reply(401, json.loads(body("error-invalid-key.json")))])
    source, _, _ = source_for(settings_for(server.url, top_n=300))
    with caplog.at_level(logging.WARNING):
        pages = source.fetch()
    assert len(pages) == 1
    assert "coingecko: page 2 failed, keeping the 1 page(s) already fetched" in caplog.text


def test_a_failed_first_page_raises_without_leaking_the_key(serve: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    echo = {"status": {"error_code": 10011, "error_message": f"Invalid API Key {KEY}"}}
    server = serve([Reply(401, echo)])
    source, _, _ = source_for(settings_for(server.url, coingecko_api_key=SecretStr(KEY)))
    with caplog.at_level(logging.DEBUG), pytest.raises(TerminalSourceError) as info:
        source.fetch()
    assert server.seen[0].headers["x-cg-demo-api-key"] == KEY
    assert info.value.status == 401
    assert str(info.value).startswith("coingecko: request refused (error 10011: Invalid API Key ***)")
    assert KEY not in str(info.value) and KEY not in caplog.text


def test_cloudflare_page_is_a_clear_terminal_error(serve: Any) -> None:
    server = serve([Reply(403, body("cloudflare-1020.html"), headers={"Content-Type": "text/html"})])
    source, _, _ = source_for(settings_for(server.url))
    with pytest.raises(TerminalSourceError) as info:
        source.fetch()
    assert str(info.value).startswith("coingecko: expected JSON, got HTML (Cloudflare block?) (HTTP 403)")


def test_rate_limited_fetch_hands_retry_after_back(serve: Any) -> None:
    server = serve([Reply(429, json.loads(body("error-429.json")), headers={"Retry-After": "90"})])
    source, _, clock = source_for(settings_for(server.url))
    with pytest.raises(TransientSourceError) as info:
        source.fetch()
    assert (info.value.status, info.value.retry_after) == (429, 90.0)
    assert len(server.seen) == 1 and clock.sleeps == []


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (Reply(404, b""), TerminalSourceError, "coingecko: endpoint not found (HTTP 404); check "
                                               "CRYPTOVIZ_COINGECKO_BASE_URL"),
        (Reply(404, {"error": "Not Found"}), TerminalSourceError,
         "coingecko: not found (error 404: Not Found); check CRYPTOVIZ_COINGECKO_BASE_URL"),
        (Reply(400, {"error": "invalid vs_currency"}), TerminalSourceError,
         "coingecko: request refused (error 400: invalid vs_currency); check CRYPTOVIZ_VS_CURRENCY"),
        (Reply(200, {"unexpected": True}), TerminalSourceError, "coingecko: expected a JSON list of coins"),
        (Reply(200, b'[{"id": "bit'), TransientSourceError, "coingecko: expected JSON, got invalid JSON"),
    ],
)
def test_fetch_converts_bad_answers(serve: Any, reply: Reply, error: type[Exception], message: str) -> None:
    server = serve([reply])
    source, _, _ = source_for(settings_for(server.url))
    with pytest.raises(error) as info:
        source.fetch()
    assert str(info.value).startswith(message)


def test_breaker_state_is_reported_per_source(serve: Any) -> None:
    server = serve([Reply(503)])
    source, _, _ = source_for(settings_for(server.url, http_retries=0))
    assert source.breaker_state == "closed"
    for _ in range(3):
        with pytest.raises(TransientSourceError):
            source.fetch()
    assert source.breaker_state == "open"
    with pytest.raises(TransientSourceError, match="circuit open"):
        source.fetch()
    assert len(server.seen) == 3
