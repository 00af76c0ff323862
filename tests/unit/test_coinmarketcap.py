"""CoinMarketCap ``listings/latest``: a real 2021 capture, newer/older variants, error codes, fetch."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError, SourceError, TerminalSourceError, TransientSourceError
from cryptoviz.models import Rejection
from cryptoviz.sources.coinmarketcap import CoinMarketCapSource, page_plan, parse_listings
from cryptoviz.sources.http import HttpClient
from tests.unit.test_http import FakeClock, Reply, Script, ScriptedServer, Seen, ServerPool, make_http

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "coinmarketcap"
CAPTURE = "listings-latest-2021-04-20.json"
T = datetime(2021, 4, 20, 23, 30, 10, tzinfo=UTC)
KEY = "b54bcf4d-1bca-4e8e-9a24-22ff2c3d462c"


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    with ServerPool() as pool:
        yield pool.start


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def capture() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(body(CAPTURE))
    return loaded


# --- the real capture ----------------------------------------------------------------------------


def test_real_capture_gives_100_quotes_and_no_rejection() -> None:
    result = parse_listings(body(CAPTURE), T, "usd")
    assert len(result.quotes) == 100
    assert result.rejected == []
    assert {q.source for q in result.quotes} == {"coinmarketcap"}
    assert {q.currency for q in result.quotes} == {"usd"}
    assert [q.rank for q in result.quotes] == list(range(1, 101))


def test_bitcoin_exact_values() -> None:
    btc = parse_listings(body(CAPTURE), T, "usd").quotes[0]
    assert (btc.source_id, btc.slug, btc.symbol, btc.name, btc.rank) == ("1", "bitcoin", "BTC", "Bitcoin", 1)
    assert btc.price == 56507.38254720854
    assert btc.market_cap == 1055965437224.7859
    assert btc.volume_24h == 68130148004.21379
    assert (btc.change_1h, btc.change_24h, btc.change_7d) == (-0.06933817, 0.82913441, -10.54801066)
    assert (btc.circulating_supply, btc.total_supply, btc.max_supply) == (18687212.0, 18687212.0, 21000000.0)
    assert isinstance(btc.max_supply, float)
    assert btc.last_updated == datetime(2021, 4, 20, 23, 29, 2, tzinfo=UTC)
    assert btc.collected_at == T


def test_ethereum_has_no_max_supply_and_tether_its_own_time() -> None:
    quotes = {q.slug: q for q in parse_listings(body(CAPTURE), T, "usd").quotes}
    eth = quotes["ethereum"]
    assert (eth.source_id, eth.max_supply, eth.circulating_supply) == ("1027", None, 115551757.374)
    assert eth.price == 2327.561078794592
    usdt = quotes["tether"]
    assert (usdt.source_id, usdt.symbol, usdt.rank, usdt.price) == ("825", "USDT", 5, 1.00008821772943)
    assert usdt.last_updated == datetime(2021, 4, 20, 23, 28, 9, tzinfo=UTC)


def test_a_currency_the_body_does_not_carry_rejects_every_item() -> None:
    result = parse_listings(body(CAPTURE), T, "eur")
    assert result.quotes == []
    assert len(result.rejected) == 100
    assert result.rejected[0] == Rejection("coinmarketcap", "bitcoin", "quote.EUR", "missing_field",
                                           "no EUR quote (convert=EUR not served?)")


# --- newer and older shapes ----------------------------------------------------------------------


def test_newer_response_with_extra_fields() -> None:
    result = parse_listings(body("listings-latest-newer.json"), T, "usd")
    assert result.rejected == []
    assert [q.slug for q in result.quotes] == ["bitcoin", "shiba-inu", "usd-coin"]
    shib = result.quotes[1]
    assert (shib.source_id, shib.symbol, shib.rank) == ("5994", "SHIB", 12)
    assert shib.price == 2.279517829e-05
    assert shib.market_cap == 13432542037.123444
    assert shib.max_supply is None
    assert result.quotes[0].circulating_supply == 19698575.0


def test_older_response_lacking_fields() -> None:
    result = parse_listings(body("listings-latest-older.json"), T, "usd")
    assert result.rejected == []
    xrp = result.quotes[1]
    assert (xrp.source_id, xrp.slug, xrp.symbol, xrp.price) == ("52", "ripple", "XRP", 0.307883734303)
    assert (xrp.change_1h, xrp.change_24h, xrp.change_7d) == (None, -0.54032, None)
    assert xrp.max_supply is None
    # No quote.USD.last_updated: the item's own time is used.
    assert xrp.last_updated == datetime(2019, 2, 1, 9, 59, 3, tzinfo=UTC)


# --- malformed items -----------------------------------------------------------------------------


def test_malformed_items_are_rejected_and_the_rest_kept() -> None:
    doc = capture()
    data = doc["data"]
    data[0]["quote"]["USD"]["price"] = "abc"
    data[1] = "oops"
    del data[2]["id"]
    data[3]["quote"] = {}
    data[4]["quote"]["USD"]["last_updated"] = "20/04/2021"
    data[5]["cmc_rank"] = "6"
    data[6]["symbol"] = None
    data[7]["quote"] = None
    data[8]["quote"]["USD"] = []
    data[9]["id"] = 2.5
    data[10]["quote"]["USD"]["market_cap"] = -1.0  # a range problem: validation's call
    result = parse_listings(orjson.dumps(doc), T, "usd")
    assert len(result.quotes) == 90
    assert result.quotes[0].slug == "uniswap" and result.quotes[0].market_cap == -1.0
    assert result.rejected == [
        Rejection("coinmarketcap", "bitcoin", "quote.USD.price", "not_a_number", "got str 'abc'"),
        Rejection("coinmarketcap", "item 1", "item", "not_an_object", "got str"),
        Rejection("coinmarketcap", "binance-coin", "id", "missing_field", ""),
        Rejection("coinmarketcap", "xrp", "quote.USD", "missing_field", "no USD quote (convert=USD not served?)"),
        Rejection("coinmarketcap", "tether", "quote.USD.last_updated", "bad_timestamp",
                  "not ISO-8601: '20/04/2021'"),
        Rejection("coinmarketcap", "dogecoin", "cmc_rank", "not_an_integer", "got str '6'"),
        Rejection("coinmarketcap", "cardano", "symbol", "missing_field", ""),
        Rejection("coinmarketcap", "polkadot-new", "quote", "missing_field", ""),
        Rejection("coinmarketcap", "bitcoin-cash", "quote.USD", "not_an_object", "got list"),
        Rejection("coinmarketcap", "litecoin", "id", "not_an_integer", "got float 2.5"),
    ]


# --- error envelopes -----------------------------------------------------------------------------


def envelope(code: int, message: str = "message", timestamp: str = "2024-05-14T09:12:01.114Z") -> bytes:
    return orjson.dumps({"status": {"timestamp": timestamp, "error_code": code, "error_message": message,
                                    "elapsed": 0, "credit_count": 0}})


def test_per_minute_limit_is_transient_with_a_retry_hint() -> None:
    with pytest.raises(TransientSourceError) as info:
        parse_listings(body("error-1008.json"), T, "usd")
    assert (info.value.status, info.value.retry_after) == (429, 60.0)
    assert str(info.value).startswith(
        "coinmarketcap: per-minute rate limit reached (error 1008: You've exceeded your API Key's HTTP "
        "request rate limit. Rate limits reset every minute.); next try in about 60s")


def test_daily_limit_waits_until_the_next_utc_day() -> None:
    with pytest.raises(TransientSourceError) as info:
        parse_listings(body("error-1009.json"), T, "usd")
    assert info.value.retry_after == 2.5 * 3600  # 21:30 UTC -> midnight
    assert "daily credit limit reached" in str(info.value)


def test_invalid_key_is_terminal_and_says_what_to_do() -> None:
    with pytest.raises(TerminalSourceError) as info:
        parse_listings(body("error-1001.json"), T, "usd")
    assert str(info.value) == ("coinmarketcap: request refused (error 1001: This API Key is invalid.); "
                               "the API key is invalid: check CRYPTOVIZ_COINMARKETCAP_API_KEY")


@pytest.mark.parametrize(
    ("code", "error", "hint"),
    [
        (1002, TerminalSourceError, "set CRYPTOVIZ_COINMARKETCAP_API_KEY (get a free key at coinmarketcap.com/api)"),
        (1003, TerminalSourceError, "pro.coinmarketcap.com/account"),
        (1004, TerminalSourceError, "pro.coinmarketcap.com/account"),
        (1005, TerminalSourceError, "CRYPTOVIZ_COINMARKETCAP_API_KEY"),
        (1006, TerminalSourceError, "does not include this endpoint"),
        (1007, TerminalSourceError, "disabled"),
        (1010, TransientSourceError, "monthly credit limit"),
        (1011, TransientSourceError, "per-IP rate limit"),
        (429, TransientSourceError, "rate limit reached"),
        (400, TerminalSourceError, "check CRYPTOVIZ_VS_CURRENCY"),
        (500, TransientSourceError, "server error"),
        (9999, TerminalSourceError, "request refused (error 9999: message)"),
    ],
)
def test_error_codes(code: int, error: type[SourceError], hint: str) -> None:
    with pytest.raises(error) as info:
        parse_listings(envelope(code), T, "usd")
    assert type(info.value) is error
    assert hint in str(info.value)


def test_error_code_zero_as_string_or_absent_status_is_fine() -> None:
    ok = orjson.dumps({"status": {"error_code": "0"}, "data": []})
    assert parse_listings(ok, T, "usd").quotes == []
    assert parse_listings(b'{"data": []}', T, "usd").quotes == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<!DOCTYPE html><html><body>blocked</body></html>", "coinmarketcap: expected JSON, got HTML"),
        (b"[]", "coinmarketcap: expected a JSON object with status and data, got list"),
        (b'{"status": {"error_code": 0}}', "coinmarketcap: expected 'data' to be a list of coins, got nothing"),
        (b'{"status": {"error_code": 0}, "data": {"1": {}}}', "coinmarketcap: expected 'data' to be a list of "
                                                              "coins, got dict"),
    ],
)
def test_unusable_bodies_raise_parse_error(raw: bytes, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_listings(raw, T, "usd")
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(("top_n", "plan"), [(1, [1]), (100, [100]), (5000, [5000]),
                                             (12000, [5000, 5000, 2000]), ("all", None)])
def test_page_plan(top_n: int | str, plan: list[int] | None) -> None:
    assert page_plan(top_n) == plan


# --- fetching from a local server ----------------------------------------------------------------

PATH = "/v1/cryptocurrency/listings/latest"


def listing(total: int) -> Any:
    """A server answering like CoinMarketCap for ``total`` coins (items copied from the capture)."""
    template = {k: v for k, v in capture()["data"][0].items() if k != "tags"}  # smaller pages, same shape

    def reply(seen: Seen) -> Reply:
        if seen.path != PATH:
            return Reply(404, envelope(404, "Not found"))
        start, limit = int(seen.params["start"]), int(seen.params["limit"])
        n = max(0, min(limit, total - start + 1))
        data = [{**template, "id": i, "slug": f"coin-{i}", "cmc_rank": i}
                for i in range(start, start + n)]
        return Reply(200, {"status": {"error_code": 0, "error_message": None}, "data": data})
    return reply


def source_for(url: str, **overrides: Any) -> tuple[CoinMarketCapSource, HttpClient, FakeClock]:
    settings = Settings(coinmarketcap_base_url=url, coinmarketcap_api_key=SecretStr(KEY), **overrides)
    clock = FakeClock()
    http = make_http(settings, clock)
    return CoinMarketCapSource(settings, http, now=lambda: T), http, clock


def test_fetch_top_100_is_one_request_with_key_and_convert(serve: Any) -> None:
    server = serve([Reply(200, body(CAPTURE))])
    source, http, _ = source_for(server.url, top_n=100)
    pages = source.fetch()
    assert len(server.seen) == 1
    seen = server.seen[0]
    assert seen.path == PATH
    assert seen.params == {"start": "1", "limit": "100", "convert": "USD"}
    assert seen.headers["x-cmc_pro_api_key"] == KEY
    assert seen.headers["accept"] == "application/json"
    assert (pages[0].source, pages[0].extension, pages[0].fetched_at) == ("coinmarketcap", "json", T)
    assert pages[0].body == body(CAPTURE)
    assert len(source.parse(pages[0]).quotes) == 100
    limiter = http.limiter("coinmarketcap")
    assert limiter is not None and limiter.rate_per_minute == 30
    assert source.breaker_state == "closed"


def test_fetch_pages_by_5000(serve: Any) -> None:
    server = serve(listing(20_000))
    source, _, _ = source_for(server.url, top_n=7000, vs_currency="eur")
    pages = source.fetch()
    assert [(s.params["start"], s.params["limit"], s.params["convert"]) for s in server.seen] == [
        ("1", "5000", "EUR"), ("5001", "2000", "EUR")]
    assert len(pages) == 2


def test_fetch_all_stops_at_a_short_page(serve: Any) -> None:
    server = serve(listing(5010))
    source, _, _ = source_for(server.url, top_n="all")
    pages = source.fetch()
    assert [s.params["start"] for s in server.seen] == ["1", "5001"]
    assert [s.params["limit"] for s in server.seen] == ["5000", "5000"]
    assert len(pages) == 2


def test_429_is_read_from_the_envelope_without_retrying(serve: Any) -> None:
    server = serve([Reply(429, body("error-1008.json"))])
    source, _, clock = source_for(server.url)
    with pytest.raises(TransientSourceError) as info:
        source.fetch()
    assert len(server.seen) == 1 and clock.sleeps == []
    assert (info.value.status, info.value.retry_after) == (429, 60.0)
    assert "per-minute rate limit reached (error 1008" in str(info.value)


def test_error_code_on_http_200_is_still_an_error(serve: Any) -> None:
    server = serve([Reply(200, body("error-1009.json"))])
    source, _, _ = source_for(server.url)
    with pytest.raises(TransientSourceError, match="daily credit limit"):
        source.fetch()


def test_invalid_key_never_leaks(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = serve([Reply(401, envelope(1001, f"This API Key is invalid: {KEY}"))])
    source, _, _ = source_for(server.url)
    with caplog.at_level(logging.DEBUG), pytest.raises(TerminalSourceError) as info:
        source.fetch()
    assert server.seen[0].headers["x-cmc_pro_api_key"] == KEY
    assert info.value.status == 401
    assert "This API Key is invalid: ***" in str(info.value)
    assert KEY not in str(info.value) and KEY not in caplog.text


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(403, b"<html>denied</html>"), "coinmarketcap: request refused (HTTP 403); check "
                                             "CRYPTOVIZ_COINMARKETCAP_API_KEY"),
        (Reply(404, b""), "coinmarketcap: endpoint not found (HTTP 404)"),
        (Reply(200, b"[]"), "coinmarketcap: expected a JSON object with status and data, got list (HTTP 200); "
                            "has the API changed?"),
    ],
)
def test_fetch_converts_bad_answers(serve: Any, reply: Reply, message: str) -> None:
    server = serve([reply])
    source, _, _ = source_for(server.url)
    with pytest.raises(TerminalSourceError) as info:
        source.fetch()
    assert str(info.value).startswith(message)


def test_a_failed_later_page_keeps_the_earlier_ones(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    first = listing(10_000)

    def reply(seen: Seen) -> Reply:
        return first(seen) if seen.params["start"] == "1" else Reply(500, envelope(500, "oops"))

    server = serve(reply)
    source, _, _ = source_for(server.url, top_n=6000, http_retries=0)
    with caplog.at_level(logging.WARNING):
        pages = source.fetch()
    assert len(pages) == 1 and len(server.seen) == 2
    assert "coinmarketcap: page 2 failed, keeping the 1 page(s) already fetched" in caplog.text
