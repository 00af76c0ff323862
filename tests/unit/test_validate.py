from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cryptoviz import validate as v
from cryptoviz.models import CoinSnapshot, SourceQuote, decode_snapshot, encode_snapshot
from cryptoviz.reconcile import reconcile
from cryptoviz.validate import validate_quotes

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
MAX_STALENESS = 900.0
TOLERANCE = 0.1


def make_quote(**overrides: Any) -> SourceQuote:
    fields: dict[str, Any] = {
        "source": "coingecko", "source_id": "bitcoin", "symbol": "BTC", "name": "Bitcoin", "slug": None,
        "rank": 1, "price": 50_000.0, "market_cap": 50_000.0 * 19_000_000, "volume_24h": 2.5e10,
        "change_1h": 0.1, "change_24h": -1.5, "change_7d": 4.0, "circulating_supply": 19_000_000.0,
        "total_supply": 19_000_000.0, "max_supply": 21_000_000.0,
        "last_updated": NOW - timedelta(seconds=30), "collected_at": NOW, "currency": "usd",
    }
    fields.update(overrides)
    return SourceQuote(**fields)


def run(*quotes: SourceQuote, now: datetime = NOW) -> tuple[list[SourceQuote], list[Any]]:
    return validate_quotes(quotes, now=now, max_staleness=MAX_STALENESS, market_cap_tolerance=TOLERANCE)


REJECTED = [
    pytest.param({"price": None}, v.PRICE_MISSING, "price", id="price-missing"),
    pytest.param({"price": math.nan}, v.PRICE_NOT_FINITE, "price", id="price-nan"),
    pytest.param({"price": math.inf}, v.PRICE_NOT_FINITE, "price", id="price-inf"),
    pytest.param({"price": -math.inf}, v.PRICE_NOT_FINITE, "price", id="price-minus-inf"),
    pytest.param({"price": 0.0}, v.PRICE_NOT_POSITIVE, "price", id="price-zero"),
    pytest.param({"price": -3.0}, v.PRICE_NOT_POSITIVE, "price", id="price-negative"),
    pytest.param({"market_cap": math.nan}, v.MARKET_CAP_NOT_FINITE, "market_cap", id="cap-nan"),
    pytest.param({"market_cap": math.inf}, v.MARKET_CAP_NOT_FINITE, "market_cap", id="cap-inf"),
    pytest.param({"market_cap": -1.0}, v.MARKET_CAP_NEGATIVE, "market_cap", id="cap-negative"),
    pytest.param({"volume_24h": math.inf}, v.VOLUME_NOT_FINITE, "volume_24h", id="volume-inf"),
    pytest.param({"volume_24h": -0.5}, v.VOLUME_NEGATIVE, "volume_24h", id="volume-negative"),
    pytest.param({"circulating_supply": -1.0}, v.SUPPLY_NEGATIVE, "circulating_supply", id="circ-negative"),
    pytest.param({"max_supply": math.nan}, v.SUPPLY_NOT_FINITE, "max_supply", id="max-supply-nan"),
    pytest.param({"total_supply": math.inf}, v.SUPPLY_NOT_FINITE, "total_supply", id="total-supply-inf"),
    pytest.param({"change_24h": math.nan}, v.CHANGE_NOT_FINITE, "change_24h", id="change-nan"),
    pytest.param({"market_cap": 2 * 50_000.0 * 19_000_000}, v.MARKET_CAP_MISMATCH, "market_cap",
                 id="cap-twice-price-times-supply"),
    pytest.param({"market_cap": 0.5 * 50_000.0 * 19_000_000}, v.MARKET_CAP_MISMATCH, "market_cap",
                 id="cap-half-price-times-supply"),
    pytest.param({"price": 1e-12, "circulating_supply": 1e20, "market_cap": 2e8}, v.MARKET_CAP_MISMATCH,
                 "market_cap", id="tiny-price-mismatch-still-caught"),
    pytest.param({"price": 1e300, "circulating_supply": 1e300, "market_cap": 1e10}, v.MARKET_CAP_MISMATCH,
                 "market_cap", id="implied-cap-overflows"),
    pytest.param({"last_updated": NOW + timedelta(seconds=600)}, v.SOURCE_TIME_IN_FUTURE, "last_updated",
                 id="last-updated-in-future"),
    pytest.param({"last_updated": None, "collected_at": NOW + timedelta(seconds=121)},
                 v.SOURCE_TIME_IN_FUTURE, "collected_at", id="collected-at-in-future"),
    pytest.param({"last_updated": NOW - timedelta(seconds=901)}, v.STALE, "last_updated", id="stale"),
    pytest.param({"last_updated": None, "collected_at": NOW - timedelta(hours=2)}, v.STALE, "collected_at",
                 id="stale-by-collected-at"),
]


@pytest.mark.parametrize(("overrides", "reason", "field"), REJECTED)
def test_rule_rejects_with_reason(overrides: dict[str, Any], reason: str, field: str) -> None:
    quote = make_quote(source="coinmarketcap", source_id="1", **overrides)
    kept, rejected = run(quote)
    assert kept == []
    assert len(rejected) == 1
    r = rejected[0]
    assert (r.source, r.coin, r.field, r.reason) == ("coinmarketcap", "1", field, reason)
    assert r.detail


KEPT = [
    pytest.param({}, id="plain"),
    pytest.param({"price": 1e-12, "circulating_supply": 1e20, "market_cap": 1e8, "volume_24h": 1e-3},
                 id="tiny-price"),
    pytest.param({"price": 100_000.0, "circulating_supply": 1e8, "market_cap": 1e13, "volume_24h": 1e12},
                 id="huge-cap"),
    pytest.param({"market_cap": 50_000.0 * 19_000_000 * 1.09}, id="cap-within-tolerance"),
    pytest.param({"market_cap": 0.0}, id="cap-zero-not-compared"),
    pytest.param({"circulating_supply": None}, id="no-supply-not-compared"),
    pytest.param({"market_cap": None, "volume_24h": None}, id="no-cap-no-volume"),
    pytest.param({"volume_24h": 0.0}, id="volume-zero"),
    pytest.param({"change_1h": -99.9, "change_7d": 1e4}, id="large-changes"),
    pytest.param({"last_updated": NOW + timedelta(seconds=120)}, id="within-clock-skew"),
    pytest.param({"last_updated": NOW - timedelta(seconds=900)}, id="exactly-max-staleness"),
    pytest.param({"last_updated": None, "collected_at": NOW}, id="no-last-updated"),
]


@pytest.mark.parametrize("overrides", KEPT)
def test_valid_quote_is_kept_unchanged(overrides: dict[str, Any]) -> None:
    quote = make_quote(**overrides)
    kept, rejected = run(quote)
    assert rejected == []
    assert len(kept) == 1 and kept[0] is quote


def test_keeps_input_order_and_one_rejection_per_quote() -> None:
    good1 = make_quote(source_id="a")
    bad = make_quote(source_id="b", price=None, market_cap=-1.0)  # first failing rule wins
    good2 = make_quote(source_id="c")
    kept, rejected = run(good1, bad, good2)
    assert kept == [good1, good2]
    assert [(r.coin, r.reason) for r in rejected] == [("b", v.PRICE_MISSING)]


def test_detail_names_the_values() -> None:
    _, rejected = run(make_quote(market_cap=2e12))
    assert "2000000000000.0" in rejected[0].detail
    assert "950000000000.0" in rejected[0].detail
    _, rejected = run(make_quote(last_updated=NOW - timedelta(seconds=1000)))
    assert "1000 s old" in rejected[0].detail


def test_naive_times_are_utc() -> None:
    quote = make_quote(last_updated=datetime(2025, 1, 1, 11, 59, 30))
    kept, rejected = run(quote, now=datetime(2025, 1, 1, 12, 0))
    assert kept == [quote] and rejected == []


def test_reason_codes_are_distinct_strings() -> None:
    assert len(set(v.REASONS)) == len(v.REASONS)
    assert v.STALE == "stale" and v.MARKET_CAP_MISMATCH == "market_cap_mismatch"


@pytest.mark.parametrize(
    ("price", "supply", "cap"),
    [
        pytest.param(1e-12, 1e20, 1e8, id="price-1e-12"),
        pytest.param(100_000.0, 1e8, 1e13, id="cap-1e13"),
    ],
)
def test_extreme_values_round_trip_through_reconcile_and_the_wire(price: float, supply: float,
                                                                 cap: float) -> None:
    quotes = [
        make_quote(source="coingecko", source_id="tiny", symbol="TNY", name="Tiny", price=price,
                   circulating_supply=supply, market_cap=cap, volume_24h=cap / 10),
        make_quote(source="coinmarketcap", source_id="42", slug="tiny", symbol="TNY", name="Tiny",
                   price=price, circulating_supply=supply, market_cap=cap, volume_24h=cap / 10),
    ]
    kept, rejected = run(*quotes)
    assert rejected == [] and kept == quotes
    [snap] = reconcile(kept, observed_at=NOW, trust={"coingecko": 0.8, "coinmarketcap": 0.9},
                       max_staleness=MAX_STALENESS)
    assert (snap.coin_id, snap.price, snap.market_cap, snap.volume_24h) == ("tiny", price, cap, cap / 10)
    decoded: CoinSnapshot = decode_snapshot(encode_snapshot(snap))
    assert decoded == snap
