"""CoinPaprika ``/tickers``: exact parsed values, every rejection, error bodies, top_n and currency, fetching
(from the simulator and a scripted server on 127.0.0.1), and the request budget."""

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

from cryptoviz.config import Settings, load_settings
from cryptoviz.errors import ParseError, TerminalSourceError, TransientSourceError
from cryptoviz.models import SourceQuote
from cryptoviz.simulator import start_simulator
from cryptoviz.sources import coinpaprika, registry
from cryptoviz.sources.base import RawPage
from cryptoviz.sources.coinpaprika import CoinPaprikaSource, envelope_error, parse_tickers
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.spec import SECONDS_PER_MONTH
from tests.unit.test_http import FakeClock, Reply, Script, ScriptedServer, ServerPool, make_http

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "coinpaprika"
T = datetime(2024, 3, 4, 9, 20, 0, tzinfo=UTC)
KEY = "cp-test-key-7d41e2a9"
FROZEN = 3600.0  # simulator step_seconds that keeps its market still during a test

# The fields of a ticker and of one of its quotes, as documented (the ``tick`` and ``quote`` schemas).
TICK_FIELDS = {"id", "name", "symbol", "rank", "circulating_supply", "total_supply", "max_supply", "beta_value",
               "first_data_at", "last_updated", "quotes"}
QUOTE_FIELDS = {"price", "volume_24h", "volume_24h_change_24h", "market_cap", "market_cap_change_24h",
                "percent_change_15m", "percent_change_30m", "percent_change_1h", "percent_change_6h",
                "percent_change_12h", "percent_change_24h", "percent_change_7d", "percent_change_30d",
                "percent_change_1y", "ath_price", "ath_date", "percent_from_price_ath"}


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def tickers() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(body("tickers-usd.json"))
    return loaded


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    with ServerPool() as pool:
        yield pool.start


# --- the fixture is the documented shape -------------------------------------------------------------


def test_fixture_has_the_documented_fields_only() -> None:
    items = tickers()
    for item in items:
        assert set(item) <= TICK_FIELDS and set(item["quotes"]) == {"USD"}
        assert set(item["quotes"]["USD"]) <= QUOTE_FIELDS
    assert set(items[0]) == TICK_FIELDS and set(items[0]["quotes"]["USD"]) == QUOTE_FIELDS
    assert "circulating_supply" not in items[3]  # the free plan's answer
    assert isinstance(items[0]["quotes"]["USD"]["market_cap"], int)
    assert isinstance(items[0]["quotes"]["USD"]["price"], float)


# --- exact values ------------------------------------------------------------------------------------


def test_parses_every_ticker_of_the_fixture() -> None:
    result = parse_tickers(body("tickers-usd.json"), T, "usd")
    assert result.rejected == []
    assert [q.source_id for q in result.quotes] == [
        "btc-bitcoin", "eth-ethereum", "usdt-tether", "sol-solana", "shib-shiba-inu"]
    assert {q.source for q in result.quotes} == {"coinpaprika"}
    assert {q.currency for q in result.quotes} == {"usd"}
    assert {q.collected_at for q in result.quotes} == {T}
    assert {q.slug for q in result.quotes} == {None}  # CoinPaprika has no slug
    nothing = parse_tickers(b"[]", T, "usd")
    assert nothing.quotes == [] and nothing.rejected == []


def test_bitcoin_exact_values() -> None:
    btc = parse_tickers(body("tickers-usd.json"), T, "USD").quotes[0]
    assert (btc.source_id, btc.symbol, btc.name, btc.rank) == ("btc-bitcoin", "BTC", "Bitcoin", 1)
    assert btc.price == 5162.15941296
    assert btc.market_cap == 91094433242.0 and isinstance(btc.market_cap, float)
    assert btc.volume_24h == 7304207651.1585
    assert (btc.change_1h, btc.change_24h, btc.change_7d) == (0.0, 1.59, 0.28)
    assert isinstance(btc.change_1h, float)
    assert (btc.circulating_supply, btc.total_supply, btc.max_supply) == (17007062.0, 17007062.0, 21000000.0)
    assert btc.last_updated == datetime(2018, 11, 14, 7, 20, 41, tzinfo=UTC)
    assert btc.currency == "usd"


def test_older_ticker_and_zero_max_supply() -> None:
    eth = parse_tickers(body("tickers-usd.json"), T, "usd").quotes[1]
    assert (eth.price, eth.market_cap, eth.volume_24h) == (173.00001891, 18938229376.0, 8256159044.3763)
    assert (eth.change_1h, eth.change_24h, eth.change_7d) == (0.27, 0.92, 2.18)
    assert (eth.circulating_supply, eth.total_supply) == (109469522.0, 109469556.0)
    assert eth.max_supply is None  # 0: no maximum
    assert eth.last_updated == datetime(2020, 1, 28, 21, 56, 3, tzinfo=UTC)


def test_null_max_supply_free_plan_and_tiny_price() -> None:
    _, _, usdt, sol, shib = parse_tickers(body("tickers-usd.json"), T, "usd").quotes
    assert (usdt.symbol, usdt.price, usdt.max_supply, usdt.circulating_supply) == (
        "USDT", 1.00114683, None, 100238560000.0)
    assert sol.circulating_supply is None  # the free plan leaves it out
    assert (sol.rank, sol.price, sol.market_cap, sol.total_supply) == (5, 131.86213547, 58426770941.0, 488630611.0)
    assert (shib.rank, shib.price, shib.circulating_supply) == (4, 2.445e-05, 589247830374466.0)
    assert shib.change_7d == 9.7 and shib.last_updated == datetime(2024, 3, 4, 9, 15, 2, tzinfo=UTC)


def test_empty_strings_are_missing_values() -> None:
    item = tickers()[0]
    item = {**item, "total_supply": "", "quotes": {"USD": {**item["quotes"]["USD"], "volume_24h": ""}}}
    quote = parse_tickers(orjson.dumps([item]), T, "usd").quotes[0]
    assert (quote.total_supply, quote.volume_24h, quote.price) == (None, None, 5162.15941296)


# --- rejections ----------------------------------------------------------------------------------------


def test_every_malformed_ticker_is_rejected_with_its_reason_and_the_rest_kept() -> None:
    btc = tickers()[0]
    usd = btc["quotes"]["USD"]
    bad: list[Any] = [
        btc,
        42,
        {k: v for k, v in btc.items() if k != "id"},
        {**btc, "id": "   "},
        {**btc, "id": "x" * 201},
        {**btc, "id": "price-string", "quotes": {"USD": {**usd, "price": "abc"}}},
        {**btc, "id": "bool-cap", "quotes": {"USD": {**usd, "market_cap": True}}},
        {**btc, "id": "half-rank", "rank": 1.5},
        {**btc, "id": "numeric-symbol", "symbol": 7},
        {**btc, "id": "no-name", "name": None},
        {**btc, "id": "nul-name", "name": "Bit\x00coin"},
        {**btc, "id": "bad-time", "last_updated": "yesterday"},
        {k: v for k, v in btc.items() if k != "quotes"} | {"id": "no-quotes"},
        {**btc, "id": "quotes-list", "quotes": [usd]},
        {**btc, "id": "no-usd", "quotes": {"BTC": usd}},
        {**btc, "id": "usd-list", "quotes": {"USD": [1, 2]}},
        {**btc, "id": "supply-string", "circulating_supply": "17M"},
        {**btc, "id": "negative", "quotes": {"USD": {**usd, "price": -5}}},  # a range problem: validation's
        {**btc, "id": "float-rank", "rank": 3.0},
    ]
    result = parse_tickers(orjson.dumps(bad), T, "usd")
    assert [q.source_id for q in result.quotes] == ["btc-bitcoin", "negative", "float-rank"]
    assert result.quotes[1].price == -5.0 and result.quotes[2].rank == 3
    assert {r.source for r in result.rejected} == {"coinpaprika"}
    assert [(r.coin, r.field, r.reason, r.detail) for r in result.rejected] == [
        ("item 1", "item", "not_an_object", "got int"),
        ("item 2", "id", "missing_field", ""),
        ("item 3", "id", "missing_field", "blank string"),
        ("x" * 201, "id", "too_long", "201 characters, at most 200 can be kept"),
        ("price-string", "quotes.USD.price", "not_a_number", "got str 'abc'"),
        ("bool-cap", "quotes.USD.market_cap", "not_a_number", "got bool True"),
        ("half-rank", "rank", "not_an_integer", "got float 1.5"),
        ("numeric-symbol", "symbol", "not_a_string", "got int 7"),
        ("no-name", "name", "missing_field", ""),
        ("nul-name", "name", "bad_text", "contains the control character U+0000"),
        ("bad-time", "last_updated", "bad_timestamp", "not ISO-8601: 'yesterday'"),
        ("no-quotes", "quotes", "missing_field", ""),
        ("quotes-list", "quotes", "not_an_object", "got list"),
        ("no-usd", "quotes.USD", "missing_field", "no USD quote (quotes=USD not asked for?)"),
        ("usd-list", "quotes.USD", "not_an_object", "got list"),
        ("supply-string", "circulating_supply", "not_a_number", "got str '17M'"),
    ]


# --- error bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "error", "status", "start"),
    [
        ("error-429.json", TransientSourceError, 429,
         "coinpaprika: rate limit reached (you have reached maximum request limit); wait a minute; collect less "
         "often (CRYPTOVIZ_SOURCE_INTERVALS, e.g. coinpaprika=600), or set CRYPTOVIZ_COINPAPRIKA_API_KEY to a paid "
         "plan's key"),
        ("error-402.json", TerminalSourceError, 402,
         "coinpaprika: payment required (monthly request limit of your plan reached, upgrade your plan at "
         "https://coinpaprika.com/api); the free plan's 20,000 calls this month are used up"),
        ("error-400.json", TerminalSourceError, 400,
         "coinpaprika: bad request (invalid quotes); check CRYPTOVIZ_VS_CURRENCY: CoinPaprika quotes BTC, ETH, USD"),
        ("error-404.json", TerminalSourceError, 404,
         "coinpaprika: not found (id not found); check CRYPTOVIZ_COINPAPRIKA_BASE_URL (the free API is "
         "https://api.coinpaprika.com/v1)"),
    ],
)
def test_error_bodies_say_what_happened_and_what_to_do(fixture: str, error: type[Exception], status: int,
                                                       start: str) -> None:
    """A replayed body has no HTTP status: its message says which error it is."""
    with pytest.raises(error) as info:
        parse_tickers(body(fixture), T, "usd")
    found = info.value
    assert isinstance(found, TransientSourceError | TerminalSourceError)
    assert str(found).startswith(start)
    assert (found.status, found.retry_after) == (status, 60.0 if status == 429 else None)


@pytest.mark.parametrize(
    ("status", "error", "start"),
    [
        (429, TransientSourceError, "coinpaprika: rate limit reached (HTTP 429: busy); wait a minute"),
        (402, TerminalSourceError, "coinpaprika: payment required (HTTP 402: busy); the free plan's"),
        (403, TerminalSourceError, "coinpaprika: request refused (HTTP 403: busy); the API key is invalid: "
                                   "check CRYPTOVIZ_COINPAPRIKA_API_KEY"),
        (401, TerminalSourceError, "coinpaprika: request refused (HTTP 401: busy); the API key is invalid"),
        (404, TerminalSourceError, "coinpaprika: not found (HTTP 404: busy); check CRYPTOVIZ_COINPAPRIKA_BASE_URL"),
        (400, TerminalSourceError, "coinpaprika: bad request (HTTP 400: busy); check CRYPTOVIZ_VS_CURRENCY"),
        (503, TransientSourceError, "coinpaprika: server error (HTTP 503: busy); the service is having trouble"),
        (418, TerminalSourceError, "coinpaprika: request refused (HTTP 418: busy); the API refused the request"),
        (None, TerminalSourceError, "coinpaprika: request refused (busy); the API refused the request"),
    ],
)
def test_the_http_status_decides_over_the_message(status: int | None, error: type[Exception], start: str) -> None:
    found = envelope_error("busy", status)
    assert isinstance(found, error)
    assert str(found).startswith(start)
    assert found.status == status
    assert found.retry_after == (60.0 if status == 429 else None)


NOT_TICKERS = {  # body -> what the ParseError says came instead of a ticker list
    b"<!DOCTYPE html><html><body>Access denied</body></html>": "expected JSON, got HTML (Cloudflare block?)",
    b"": "expected JSON, got an empty body",
    b'{"tickers": []}': "expected a JSON list of tickers, got dict",
    b'{"error": ""}': "expected a JSON list of tickers, got dict",  # an empty error says nothing
    b'"hello"': "expected a JSON list of tickers, got str",
}


def test_bodies_that_are_no_ticker_list_raise_parse_error() -> None:
    for raw, says in NOT_TICKERS.items():
        with pytest.raises(ParseError) as info:
            parse_tickers(raw, T, "usd")
        assert str(info.value) == f"coinpaprika: {says}"
    with pytest.raises(ParseError, match=r"^coinpaprika: expected JSON, got invalid JSON \("):
        parse_tickers(b'[{"id": "btc-bitcoin"', T, "usd")


# --- the currency --------------------------------------------------------------------------------


def test_the_currency_picks_the_quote() -> None:
    btc = tickers()[0]
    both = {**btc, "quotes": {**btc["quotes"], "BTC": {**btc["quotes"]["USD"], "price": 1, "market_cap": 17007062}}}
    in_btc = parse_tickers(orjson.dumps([both]), T, "btc").quotes[0]
    assert (in_btc.currency, in_btc.price, in_btc.market_cap) == ("btc", 1.0, 17007062.0)
    in_eur = parse_tickers(body("tickers-usd.json"), T, "eur")
    assert in_eur.quotes == []
    assert {(r.field, r.reason) for r in in_eur.rejected} == {("quotes.EUR", "missing_field")}
    assert len(in_eur.rejected) == 5


# --- fetching from the simulator --------------------------------------------------------------------------


def price_of(quotes: list[SourceQuote], coin_id: str) -> float:
    price = next(q.price for q in quotes if q.source_id == coin_id)
    assert price is not None
    return price


def source_for(settings: Settings) -> tuple[CoinPaprikaSource, HttpClient, FakeClock]:
    clock = FakeClock()
    http = make_http(settings, clock)
    return CoinPaprikaSource(settings, http, now=lambda: T), http, clock


def test_fetch_from_the_simulator_is_one_request_for_every_ticker() -> None:
    with start_simulator(faults="none", seed=3, step_seconds=FROZEN) as sim:
        settings = load_settings(**sim.settings_overrides(), top_n=25)
        source, http, _ = source_for(settings)
        with http:
            pages = source.fetch()
        stats, url = sim.stats(), sim.url
    assert len(pages) == 1 and stats["requests"] == {"/coinpaprika/v1/tickers": 1}
    assert pages[0].url == f"{url}/coinpaprika/v1/tickers?quotes=USD"
    assert (pages[0].source, pages[0].extension, pages[0].fetched_at) == ("coinpaprika", "json", T)
    assert len(orjson.loads(pages[0].body)) == 200  # the whole answer, as received (the pipeline keeps top_n)
    result = source.parse(pages[0])
    assert result.rejected == []
    assert [q.rank for q in result.quotes] == list(range(1, 201))
    assert result.quotes[0].source_id == "btc-bitcoin" and result.quotes[2].source_id == "usdt-tether"
    assert all(q.circulating_supply is None for q in result.quotes)  # keyless: the free plan's answer


def test_fetch_from_the_simulator_in_another_currency_with_a_key() -> None:
    with start_simulator(faults="none", seed=3, step_seconds=FROZEN) as sim:
        base = load_settings(**sim.settings_overrides())
        eur = load_settings(**sim.settings_overrides(), vs_currency="eur", coinpaprika_api_key=KEY)
        usd_source, usd_http, _ = source_for(base)
        eur_source, eur_http, _ = source_for(eur)
        with usd_http, eur_http:
            in_usd = usd_source.parse(usd_source.fetch()[0]).quotes
            in_eur = eur_source.parse(eur_source.fetch()[0]).quotes
        url = sim.url
    assert {q.currency for q in in_eur} == {"eur"}
    # one market tick, one noise per source and tick: the EUR price is the USD one converted
    assert price_of(in_eur, "eth-ethereum") == pytest.approx(price_of(in_usd, "eth-ethereum") * 0.92, rel=1e-9)
    eth = next(q for q in in_eur if q.source_id == "eth-ethereum")
    assert eth.circulating_supply == 120.1e6  # a key: a paid plan's answer
    assert eur_source.url == f"{url}/coinpaprika/v1/tickers"  # a base URL of one's own is kept


def test_malformed_and_outlier_faults_reach_the_parser() -> None:
    with start_simulator(faults="malformed@coinpaprika,outlier@coinpaprika", seed=5, step_seconds=FROZEN) as sim:
        settings = load_settings(**sim.settings_overrides(), top_n="all")
        source, http, _ = source_for(settings)
        with http:
            results = [source.parse(source.fetch()[0]) for _ in range(3)]
    assert [len(r.rejected) for r in results] == [3, 3, 3]
    assert {(r.field, r.reason) for r in results[0].rejected} == {
        ("item", "not_an_object"), ("id", "missing_field"), ("quotes.USD.price", "not_a_number")}
    eth = [price_of(r.quotes, "eth-ethereum") for r in results]
    btc = [price_of(r.quotes, "btc-bitcoin") for r in results]
    assert eth[2] / eth[0] == pytest.approx(10.0, rel=0.01)  # from the third cycle on
    assert btc[2] / btc[0] == pytest.approx(1.0, rel=0.01)


# --- fetching from a scripted server -----------------------------------------------------------------------


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(coinpaprika_base_url=f"{url}/v1", **overrides)


def test_fetch_sends_quotes_and_the_key_header(serve: Any) -> None:
    server = serve([Reply(200, tickers())])
    source, _, _ = source_for(settings_for(server.url, coinpaprika_api_key=SecretStr(KEY), vs_currency="btc"))
    pages = source.fetch()
    assert len(server.seen) == 1 and len(pages) == 1
    seen = server.seen[0]
    assert (seen.path, seen.params) == ("/v1/tickers", {"quotes": "BTC"})
    assert seen.headers["authorization"] == KEY and seen.headers["accept"] == "application/json"


def test_fetch_without_key_sends_no_authorization(serve: Any) -> None:
    server = serve([Reply(200, tickers())])
    source, _, _ = source_for(settings_for(server.url))
    assert len(source.parse(source.fetch()[0]).quotes) == 5
    assert "authorization" not in server.seen[0].headers


def test_a_key_with_the_free_base_url_goes_to_the_paid_host() -> None:
    keyless, _, _ = source_for(Settings())
    paid, _, _ = source_for(Settings(coinpaprika_api_key=SecretStr(KEY)))
    blank, _, _ = source_for(Settings(coinpaprika_api_key=SecretStr("")))
    assert keyless.url == f"{coinpaprika.FREE_BASE_URL}/tickers" == blank.url
    assert paid.url == f"{coinpaprika.PRO_BASE_URL}/tickers"


def test_a_refused_key_is_terminal_and_never_repeated(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = serve([Reply(403, {"error": f"invalid API key: {KEY}"})])
    source, _, _ = source_for(settings_for(server.url, coinpaprika_api_key=SecretStr(KEY)))
    with caplog.at_level(logging.DEBUG), pytest.raises(TerminalSourceError) as info:
        source.fetch()
    assert len(server.seen) == 1 and info.value.status == 403
    assert str(info.value).startswith("coinpaprika: request refused (HTTP 403: invalid API key: ***); the API key "
                                      "is invalid: check CRYPTOVIZ_COINPAPRIKA_API_KEY")
    assert KEY not in str(info.value) and KEY not in caplog.text


def test_429_waits_a_short_retry_after_and_hands_a_long_one_back(serve: Any) -> None:
    limited = json.loads(body("error-429.json"))
    short = serve([Reply(429, limited, headers={"Retry-After": "2"}), Reply(200, tickers())])
    long = serve([Reply(429, limited, headers={"Retry-After": "90"})])
    waiting, _, waited = source_for(settings_for(short.url))
    assert len(waiting.parse(waiting.fetch()[0]).quotes) == 5 and waited.sleeps == [2.0]
    giving_up, _, idle = source_for(settings_for(long.url))
    with pytest.raises(TransientSourceError) as info:
        giving_up.fetch()
    assert (info.value.status, info.value.retry_after, idle.sleeps, len(long.seen)) == (429, 90.0, [], 1)
    assert "(you have reached maximum request limit)" in str(info.value)  # the body's reason is kept


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (Reply(402, json.loads(body("error-402.json"))), TerminalSourceError,
         "coinpaprika: payment required (HTTP 402: monthly request limit of your plan reached"),
        (Reply(400, json.loads(body("error-400.json"))), TerminalSourceError,
         "coinpaprika: bad request (HTTP 400: invalid quotes); check CRYPTOVIZ_VS_CURRENCY"),
        (Reply(404, b""), TerminalSourceError,
         "coinpaprika: not found (HTTP 404: Not Found); check CRYPTOVIZ_COINPAPRIKA_BASE_URL"),
        (Reply(404, {"unexpected": True}), TerminalSourceError, "coinpaprika: not found (HTTP 404: Not Found)"),
        (Reply(200, {"unexpected": True}), TerminalSourceError,
         "coinpaprika: expected a JSON list of tickers, got dict (HTTP 200); is CRYPTOVIZ_COINPAPRIKA_BASE_URL the "
         "API's address"),
        (Reply(200, b"<html><body>Welcome</body></html>"), TerminalSourceError,
         "coinpaprika: expected JSON, got HTML"),
        (Reply(200, {"error": "you have reached maximum request limit"}), TransientSourceError,
         "coinpaprika: rate limit reached (HTTP 200: you have reached maximum request limit)"),
        (Reply(200, b'[{"id": "btc-bit'), TransientSourceError,
         "coinpaprika: expected JSON, got invalid JSON"),
    ],
)
def test_fetch_converts_bad_answers(serve: Any, reply: Reply, error: type[Exception], message: str) -> None:
    server = serve([reply])
    source, _, _ = source_for(settings_for(server.url, http_retries=0))
    with pytest.raises(error) as info:
        source.fetch()
    assert str(info.value).startswith(message)


def test_server_errors_are_retried_then_reported(serve: Any) -> None:
    server = serve([Reply(500, {"error": "internal server error"}), Reply(200, tickers())])
    source, _, _ = source_for(settings_for(server.url))
    assert len(source.parse(source.fetch()[0]).quotes) == 5
    assert len(server.seen) == 2


def test_breaker_state_is_reported(serve: Any) -> None:
    server = serve([Reply(503)])
    source, _, _ = source_for(settings_for(server.url, http_retries=0))
    states: list[str] = [source.breaker_state]
    for _ in range(3):
        with pytest.raises(TransientSourceError):
            source.fetch()
    states.append(source.breaker_state)
    assert states == ["closed", "open"]
    with pytest.raises(TransientSourceError, match="circuit open"):
        source.fetch()
    assert len(server.seen) == 3


# --- the request budget and the spec -------------------------------------------------------------------------


def test_budget_keeps_within_the_free_plans_calls_a_month() -> None:
    assert coinpaprika.BUDGET.per_month == 20_000
    minutes_a_month = SECONDS_PER_MONTH / 60
    assert coinpaprika.BUDGET.per_minute * minutes_a_month == pytest.approx(20_000)
    assert coinpaprika.BUDGET.per_minute == pytest.approx(0.463, abs=1e-3)
    assert coinpaprika.BUDGET.shortest_interval() == 130  # 30 days / 20,000, rounded up
    assert coinpaprika.SPEC.interval == 300.0 and coinpaprika.SPEC.interval >= coinpaprika.BUDGET.shortest_interval()
    assert SECONDS_PER_MONTH / coinpaprika.SPEC.interval == 8640  # fetches a month at the default interval


def test_the_source_takes_its_rate_limit_from_the_budget(serve: Any) -> None:
    server = serve([Reply(200, tickers())])
    source, http, clock = source_for(settings_for(server.url))
    limiter = http.limiter("coinpaprika")
    assert limiter is not None and (limiter.rate_per_minute, limiter.burst) == (coinpaprika.BUDGET.per_minute, 3)
    for _ in range(3):
        source.fetch()
    # a burst of 3, then one request per 60 / 0.463 = 129.6 s: 20,000 a month at most, however often asked;
    # a fetch never waits that long: it fails at once saying when the budget allows the next request
    with pytest.raises(TransientSourceError, match=r"request budget used up .* next request possible in 130s"):
        source.fetch()
    assert clock.sleeps == []
    clock.now += 130.0
    source.fetch()


def test_spec_and_registry() -> None:
    assert registry.SPECS["coinpaprika"] is coinpaprika.SPEC
    assert coinpaprika.SPEC.kind == "pull" and coinpaprika.SPEC.trust == 0.75 and coinpaprika.SPEC.key_setting is None
    assert coinpaprika.SPEC.namespace is coinpaprika.COINPAPRIKA_IDS and coinpaprika.COINPAPRIKA_IDS.name == "coinpaprika"
    assert not coinpaprika.COINPAPRIKA_IDS.ids_are_slugs and not coinpaprika.COINPAPRIKA_IDS.canonical and coinpaprika.COINPAPRIKA_IDS.column is None
    assert coinpaprika.SPEC.settings == ("coinpaprika_base_url", "coinpaprika_api_key")
    assert coinpaprika.SPEC.default(Settings()) is True
    assert registry.get_parser("coinpaprika") is parse_tickers
    assert registry.namespaces()["coinpaprika"] == coinpaprika.COINPAPRIKA_IDS
    assert load_settings(source_intervals="coinpaprika=600").source_intervals == {"coinpaprika": 600.0}


def test_registry_builds_it_without_a_key_and_replays_its_bodies() -> None:
    with HttpClient(Settings()) as http:
        sources, warnings = registry.build_sources(Settings(sources=["coinpaprika"]), http)
    assert [type(s) for s in sources] == [CoinPaprikaSource] and warnings == []
    replayed = registry.parse_page(RawPage("coinpaprika", body("tickers-usd.json"), "json", T), "usd")
    assert len(replayed.quotes) == 5 and {q.collected_at for q in replayed.quotes} == {T}
