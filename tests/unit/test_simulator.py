"""The market simulator: real HTTP on 127.0.0.1, response shapes, faults, time and determinism."""

from __future__ import annotations

import json
import sys
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from cryptoviz.config import load_settings
from cryptoviz.simulator import (
    COINS,
    FAULT_NAMES,
    FEED_FAULT_NAMES,
    FaultInjector,
    Faults,
    Market,
    Simulator,
    start_simulator,
)
from cryptoviz.simulator.coins import coins
from cryptoviz.simulator.server import PAGES_MODULE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CG_MARKETS = "/api/v3/coins/markets"
CMC_LISTINGS = "/v1/cryptocurrency/listings/latest"
PAPRIKA_TICKERS = "/coinpaprika/v1/tickers"
KEY = {"X-CMC_PRO_API_KEY": "test-key"}
FROZEN = 3600.0  # step_seconds that keeps the market still for the length of a test

CG_RATE_LIMIT_BODY = {"status": {"error_code": 429, "error_message": (
    "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing to subscribe to "
    "our API plans for higher rate limits.")}}
# Every key of an item of the real 2021 capture (tests/fixtures/coinmarketcap/listings-latest-2021-04-20.json).
CMC_ITEM_KEYS = {"id", "name", "symbol", "slug", "num_market_pairs", "date_added", "tags", "max_supply",
                 "circulating_supply", "total_supply", "platform", "cmc_rank", "last_updated", "quote"}
CMC_QUOTE_KEYS = {"price", "volume_24h", "percent_change_1h", "percent_change_24h", "percent_change_7d",
                  "percent_change_30d", "percent_change_60d", "percent_change_90d", "market_cap",
                  "last_updated"}
# Every key of a ticker and of its quote in CoinPaprika's documented example (tests/fixtures/coinpaprika).
PAPRIKA_ITEM_KEYS = {"id", "name", "symbol", "rank", "circulating_supply", "total_supply", "max_supply",
                     "beta_value", "first_data_at", "last_updated", "quotes"}
PAPRIKA_QUOTE_KEYS = {"price", "volume_24h", "volume_24h_change_24h", "market_cap", "market_cap_change_24h",
                      *(f"percent_change_{p}" for p in ("15m", "30m", "1h", "6h", "12h", "24h", "7d", "30d", "1y")),
                      "ath_price", "ath_date", "percent_from_price_ath"}


# --- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with start_simulator(faults="none", seed=7, step_seconds=FROZEN) as running:
        yield running


def client(simulator: Simulator) -> httpx.Client:
    return httpx.Client(base_url=simulator.url, timeout=10)


def cg(http: httpx.Client, **params: Any) -> httpx.Response:
    return http.get(CG_MARKETS, params={"vs_currency": "usd", **params})


def cmc(http: httpx.Client, **params: Any) -> httpx.Response:
    return http.get(CMC_LISTINGS, params=params, headers=KEY)


def paprika(http: httpx.Client, key: str | None = None, **params: Any) -> httpx.Response:
    return http.get(PAPRIKA_TICKERS, params=params, headers={"Authorization": key} if key else {})


def by_id(items: list[Any], key: str = "id") -> dict[str, Any]:
    return {item[key]: item for item in items if isinstance(item, dict) and key in item}


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable`` -> JSON Schema ``type: [..., "null"]``."""
    if isinstance(node, list):
        return [_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


@pytest.fixture(scope="module")
def markets_validator() -> Draft202012Validator:
    spec = json.loads((FIXTURES / "coingecko" / "coingecko-demo-api.openapi.json").read_text())
    schema = _json_schema(spec["components"]["schemas"]["CoinsMarkets"])
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    example = spec["paths"]["/coins/markets"]["get"]["responses"]["200"]["content"]["application/json"]["example"]
    validator.validate(example)  # the conversion keeps the spec's own example valid
    return validator


def parse_z(text: str) -> datetime:
    assert text.endswith(".000Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the coin universe -----------------------------------------------------------------------------


def test_coin_universe_is_realistic_and_awkward() -> None:
    assert 150 <= len(COINS) <= 250
    assert len({c.cg_id for c in COINS}) == len({c.cmc_id for c in COINS}) == len({c.slug for c in COINS}) \
        == len(COINS)
    known = {c.cg_id: c for c in COINS}
    assert (known["binancecoin"].slug, known["binancecoin"].symbol) == ("bnb", "BNB")
    assert (known["ripple"].slug, known["ripple"].cmc_id) == ("xrp", 52)
    assert [c.cg_id for c in COINS[:3]] == ["bitcoin", "ethereum", "tether"]
    uni = {c.cg_id for c in COINS if c.symbol == "UNI"}
    btt = {c.cg_id for c in COINS if c.symbol == "BTT"}
    assert uni == {"uniswap", "unicorn-token"} and len(btt) == 2
    tiny = [c for c in COINS[:200] if c.price < 1e-8]
    assert tiny and all(c.circulating_supply > 1e15 for c in tiny)
    assert any(c.max_supply is None for c in COINS)
    with pytest.raises(ValueError, match="n_coins"):
        coins(len(COINS) + 1)


# --- CoinGecko -------------------------------------------------------------------------------------


def test_coingecko_markets_has_the_real_shape(sim: Simulator, markets_validator: Draft202012Validator) -> None:
    with client(sim) as http:
        plain = cg(http, per_page=250).json()
        with_changes = cg(http, per_page=250, price_change_percentage="1h,24h,7d").json()
        assert http.get("/api/v3/ping").json() == {"gecko_says": "(V3) To the Moon!"}
    markets_validator.validate(plain)
    markets_validator.validate(with_changes)
    assert len(plain) == 200
    bitcoin = with_changes[0]
    assert (bitcoin["id"], bitcoin["symbol"], bitcoin["market_cap_rank"]) == ("bitcoin", "btc", 1)
    assert all(item["symbol"] == item["symbol"].lower() for item in plain)
    assert "price_change_percentage_1h_in_currency" not in plain[0]
    for period in ("1h", "24h", "7d"):
        assert isinstance(bitcoin[f"price_change_percentage_{period}_in_currency"], float)
    assert bitcoin["roi"] is None
    now = datetime.now(UTC)
    for item in plain:
        assert now - timedelta(seconds=60) <= parse_z(item["last_updated"]) <= now
        parse_z(item["ath_date"])
        # market cap = price x circulating supply (rounding aside)
        assert item["market_cap"] == pytest.approx(item["current_price"] * item["circulating_supply"], rel=1e-4)
        # the 24 h figures agree with each other
        assert item["low_24h"] <= item["current_price"] <= item["high_24h"] or item["current_price"] < 1e-6
    changes = bitcoin["price_change_24h"] / (bitcoin["current_price"] - bitcoin["price_change_24h"]) * 100
    assert changes == pytest.approx(bitcoin["price_change_percentage_24h"], abs=1e-3)
    # big prices are JSON integers, as on the real API
    assert isinstance(bitcoin["current_price"], int) and isinstance(bitcoin["market_cap"], int)


def test_coingecko_pagination(sim: Simulator) -> None:
    with client(sim) as http:
        pages = [cg(http, per_page=50, page=n).json() for n in range(1, 5)]
        beyond = cg(http, per_page=50, page=5).json()
        clamped = cg(http, per_page=1000).json()
        default = cg(http).json()
        bad = cg(http, per_page="many")
        ids = cg(http, ids="ethereum,ripple").json()
    items = [item for page in pages for item in page]
    assert [len(p) for p in pages] == [50, 50, 50, 50] and beyond == []
    assert [item["market_cap_rank"] for item in items] == list(range(1, 201))
    assert len({item["id"] for item in items}) == 200
    assert len(clamped) == 200 and len(default) == 100
    assert bad.status_code == 400
    assert {item["id"] for item in ids} == {"ethereum", "ripple"}


def test_coingecko_vs_currency(sim: Simulator) -> None:
    with client(sim) as http:
        usd = by_id(cg(http, per_page=250).json())
        eur = by_id(cg(http, vs_currency="eur", per_page=250).json())
        btc = by_id(cg(http, vs_currency="BTC", per_page=250).json())
        unknown = cg(http, vs_currency="xyz")
        missing = http.get(CG_MARKETS)
    assert eur["ethereum"]["current_price"] == pytest.approx(usd["ethereum"]["current_price"] * 0.92, rel=1e-3)
    assert btc["bitcoin"]["current_price"] == pytest.approx(1.0)
    assert btc["ethereum"]["current_price"] == pytest.approx(
        usd["ethereum"]["current_price"] / usd["bitcoin"]["current_price"], rel=1e-3)
    assert (unknown.status_code, unknown.json()) == (400, {"error": "invalid vs_currency"})
    assert missing.status_code == 400


# --- CoinMarketCap ---------------------------------------------------------------------------------


def test_coinmarketcap_listings_has_the_real_shape(sim: Simulator) -> None:
    with client(sim) as http:
        body = cmc(http, limit=200).json()
    status, data = body["status"], body["data"]
    assert status["error_code"] == 0 and status["error_message"] is None
    assert {"timestamp", "elapsed", "credit_count", "notice", "total_count"} <= set(status)
    assert status["total_count"] == 200 and len(data) == 200
    assert datetime.fromisoformat(status["timestamp"].replace("Z", "+00:00")) <= datetime.now(UTC)
    for item in data:
        assert CMC_ITEM_KEYS <= set(item)
        assert set(item["quote"]) == {"USD"} and CMC_QUOTE_KEYS <= set(item["quote"]["USD"])
        assert item["symbol"] == item["symbol"].upper()
        parse_z(item["last_updated"])
    assert [item["cmc_rank"] for item in data] == list(range(1, 201))
    listed = by_id(data, "slug")
    assert listed["bnb"]["id"] == 1839 and listed["xrp"]["symbol"] == "XRP"
    assert listed["bitcoin"]["max_supply"] == 21_000_000 and listed["ethereum"]["max_supply"] is None
    usd = listed["bitcoin"]["quote"]["USD"]
    assert usd["market_cap"] == pytest.approx(usd["price"] * listed["bitcoin"]["circulating_supply"])


def test_coinmarketcap_requires_an_api_key(sim: Simulator) -> None:
    with client(sim) as http:
        for headers in ({}, {"X-CMC_PRO_API_KEY": ""}):
            answer = http.get(CMC_LISTINGS, headers=headers)
            assert answer.status_code == 401
            assert answer.json()["status"]["error_code"] == 1002
            assert answer.json()["status"]["error_message"] == "API key missing."
        assert http.get(CMC_LISTINGS, headers={"x-cmc_pro_api_key": "any"}).status_code == 200


def test_coinmarketcap_start_limit_and_convert(sim: Simulator) -> None:
    with client(sim) as http:
        second = cmc(http, start=101, limit=50).json()["data"]
        both = by_id(cmc(http, convert="EUR,BTC", limit=10).json()["data"], "slug")
        usd = by_id(cmc(http, limit=10).json()["data"], "slug")
        bad_convert = cmc(http, convert="XYZ")
        bad_limit = cmc(http, limit=0)
    assert [item["cmc_rank"] for item in second] == list(range(101, 151))
    quote = both["ethereum"]["quote"]
    assert set(quote) == {"EUR", "BTC"}
    assert quote["EUR"]["price"] == pytest.approx(usd["ethereum"]["quote"]["USD"]["price"] * 0.92)
    assert both["bitcoin"]["quote"]["BTC"]["price"] == pytest.approx(1.0)
    assert bad_convert.status_code == 400 and "convert" in bad_convert.json()["status"]["error_message"]
    assert bad_limit.status_code == 400


def test_sources_disagree_only_slightly(sim: Simulator) -> None:
    with client(sim) as http:
        gecko = by_id(cg(http, per_page=250).json())
        capped = by_id(cmc(http, limit=200).json()["data"], "slug")
        paprika_ = by_id(paprika(http).json())
    for cg_id, slug, paprika_id in (("ethereum", "ethereum", "eth-ethereum"), ("solana", "solana", "sol-solana"),
                                    ("ripple", "xrp", "xrp-xrp")):
        a, b = gecko[cg_id]["current_price"], capped[slug]["quote"]["USD"]["price"]
        c = paprika_[paprika_id]["quotes"]["USD"]["price"]
        assert a != b and b != c
        assert a == pytest.approx(b, rel=0.0025) and c == pytest.approx(b, rel=0.0025)


# --- CoinPaprika -----------------------------------------------------------------------------------


def test_coinpaprika_tickers_have_the_documented_shape(sim: Simulator) -> None:
    with client(sim) as http:
        free = paprika(http, quotes="USD").json()
        paid = paprika(http, key="paid-plan-key").json()
    assert len(free) == len(paid) == 200
    assert [item["rank"] for item in free] == list(range(1, 201))
    assert len({item["id"] for item in free}) == 200
    listed = by_id(paid)
    assert [item["id"] for item in free[:3]] == ["btc-bitcoin", "eth-ethereum", "usdt-tether"]
    assert {"uni-uniswap", "uni-unicorn-token", "xrp-xrp", "bnb-bnb"} <= set(listed)
    for item in paid:
        assert set(item) == PAPRIKA_ITEM_KEYS and set(item["quotes"]) == {"USD"}
        assert set(item["quotes"]["USD"]) == PAPRIKA_QUOTE_KEYS
        datetime.strptime(item["last_updated"], "%Y-%m-%dT%H:%M:%SZ")
        datetime.strptime(item["first_data_at"], "%Y-%m-%dT%H:%M:%SZ")
        usd = item["quotes"]["USD"]
        assert usd["market_cap"] == pytest.approx(usd["price"] * item["circulating_supply"], rel=1e-6, abs=1)
        assert usd["market_cap_change_24h"] == usd["percent_change_24h"]
        assert isinstance(usd["market_cap"], int) and isinstance(usd["price"], float)
    for item in free:  # the free plan leaves the circulating supply out
        assert set(item) == PAPRIKA_ITEM_KEYS - {"circulating_supply"}
    bitcoin, ethereum = listed["btc-bitcoin"], listed["eth-ethereum"]
    assert (bitcoin["symbol"], bitcoin["name"], bitcoin["max_supply"]) == ("BTC", "Bitcoin", 21_000_000)
    assert ethereum["max_supply"] == 0  # CoinPaprika's "no maximum"
    assert isinstance(bitcoin["total_supply"], int)
    assert listed["usdt-tether"]["beta_value"] == pytest.approx(0.0, abs=0.01)
    datetime.strptime(bitcoin["quotes"]["USD"]["ath_date"], "%Y-%m-%dT%H:%M:%SZ")


def test_coinpaprika_quotes(sim: Simulator) -> None:
    with client(sim) as http:
        usd = by_id(paprika(http).json())
        three = by_id(paprika(http, quotes="usd,EUR, btc").json())
        answers = [paprika(http, quotes=q) for q in ("XYZ", "USD,EUR,BTC,GBP", "", ",")]
        missing = http.get("/coinpaprika/v1/tickers/btc-bitcoin")
    assert set(three["eth-ethereum"]["quotes"]) == {"USD", "EUR", "BTC"}
    eth, btc = three["eth-ethereum"]["quotes"], three["btc-bitcoin"]["quotes"]
    assert eth["USD"]["price"] == usd["eth-ethereum"]["quotes"]["USD"]["price"]
    assert eth["EUR"]["price"] == pytest.approx(eth["USD"]["price"] * 0.92)
    assert eth["BTC"]["price"] == pytest.approx(eth["USD"]["price"] / btc["USD"]["price"])
    assert btc["BTC"]["price"] == pytest.approx(1.0) and btc["BTC"]["percent_change_24h"] == 0.0
    assert (btc["BTC"]["ath_price"], btc["BTC"]["ath_date"], btc["BTC"]["percent_from_price_ath"]) == (None,) * 3
    bad, too_many, empty, blank = answers
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid quotes"})
    assert (too_many.status_code, too_many.json()) == (400, {"error": "invalid quotes"})
    assert empty.status_code == 200 and set(empty.json()[0]["quotes"]) == {"USD"}  # the default
    assert blank.status_code == 400
    assert (missing.status_code, missing.json()) == (404, {"error": "not found"})


def test_coinpaprika_faults() -> None:
    faults = Faults.parse("rate-limit@coinpaprika=1,slow@coinpaprika=1", slow_seconds=0.2)
    with start_simulator(faults=faults, step_seconds=FROZEN) as sim, client(sim) as http:
        began = time.perf_counter()
        limited = paprika(http)
        assert time.perf_counter() - began >= 0.2
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
        assert limited.json() == {"error": "you have reached maximum request limit"}
        assert paprika(http).status_code == 200  # the retry succeeds
        assert cg(http).status_code == 200  # other sources are not hit
    with start_simulator(faults="server-error@coinpaprika=1", step_seconds=FROZEN) as sim, client(sim) as http:
        failed = paprika(http)
        assert (failed.status_code, failed.json()) == (500, {"error": "internal server error"})
    with start_simulator(faults="bad-key@coinpaprika=1", step_seconds=FROZEN) as sim, client(sim) as http:
        refused = paprika(http, key="echoed-key-123")
        assert (refused.status_code, refused.json()) == (403, {"error": "invalid API key: echoed-key-123"})
    with start_simulator(faults="garbage@coinpaprika=1", step_seconds=FROZEN) as sim, client(sim) as http:
        garbage = paprika(http)
        assert garbage.status_code == 200
        with pytest.raises(ValueError):
            garbage.json()
        stats = http.get("/_sim/stats").json()["sources"]["coinpaprika"]
    assert stats["faults"]["garbage"] == 1 and stats["requests"] == 1


def test_coinpaprika_malformed_and_outlier() -> None:
    with start_simulator(faults="malformed@coinpaprika,outlier@coinpaprika", step_seconds=FROZEN) as sim, \
            client(sim) as http:
        broken = paprika(http).json()
        ratios = []
        for _ in range(3):
            gecko = by_id(cg(http, per_page=250).json())
            tickers = by_id(paprika(http).json())
            ratios.append(tickers["eth-ethereum"]["quotes"]["USD"]["price"] / gecko["ethereum"]["current_price"])
    objects = [item for item in broken if isinstance(item, dict)]
    assert len(broken) == 200 and len(objects) == 199
    assert sum(item["quotes"]["USD"]["price"] == "n/a" for item in objects if "quotes" in item) == 1
    assert sum("id" not in item for item in objects) == 1
    assert [round(r) for r in ratios] == [1, 10, 10]  # cycles 2, 3 and 4: the outlier starts at the third


# --- faults ----------------------------------------------------------------------------------------


def test_fault_specs_parse() -> None:
    assert Faults.parse("none").names == () and Faults.parse("").names == ()
    assert Faults.parse("all").names == FAULT_NAMES
    assert Faults.parse("demo") == Faults.demo_default()
    scoped = Faults.parse("rate-limit@coingecko=0.5,server-error")
    assert scoped.probability("rate-limit", "coingecko") == 0.5
    assert scoped.probability("rate-limit", "coinmarketcap") == 0.0
    assert scoped.probability("server-error", "coinmarketcap-html") > 0
    assert Faults.parse("outlier@coingecko").outlier_source == "coingecko"
    assert Faults.parse("outlier@coinpaprika").outlier_source == "coinpaprika"
    assert Faults.parse("garbage@coinpaprika=0.5").probability("garbage", "coinpaprika") == 0.5
    for bad in ("bogus", "rate-limit=2", "rate-limit@nowhere", "slow=fast", "all,slow"):
        with pytest.raises(ValueError):
            Faults.parse(bad)


def test_rate_limit_answers_429_with_the_real_bodies_and_never_twice_in_a_row() -> None:
    with start_simulator(faults="rate-limit=1", seed=1, step_seconds=FROZEN) as sim, client(sim) as http:
        first = cg(http)
        assert first.status_code == 429 and first.headers["Retry-After"] == "1"
        assert first.json() == CG_RATE_LIMIT_BODY
        assert cg(http).status_code == 200  # the retry succeeds
        limited = cmc(http)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        assert limited.json()["status"]["error_code"] == 1008
        assert limited.json()["status"]["error_message"].startswith("You've exceeded your API Key's HTTP")
        assert cmc(http).status_code == 200
    always = Faults.parse("rate-limit=1", consecutive_errors=True)
    with start_simulator(faults=always, step_seconds=FROZEN) as sim, client(sim) as http:
        assert [cg(http).status_code for _ in range(3)] == [429, 429, 429]


def test_server_error_and_slow() -> None:
    faults = Faults.parse("server-error=1,slow@coinmarketcap=1", slow_seconds=0.3)
    with start_simulator(faults=faults, step_seconds=FROZEN) as sim, client(sim) as http:
        assert cg(http).status_code == 500
        assert cg(http).status_code == 200
        began = time.perf_counter()
        assert cmc(http).status_code == 500
        assert time.perf_counter() - began >= 0.3
        stats = http.get("/_sim/stats").json()
    assert stats["sources"]["coingecko"]["faults"]["server-error"] == 1
    assert stats["sources"]["coinmarketcap"]["faults"]["slow"] == 1


def test_malformed_breaks_a_few_items_in_each_way() -> None:
    with start_simulator(faults="malformed", step_seconds=FROZEN) as sim, client(sim) as http:
        gecko = cg(http, per_page=250).json()
        capped = cmc(http, limit=200).json()["data"]
    strings = [item for item in gecko if isinstance(item, str)]
    objects = [item for item in gecko if isinstance(item, dict)]
    assert len(strings) == 1 and len(gecko) == 200
    assert sum(item.get("current_price") == "n/a" for item in objects) == 1
    assert sum("id" not in item for item in objects) == 1
    cmc_objects = [item for item in capped if isinstance(item, dict)]
    assert len(cmc_objects) == 199
    assert sum(item["quote"]["USD"]["price"] == "n/a" for item in cmc_objects) == 1
    assert sum("id" not in item and "slug" not in item for item in cmc_objects) == 1


def test_outlier_starts_at_the_third_cycle_of_one_source() -> None:
    with start_simulator(faults="outlier", step_seconds=FROZEN) as sim, client(sim) as http:
        ratios = []
        for _ in range(4):
            cmc(http, start=101, limit=50)  # a later page is not a new cycle
            gecko = by_id(cg(http, per_page=250).json())
            listed = by_id(cmc(http, limit=200).json()["data"], "slug")
            ratios.append(listed["ethereum"]["quote"]["USD"]["price"] / gecko["ethereum"]["current_price"])
            other = listed["bitcoin"]["quote"]["USD"]["price"] / gecko["bitcoin"]["current_price"]
            assert other == pytest.approx(1.0, rel=0.003)
            ethereum = listed["ethereum"]
            assert ethereum["quote"]["USD"]["market_cap"] == pytest.approx(
                ethereum["quote"]["USD"]["price"] * ethereum["circulating_supply"])
        stats = http.get("/_sim/stats").json()["sources"]
    assert [round(r) for r in ratios] == [1, 1, 10, 10]
    assert stats["coinmarketcap"]["cycles"] == 4 and stats["coinmarketcap"]["faults"]["outlier"] == 3  # cycles 3, 4 and the later page in 4
    assert stats["coingecko"]["faults"]["outlier"] == 0


def test_demo_default_errors_are_rare_and_never_consecutive() -> None:
    demo = Faults.demo_default()
    assert set(demo.names) == {"rate-limit", "server-error", "malformed", "outlier"}
    assert (demo.outlier_source, demo.outlier_coin, demo.outlier_from_cycle) == ("coinmarketcap", "ethereum", 3)
    assert "outlier" in demo.describe()
    injector = FaultInjector(demo, seed=42)
    for source in ("coingecko", "coinmarketcap"):
        errors = [injector.decide(source, first_page=True).error is not None for _ in range(500)]
        assert 10 < sum(errors) < 150
        assert not any(a and b for a, b in zip(errors, errors[1:], strict=False))
    # start_simulator without faults runs the demo set
    assert Simulator().faults == demo


def test_fault_schedule_is_deterministic_by_seed() -> None:
    faults = Faults.parse("rate-limit=0.3,server-error=0.3,malformed=0.5")

    def schedule(seed: int) -> list[tuple[str | None, int | None]]:
        injector = FaultInjector(faults, seed)
        return [(d.error, d.malformed_seed) for d in (injector.decide("coingecko", True) for _ in range(50))]

    assert schedule(3) == schedule(3)
    assert schedule(3) != schedule(4)


# --- time and determinism --------------------------------------------------------------------------


def test_prices_move_with_time_and_stand_still_within_a_step() -> None:
    with start_simulator(faults="none", step_seconds=FROZEN) as still, client(still) as http:
        assert cg(http).json() == cg(http).json()
    with start_simulator(faults="none", step_seconds=0.05) as moving, client(moving) as http:
        before = by_id(cg(http).json())
        time.sleep(0.3)
        after = by_id(cg(http).json())
        tick = http.get("/_sim/stats").json()["tick"]
    assert tick >= 5
    assert before["ethereum"]["current_price"] != after["ethereum"]["current_price"]
    assert before["ethereum"]["current_price"] == pytest.approx(after["ethereum"]["current_price"], rel=0.05)


def test_market_is_deterministic_by_seed() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    one, two, other = (Market(seed, COINS[:50], start=start) for seed in (3, 3, 4))
    for market in (one, two, other):
        market.advance(100)
    assert one.prices() == two.prices() != other.prices()
    now = start + timedelta(seconds=100)
    assert one.coingecko_markets("eur", now=now) == two.coingecko_markets("eur", now=now)
    assert one.coinmarketcap_listings(("USD",), now=now) == two.coinmarketcap_listings(("USD",), now=now)
    assert one.coinpaprika_tickers(("USD", "BTC"), now=now) == two.coinpaprika_tickers(("USD", "BTC"), now=now)
    # the wall clock drives the steps
    assert one.step(start + timedelta(seconds=150.5)) == 50 and one.tick == 150
    assert one.step(start + timedelta(seconds=150.9)) == 0


def test_same_seed_serves_the_same_prices() -> None:
    bodies = []
    for _ in range(2):
        with start_simulator(faults="none", seed=11, step_seconds=FROZEN) as sim, client(sim) as http:
            bodies.append([item["current_price"] for item in cg(http, per_page=250).json()])
    assert bodies[0] == bodies[1]


# --- HTML pages ------------------------------------------------------------------------------------


def test_html_pages_without_a_renderer_are_404(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, PAGES_MODULE, None)  # as if pages.py did not exist
    with client(sim) as http:
        for path in ("/coingecko-www/en?page=1", "/cmc-www/?page=1"):
            answer = http.get(path)
            assert answer.status_code == 404 and PAGES_MODULE in answer.text


def test_html_pages_render_market_items(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[dict[str, Any]], Any, str]] = []
    fake = types.ModuleType(PAGES_MODULE)

    def render_coingecko_html(items: list[dict[str, Any]], page: int, lang: str) -> str:
        calls.append(("coingecko", items, page, lang))
        return f"<html lang='{lang}'>{len(items)}</html>"

    def render_coinmarketcap_html(items: list[dict[str, Any]], lang: str) -> str:
        calls.append(("coinmarketcap", items, None, lang))
        return f"<html lang='{lang}'>{len(items)}</html>"

    fake.render_coingecko_html = render_coingecko_html  # type: ignore[attr-defined]
    fake.render_coinmarketcap_html = render_coinmarketcap_html  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PAGES_MODULE, fake)
    with client(sim) as http:
        page2 = http.get("/coingecko-www/en", params={"page": 2})
        french = http.get("/coingecko-www/fr", params={"page": 2})
        listing = http.get("/cmc-www/", params={"page": 1})
        listing_fr = http.get("/cmc-www/fr/", params={"page": 1})
        beyond = http.get("/coingecko-www/en", params={"page": 3})
    assert page2.status_code == 200 and page2.headers["content-type"].startswith("text/html")
    assert page2.text == "<html lang='en'>100</html>" and french.status_code == 200
    (_, en_items, page, lang), (_, fr_items, _, fr_lang) = calls[0], calls[1]
    assert (page, lang, fr_lang) == (2, "en", "fr")
    assert en_items[0]["market_cap_rank"] == 101 and "price_change_percentage_7d_in_currency" in en_items[0]
    assert fr_items[0]["current_price"] == pytest.approx(en_items[0]["current_price"] * 0.92, rel=0.003)
    assert listing.status_code == listing_fr.status_code == 200
    assert set(calls[2][1][0]["quote"]) == {"USD"} and set(calls[3][1][0]["quote"]) == {"EUR"}
    assert len(calls[2][1]) == 100 and calls[2][3] == "en" and calls[3][3] == "fr"
    assert beyond.status_code == 404


def test_html_sources_get_faults_too(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType(PAGES_MODULE)
    fake.render_coingecko_html = lambda items, page, lang: json.dumps(items)  # type: ignore[attr-defined]
    fake.render_coinmarketcap_html = lambda items, lang: json.dumps(items)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PAGES_MODULE, fake)
    faults = Faults.parse("rate-limit@coinmarketcap-html=1,malformed@coingecko-html=1")
    with start_simulator(faults=faults, step_seconds=FROZEN) as sim, client(sim) as http:
        limited = http.get("/cmc-www/?page=1")
        broken = http.get("/coingecko-www/en?page=1").json()
        api = cg(http)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1" and "<html" in limited.text
    assert sum(item["current_price"] == "n/a" for item in broken) == 3  # HTML: prices only
    assert api.status_code == 200 and all(isinstance(i, dict) and "id" in i for i in api.json())


# --- plumbing --------------------------------------------------------------------------------------


def test_settings_overrides_point_cryptoviz_at_the_simulator(sim: Simulator) -> None:
    overrides = sim.settings_overrides()
    settings = load_settings(**overrides)
    assert settings.coingecko_base_url == f"{sim.url}/api/v3"
    assert settings.coinmarketcap_base_url == sim.url
    assert settings.coingecko_html_base_url == f"{sim.url}/coingecko-www"
    assert settings.coinmarketcap_html_base_url == f"{sim.url}/cmc-www"
    assert settings.coinpaprika_base_url == f"{sim.url}/coinpaprika/v1"
    assert settings.coinmarketcap_api_key is not None
    assert sim.url.startswith("http://127.0.0.1:")
    lines = sim.env_lines()
    assert lines[0] == f"export CRYPTOVIZ_COINGECKO_BASE_URL={sim.url}/api/v3"
    assert f"export CRYPTOVIZ_COINMARKETCAP_BASE_URL={sim.url}" in lines
    assert "export CRYPTOVIZ_COINMARKETCAP_API_KEY=simulator-placeholder-key" in lines
    assert f"export CRYPTOVIZ_COINPAPRIKA_BASE_URL={sim.url}/coinpaprika/v1" in lines
    feeds = sim.feeds.url
    assert feeds.startswith("ws://127.0.0.1:") and feeds != sim.url.replace("http", "ws")
    assert (settings.binance_ws_url, settings.coinbase_ws_url, settings.kraken_ws_url) == (
        f"{feeds}/binance", f"{feeds}/coinbase", f"{feeds}/kraken/v2")
    assert f"export CRYPTOVIZ_KRAKEN_WS_URL={feeds}/kraken/v2" in lines
    assert len(lines) == 9


def test_stats_count_requests_per_route(sim: Simulator) -> None:
    with client(sim) as http:
        cg(http)
        cg(http, page=2)
        cmc(http)
        paprika(http)
        http.get("/nowhere")
        stats = http.get("/_sim/stats").json()
    assert stats["requests"] == {CG_MARKETS: 2, CMC_LISTINGS: 1, PAPRIKA_TICKERS: 1, "not-found": 1}
    assert stats["sources"]["coinpaprika"]["requests"] == stats["sources"]["coinpaprika"]["cycles"] == 1
    assert stats["sources"]["coingecko"]["requests"] == 2 and stats["sources"]["coingecko"]["cycles"] == 1
    assert stats["seed"] == 7


def test_stop_releases_the_port() -> None:
    sim = Simulator(faults="none").start()
    url = sim.url
    sim.stop()
    with pytest.raises(RuntimeError):
        _ = sim.url
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=2) as http:
        http.get(url + "/api/v3/ping")


# --- history: CoinGecko's market_chart, CoinMarketCap's historical quotes ----------------------------

CHART = "/api/v3/coins/{}/market_chart"
CMC_HISTORICAL = "/v2/cryptocurrency/quotes/historical"


def chart(http: httpx.Client, coin: str = "bitcoin", **params: Any) -> httpx.Response:
    return http.get(CHART.format(coin), params={"vs_currency": "usd", **params})


@pytest.fixture(scope="module")
def chart_validator() -> Draft202012Validator:
    spec = json.loads((FIXTURES / "coingecko" / "coingecko-demo-api.openapi.json").read_text())
    return Draft202012Validator(_json_schema(spec["components"]["schemas"]["CoinsMarketChart"]))


@pytest.mark.parametrize(("days", "step", "points"), [(1, 300, 289), (2, 3600, 49), (90, 3600, 2161),
                                                      (91, 86_400, 92), (365, 86_400, 366)])
def test_market_chart_has_the_documented_shape_and_granularity(sim: Simulator, chart_validator: Draft202012Validator,
                                                               days: int, step: int, points: int) -> None:
    with client(sim) as http:
        answer = chart(http, days=days)
    assert answer.status_code == 200
    doc = answer.json()
    chart_validator.validate(doc)
    stamps = [ms for ms, _ in doc["prices"]]
    assert [ms for ms, _ in doc["market_caps"]] == [ms for ms, _ in doc["total_volumes"]] == stamps
    assert len(stamps) == points
    *grid, now = [ms / 1000 for ms in stamps]
    assert all(t % step == 0 for t in grid)  # on the grid: 5 minutes, hours, days at 00:00 UTC
    assert all(b - a == step for a, b in zip(grid, grid[1:], strict=False))
    assert 0 < now - grid[-1] <= step and now - grid[0] <= days * 86_400
    assert all(price > 0 for _, price in doc["prices"])


def test_market_chart_past_ends_at_the_live_price_and_agrees_with_the_changes(sim: Simulator) -> None:
    with client(sim) as http:
        live = by_id(cg(http, per_page=250, price_change_percentage="24h").json())
        doc = chart(http, "ethereum", days=2).json()
    bitcoin_now = doc["prices"][-1][1]
    spec = next(c for c in sim.coins if c.cg_id == "ethereum")
    assert bitcoin_now == spec.price  # the market stands still: the past ends at the start price
    assert live["ethereum"]["current_price"] == pytest.approx(bitcoin_now, rel=0.002)  # the live noise
    # the past passes through the price the live routes measure "24 h" against
    start = sim.market.started_at.timestamp()
    then = sim.market.past_prices("ethereum", [start - 86_400])[0]
    change = (sim.market.price("ethereum") / then - 1) * 100
    assert live["ethereum"]["price_change_percentage_24h_in_currency"] == pytest.approx(change, rel=0.01, abs=0.3)


def test_market_chart_granularities_agree_where_they_meet(sim: Simulator) -> None:
    with client(sim) as http:
        series = {days: dict(chart(http, "solana", days=days).json()["prices"][:-1]) for days in (1, 30, 200)}
    for fine, coarse in ((1, 30), (30, 200)):
        common = set(series[fine]) & set(series[coarse])
        assert len(common) >= (24 if fine == 1 else 30)
        assert all(series[fine][t] == series[coarse][t] for t in common)


def test_market_chart_past_is_deterministic_by_seed() -> None:
    start = datetime(2026, 3, 1, 9, 30, 7, tzinfo=UTC)
    one, two, other = (Market(seed, COINS[:20], start=start) for seed in (5, 5, 6))
    now = start + timedelta(seconds=3)
    charts = [m.coingecko_market_chart("bitcoin", "eur", 30, now=now) for m in (one, two, other)]
    assert charts[0] == charts[1] and charts[0]["prices"][:-1] != charts[2]["prices"][:-1]
    # later, the part already served stays the same
    later = dict(one.coingecko_market_chart("bitcoin", "eur", 30, now=now + timedelta(hours=1))["prices"][:-1])
    earlier = dict(charts[0]["prices"][:-1])
    common = set(later) & set(earlier)
    assert len(common) == len(earlier) - 1 and all(later[t] == earlier[t] for t in common)
    btc = one.coingecko_market_chart("bitcoin", "btc", 2, now=now)
    assert all(price == pytest.approx(1.0) for _, price in btc["prices"])


def test_market_chart_after_the_start_follows_the_walk() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    market = Market(9, COINS[:10], start=start, step_seconds=1.0)
    for minute in range(1, 31):
        market.step(start + timedelta(minutes=minute))
    doc = market.coingecko_market_chart("bitcoin", days=1, now=start + timedelta(minutes=30))
    after = [(ms, p) for ms, p in doc["prices"] if ms > start.timestamp() * 1000]
    assert len(after) == 6  # 5-minute marks after the start, then now
    assert after[-1][1] == market.price("bitcoin")
    assert len({p for _, p in after}) > 3  # the walk moved


def test_market_chart_refusals(sim: Simulator) -> None:
    with client(sim) as http:
        too_far = chart(http, days=366)
        max_days = chart(http, days="max")
        unknown = chart(http, "no-such-coin", days=1)
        no_currency = http.get(CHART.format("bitcoin"), params={"days": 1})
        no_days = chart(http)
        stats = http.get("/_sim/stats").json()
    for answer in (too_far, max_days):
        assert answer.status_code == 401
        assert answer.json()["error"]["status"]["error_code"] == 10012
        assert "within the past 365 days" in answer.json()["error"]["status"]["error_message"]
    assert (unknown.status_code, unknown.json()) == (404, {"error": "coin not found"})
    assert (no_currency.status_code, no_currency.json()) == (400, {"error": "Missing parameter vs_currency"})
    assert (no_days.status_code, no_days.json()) == (400, {"error": "Missing parameter days"})
    assert stats["requests"]["/api/v3/coins/{id}/market_chart"] == 5


def test_market_chart_gets_the_faults_of_coingecko_on_a_schedule_of_its_own() -> None:
    with start_simulator(faults="rate-limit@coingecko=1,malformed", seed=1, step_seconds=FROZEN) as sim, \
            client(sim) as http:
        limited = chart(http, days=1)
        broken = chart(http, days=1).json()
        markets = cg(http)  # the live route's first request: its own schedule, its own fault
        stats = http.get("/_sim/stats").json()
    assert limited.status_code == 429 and limited.json() == CG_RATE_LIMIT_BODY
    bad = [p for p in broken["prices"] if not (isinstance(p, list) and len(p) == 2 and isinstance(p[1], float))]
    assert len(bad) == 3 and len(broken["prices"]) == 289
    assert markets.status_code == 429
    assert stats["sources"]["coingecko/market_chart"]["requests"] == 2
    assert stats["sources"]["coingecko"] == {"requests": 1, "cycles": 0, "faults": {
        **dict.fromkeys(FAULT_NAMES, 0), "rate-limit": 1}}


def test_cmc_historical_is_refused_as_on_the_free_plan(sim: Simulator) -> None:
    with client(sim) as http:
        refused = http.get(CMC_HISTORICAL, params={"id": 1}, headers=KEY)
        no_key = http.get(CMC_HISTORICAL, params={"id": 1})
    assert refused.status_code == 403
    assert refused.json()["status"]["error_code"] == 1006
    assert refused.json()["status"]["error_message"] == "Your API Key subscription plan doesn't support this endpoint."
    assert no_key.status_code == 401


def test_cmc_historical_on_a_paid_plan_serves_the_same_past() -> None:
    with start_simulator(faults="none", seed=7, step_seconds=FROZEN, cmc_historical=True) as sim, \
            client(sim) as http:
        end = datetime.now(UTC)
        answer = http.get(CMC_HISTORICAL, headers=KEY, params={
            "id": 1, "time_start": (end - timedelta(days=2)).isoformat(), "time_end": end.isoformat(),
            "interval": "hourly", "count": 100, "convert": "USD"})
        gecko = dict(chart(http, days=2).json()["prices"])
        unknown = http.get(CMC_HISTORICAL, headers=KEY, params={"id": 99_999_999})
    assert answer.status_code == 200
    coin = answer.json()["data"]["1"]
    assert (coin["symbol"], coin["is_active"], len(coin["quotes"])) == ("BTC", 1, 48)
    for quote in coin["quotes"]:
        at = datetime.fromisoformat(quote["timestamp"].replace("Z", "+00:00"))
        assert quote["quote"]["USD"]["price"] == gecko[round(at.timestamp() * 1000)]
    assert unknown.status_code == 400 and '"id"' in unknown.json()["status"]["error_message"]


# --- the exchanges' websocket feeds ------------------------------------------------------------------

BINANCE_FIELDS = set(json.loads((FIXTURES / "binance" / "mini-ticker-arr-raw.json").read_text())[0])
COINBASE_TICKER_FIELDS = set(json.loads((FIXTURES / "coinbase" / "ticker-batch.json").read_text())
                             ["events"][0]["tickers"][0])
COINBASE_ENVELOPE_FIELDS = set(json.loads((FIXTURES / "coinbase" / "ticker-batch.json").read_text()))
KRAKEN_FIELDS = set(json.loads((FIXTURES / "kraken" / "ticker-update.json").read_text())["data"][0])


def ws(simulator: Simulator, path: str) -> Any:
    return connect(f"{simulator.feeds.url}{path}", open_timeout=5, close_timeout=1)


def received(connection: Any, count: int, timeout: float = 5.0) -> list[Any]:
    """The next ``count`` messages, decoded (binary junk as bytes)."""
    out: list[Any] = []
    for _ in range(count):
        message = connection.recv(timeout=timeout)
        try:
            out.append(json.loads(message))
        except (ValueError, UnicodeDecodeError):
            out.append(message)
    return out


@pytest.fixture
def feed_sim() -> Iterator[Simulator]:
    with start_simulator(faults="none", seed=7, step_seconds=FROZEN, feed_tick=0.1) as running:
        yield running


def test_binance_streams_every_pair_in_the_documented_shape(feed_sim: Simulator) -> None:
    with ws(feed_sim, "/binance/stream?streams=!miniTicker@arr") as combined, \
            ws(feed_sim, "/binance/ws/!miniTicker@arr") as raw, client(feed_sim) as http:
        wrapped = received(combined, 1)[0]
        array = received(raw, 1)[0]
        gecko = by_id(cg(http, per_page=250).json())
    assert wrapped["stream"] == "!miniTicker@arr" and isinstance(array, list)
    items = {item["s"]: item for item in wrapped["data"]}
    assert all(set(item) == BINANCE_FIELDS and item["e"] == "24hrMiniTicker" for item in items.values())
    assert all(isinstance(item[k], str) for item in items.values() for k in "cohlvq")
    assert {"BTCUSDT", "BTCUSDC", "ETHBTC", "USDCUSDT", "UNIUSDT", "POLUSDT", "RENDERUSDT"} <= set(items)
    assert "USDTUSDT" not in items and not any(s.startswith(("BABYDOGE", "PICO")) for s in items)
    assert 400 <= len(items) <= 600  # a benchmark-sized market
    # the REST routes' prices through the exchange's own small noise; UNI is uniswap's (the larger UNI)
    tether = gecko["tether"]["current_price"]
    assert float(items["BTCUSDT"]["c"]) * tether == pytest.approx(gecko["bitcoin"]["current_price"], rel=0.003)
    assert float(items["UNIUSDT"]["c"]) * tether == pytest.approx(gecko["uniswap"]["current_price"], rel=0.003)


def test_binance_requests_acknowledgements_errors_and_its_message_limit(feed_sim: Simulator) -> None:
    with ws(feed_sim, "/binance/ws") as connection:
        connection.send(json.dumps({"method": "SUBSCRIBE", "params": ["!miniTicker@arr"], "id": 1}))
        ack, data = received(connection, 2)
        connection.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
        connection.send("{not json")
        replies = [m for m in received(connection, 6) if isinstance(m, dict)]
        with pytest.raises(ConnectionClosed) as closed:
            for n in range(6):  # more than 5 messages a second
                connection.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 10 + n}))
            while True:
                connection.recv(timeout=5)
    assert ack == {"result": None, "id": 1} and isinstance(data, list)
    assert {"result": ["!miniTicker@arr"], "id": 3} in replies
    assert {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"} in replies
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_coinbase_subscriptions_heartbeats_and_sequence_numbers(feed_sim: Simulator) -> None:
    with ws(feed_sim, "/coinbase") as connection:
        connection.send(json.dumps({"type": "subscribe", "channel": "ticker_batch",
                                    "product_ids": ["BTC-USD", "ETH-USDT", "USDT-USDC", "SOL-USDC"]}))
        connection.send(json.dumps({"type": "subscribe", "channel": "heartbeats"}))
        connection.send(json.dumps({"type": "subscribe", "channel": "ticker_batch", "product_ids": ["NOPE-USD"]}))
        messages = received(connection, 25)
    envelopes = [m for m in messages if "channel" in m]
    assert all(set(m) == COINBASE_ENVELOPE_FIELDS for m in envelopes)
    numbers = [m["sequence_num"] for m in envelopes]
    assert numbers == list(range(len(numbers)))  # one count for the whole connection
    channels = [m["channel"] for m in envelopes]
    assert channels[:2] == ["subscriptions", "ticker_batch"] and "heartbeats" in channels
    snapshot, update = [m for m in envelopes if m["channel"] == "ticker_batch"][:2]
    assert snapshot["events"][0]["type"] == "snapshot" and update["events"][0]["type"] == "update"
    tickers = {t["product_id"]: t for t in update["events"][0]["tickers"]}
    assert set(tickers) == {"BTC-USD", "ETH-USDT", "USDT-USDC", "SOL-USD"}  # SOL-USDC answers with SOL-USD data
    assert all(set(t) == COINBASE_TICKER_FIELDS for t in tickers.values())
    heartbeat = next(m for m in envelopes if m["channel"] == "heartbeats")["events"][0]
    assert set(heartbeat) == {"current_time", "heartbeat_counter"}
    assert {"type": "error", "message": "Failed to subscribe", "reason": "NOPE-USD is not a valid product"} in messages


def test_coinbase_closes_a_connection_that_does_not_subscribe_in_time(feed_sim: Simulator) -> None:
    feed_sim.feeds.subscribe_timeout = 0.3
    with ws(feed_sim, "/coinbase") as connection, pytest.raises(ConnectionClosed) as closed:
        connection.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_kraken_status_acknowledgements_snapshot_updates_and_heartbeats(feed_sim: Simulator) -> None:
    with ws(feed_sim, "/kraken/v2") as connection:
        status = received(connection, 1)[0]
        connection.send(json.dumps({"method": "subscribe", "req_id": 4,
                                    "params": {"channel": "ticker", "symbol": ["BTC/USD", "ETH/USDC", "XBT/USD"]}}))
        messages = received(connection, 6)
    assert status["channel"] == "status" and status["data"][0]["system"] == "online"
    acks = [m for m in messages if m.get("method") == "subscribe"]
    assert [(a["success"], a.get("result", {}).get("symbol"), a["req_id"]) for a in acks] == [
        (True, "BTC/USD", 4), (True, "ETH/USDC", 4), (False, None, 4)]
    assert acks[2]["error"] == "Currency pair not supported XBT/USD"  # v2 names it BTC/USD
    snapshot, update = [m for m in messages if m.get("channel") == "ticker"][:2]
    assert snapshot["type"] == "snapshot" and update["type"] == "update"
    assert {i["symbol"] for i in update["data"]} == {"BTC/USD", "ETH/USDC"}
    assert all(set(i) == KRAKEN_FIELDS for i in update["data"])
    assert all(isinstance(i["last"], float) for i in update["data"])
    with start_simulator(faults="none", step_seconds=FROZEN, feed_tick=5.0) as quiet, ws(quiet, "/kraken/v2") as calm:
        calm.send(json.dumps({"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD"]}}))
        later = received(calm, 5)
    assert {"channel": "heartbeat"} in later  # a second without data


def test_an_unknown_feed_path_is_refused_at_the_handshake(feed_sim: Simulator) -> None:
    with pytest.raises(InvalidStatus) as refused, ws(feed_sim, "/bitfinex"):
        pass
    assert refused.value.response.status_code == 404


def test_feed_faults_parse_and_stay_out_of_all() -> None:
    faults = Faults.parse("stall@binance,disconnect@kraken=0.5,sequence-gap@coinbase,flood", feed_fault_after=2)
    assert faults.probability("stall", "binance") == 1.0 and faults.probability("stall", "kraken") == 0.0
    assert faults.probability("disconnect", "kraken") == 0.5 and faults.feed_fault_after == 2
    assert set(faults.names) == {"stall", "disconnect", "sequence-gap", "flood"}
    assert not set(Faults.parse("all").names) & set(FEED_FAULT_NAMES)
    assert "stall@binance" in faults.describe()
    with pytest.raises(ValueError, match="unknown source"):
        Faults.parse("stall@bitstamp")


def test_feed_frame_faults_break_frames_skip_numbers_and_flood() -> None:
    faults = Faults.parse("malformed@binance,garbage@binance=1,sequence-gap@coinbase=1,flood@kraken",
                          flood_factor=4)
    with start_simulator(faults=faults, step_seconds=FROZEN, feed_tick=0.1, n_coins=20) as sim:
        with ws(sim, "/binance/stream?streams=!miniTicker@arr") as connection:
            binance_frames = received(connection, 6)
        with ws(sim, "/coinbase") as connection:
            connection.send(json.dumps({"type": "subscribe", "channel": "ticker_batch", "product_ids": ["BTC-USD"]}))
            numbers = [m["sequence_num"] for m in received(connection, 6)]
        with ws(sim, "/kraken/v2") as connection:
            connection.send(json.dumps({"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD"]}}))
            kraken_frames = received(connection, 12)
        stats = sim.stats()["feeds"]
    data = [f for f in binance_frames if isinstance(f, dict)]
    junk = [f for f in binance_frames if not isinstance(f, dict)]
    broken = [f["data"] for f in data if any(not isinstance(i, dict) or i.get("c") == "n/a" or "s" not in i
                                                for i in f["data"])]
    assert broken and all(len(items) == 3 for items in broken)  # price "n/a", no symbol, a bare string
    assert [i.get("c") == "n/a" for i in broken[0] if isinstance(i, dict)] == [True, False]
    assert junk  # a frame cut short or binary junk
    assert [b - a for a, b in zip(numbers[2:], numbers[3:], strict=False)] == [4, 4, 4]  # three skipped a tick
    updates = [f for f in kraken_frames if f.get("type") == "update"]
    assert len(updates) >= 8  # four copies a tick
    assert stats["binance"]["faults"]["malformed"] >= 2 and stats["coinbase"]["faults"]["sequence-gap"] >= 3
    assert stats["kraken"]["faults"]["flood"] >= 2


def test_feed_connection_faults() -> None:
    faults = Faults.parse("server-close@binance,disconnect@coinbase,stall@kraken", feed_fault_after=0.3)
    with start_simulator(faults=faults, step_seconds=FROZEN, feed_tick=0.1, n_coins=20) as sim:
        with ws(sim, "/binance/stream?streams=!miniTicker@arr") as connection, pytest.raises(ConnectionClosed) as ended:
            last = None
            while True:
                last = json.loads(connection.recv(timeout=5))
        assert last == {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": last["data"]["E"]}}
        assert ended.value.rcvd is not None and ended.value.rcvd.code == 1001
        with ws(sim, "/coinbase") as connection, pytest.raises(ConnectionClosed) as dropped:
            connection.send(json.dumps({"type": "subscribe", "channel": "heartbeats"}))
            while True:
                connection.recv(timeout=5)
        assert dropped.value.rcvd is None  # no close frame: the connection dropped
        with ws(sim, "/kraken/v2") as connection:
            connection.send(json.dumps({"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD"]}}))
            time.sleep(0.5)
            while True:  # what came before the stall
                try:
                    connection.recv(timeout=0)
                except TimeoutError:
                    break
            with pytest.raises(TimeoutError):
                connection.recv(timeout=0.5)  # silent, yet open
        stats = sim.stats()["feeds"]
    assert {name: stats[name]["faults"] for name in stats} == {
        "binance": {"server-close": 1}, "coinbase": {"disconnect": 1}, "kraken": {"stall": 1}}


def test_feed_prices_are_computed_once_a_market_step() -> None:
    with start_simulator(faults="none", step_seconds=FROZEN) as sim:
        first = sim.feeds.priced("binance")
        assert sim.feeds.priced("binance") is first
        sim.market.advance()
        moved = sim.feeds.priced("binance")
    assert moved is not first and moved["BTCUSDT"].price != first["BTCUSDT"].price


def test_stopping_the_simulator_releases_the_feed_port() -> None:
    sim = Simulator(faults="none").start()
    url = f"{sim.feeds.url}/coinbase"
    sim.stop()
    with pytest.raises(OSError):
        connect(url, open_timeout=2, legacy=True)


def test_feed_pairs_can_be_capped_and_ticks_heard() -> None:
    heard: list[tuple[str, list[str], float]] = []
    sim = Simulator(faults="none", seed=7, step_seconds=FROZEN, feed_tick=0.1)
    sim.feeds.max_pairs = 5
    sim.feeds.on_tick = lambda exchange, pairs, at: heard.append((exchange, pairs, at))
    with sim, ws(sim, "/binance/stream?streams=!miniTicker@arr") as connection:
        before = time.time()
        frame = received(connection, 1)[0]
    stats = sim.stats()["feeds"]["binance"]  # once stopped: a tick is counted after its frame is sent
    listed = list(sim.feeds.listings("binance"))
    assert len(listed) == 5 and listed[0] == "BTCUSDT"  # the largest coins' pairs first
    assert [item["s"] for item in frame["data"]] == listed
    exchange, pairs, at = heard[0]
    assert exchange == "binance" and pairs == listed
    assert before - 0.2 <= at <= min(item["E"] for item in frame["data"]) / 1000 + 0.001
    assert stats["ticks"] >= 1 and stats["updates"] == 5 * stats["ticks"]
    coinbase = sim.feeds.listings("coinbase")  # -USDC aliases stay beside the pairs they answer for
    assert len([p for p, listed in coinbase.items() if listed.served_as is None]) == 5
    assert {listed.served_as for listed in coinbase.values() if listed.served_as} <= set(coinbase)
    assert "BTC-USDC" in coinbase
