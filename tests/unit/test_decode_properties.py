"""Message decoding: the fast path (``_snapshot_fast``, plain type checks) against the field-by-field path
(``_snapshot_checked``), over generated wire dicts with fields missing, mistyped (bools, integers, strings,
lists where numbers are expected), non-finite, negative, zero, huge and tiny, over-long or holding a NUL,
and timestamps naive, offset or malformed, the optional price_low / price_high / unverified / price_at
included.

``snapshot_from_dict`` must give what the checked path gives, to the type of every value (``1`` and
``1.0``, ``0.0`` and ``-0.0`` compare equal, so values are also compared by ``repr``), or raise the same
``MessageError``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cryptoviz.errors import MessageError
from cryptoviz.models import (
    CoinSnapshot,
    SourceValue,
    _snapshot_checked,
    _snapshot_fast,
    decode_snapshot,
    encode_snapshot,
    snapshot_from_dict,
    snapshot_to_dict,
)
from tests.factories import snapshot
from tests.properties import property_settings

PROPERTY = property_settings(800)
MISSING = object()  # the field is left out of the dict

TOP_FIELDS = ("coin_id", "symbol", "name", "slug", "rank", "price", "market_cap", "volume_24h", "change_1h",
              "change_24h", "change_7d", "circulating_supply", "total_supply", "max_supply", "confidence",
              "observed_at", "currency", "coingecko_id", "coinmarketcap_id", "record", "price_low", "price_high",
              "unverified", "price_at", "sources")
SOURCE_FIELDS = ("source", "source_id", "price", "market_cap", "volume_24h", "last_updated", "used",
                 "dropped_reason")
ODD_VALUES: list[Any] = [
    MISSING, None, True, False, 0, 1, -1, 7, 2**63, -(2**63), 0.0, -0.0, -1.0, 0.5, 1.0, 1.5, 1e308, -1e308,
    5e-324, -5e-324, math.nan, math.inf, -math.inf, "", "x", "1.5", "NaN", "usd", "2024-01-01T00:00:00",
    "2024-01-01T00:00:00+02:00", "2024-02-30T00:00:00Z", "not a date", "a\x00b", "a" * 10, "a" * 11, "a" * 40,
    "a" * 41, "a" * 64, "a" * 65, "a" * 200, "a" * 201, [], [1], {}, {"price": 1.0},
]
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
WHEN = st.builds(lambda s, z: datetime(2024, 1, 1, tzinfo=UTC).astimezone(z) + timedelta(seconds=s),
                 st.integers(min_value=-10**8, max_value=10**8), ZONES)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
AMOUNT = st.one_of(st.none(), st.floats(min_value=0.0, allow_infinity=False), st.sampled_from([0.0, 5e-324, 1e308]))
# Text encode_snapshot can write: UTF-8 (no lone surrogates), no NUL (refused by the decoder).
CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
TEXT = st.text(CHARS, max_size=12)


def source_values() -> st.SearchStrategy[SourceValue]:
    return st.builds(SourceValue, source=st.text(CHARS, max_size=40), source_id=st.text(CHARS, max_size=20), price=FINITE,
                     market_cap=st.one_of(st.none(), FINITE), volume_24h=st.one_of(st.none(), FINITE),
                     last_updated=st.one_of(st.none(), WHEN), used=st.booleans(),
                     dropped_reason=st.one_of(st.none(), st.sampled_from(["stale", "outlier", "disagreement"])))


def snapshots() -> st.SearchStrategy[CoinSnapshot]:
    return st.builds(
        CoinSnapshot, coin_id=st.text(CHARS, min_size=1, max_size=30), symbol=TEXT, name=TEXT, slug=st.one_of(st.none(), TEXT),
        rank=st.one_of(st.none(), st.integers(min_value=-5, max_value=10**6)),
        price=st.one_of(st.floats(min_value=5e-324, allow_infinity=False), st.sampled_from([5e-324, 1e308])),
        market_cap=AMOUNT, volume_24h=AMOUNT, change_1h=st.one_of(st.none(), FINITE),
        change_24h=st.one_of(st.none(), FINITE), change_7d=st.one_of(st.none(), FINITE),
        circulating_supply=st.one_of(st.none(), FINITE), total_supply=st.one_of(st.none(), FINITE),
        max_supply=st.one_of(st.none(), FINITE), confidence=st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0.0, 1.0),
        observed_at=WHEN, currency=st.sampled_from(["usd", "eur", "usdt", ""]),
        coingecko_id=st.one_of(st.none(), TEXT), coinmarketcap_id=st.one_of(st.none(), TEXT),
        sources=st.lists(source_values(), max_size=3).map(tuple), record=st.booleans(),
        price_low=st.one_of(st.none(), FINITE), price_high=st.one_of(st.none(), FINITE), unverified=st.booleans(),
        price_at=st.one_of(st.none(), WHEN),
    )


def put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is MISSING:
        target.pop(key, None)
    else:
        target[key] = value


@st.composite
def wire_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A dict as ``encode_snapshot`` writes it, then a few fields (top level or in a source) changed."""
    d = snapshot_to_dict(draw(snapshots()))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        put(d, draw(st.sampled_from(TOP_FIELDS)), draw(st.sampled_from(ODD_VALUES)))
    sources = d.get("sources")
    if isinstance(sources, list) and sources and draw(st.booleans()):
        i = draw(st.integers(min_value=0, max_value=len(sources) - 1))
        if draw(st.integers(0, 4)) == 0:
            sources[i] = draw(st.sampled_from(ODD_VALUES[1:]))
        elif isinstance(sources[i], dict):
            for _ in range(draw(st.integers(min_value=1, max_value=2))):
                put(sources[i], draw(st.sampled_from(SOURCE_FIELDS)), draw(st.sampled_from(ODD_VALUES)))
    return d


def outcome(decode: Any, d: dict[str, Any]) -> tuple[str, Any]:
    """("ok", snapshot, its repr) or ("error", the message)."""
    try:
        s = decode(d)
    except MessageError as exc:
        return "error", str(exc)
    return "ok", (s, repr(s))


def base() -> dict[str, Any]:
    return snapshot_to_dict(snapshot())


def changed(**fields: Any) -> dict[str, Any]:
    d = base()
    for key, value in fields.items():
        put(d, key, value)
    return d


@PROPERTY
@given(wire_dicts())
@example(changed(price=0.0))
@example(changed(price=-0.0))
@example(changed(price=1))  # an integer: the checked path makes it a float
@example(changed(price=True))
@example(changed(confidence=1))
@example(changed(confidence=1.0000000000000002))
@example(changed(market_cap=-5e-324))
@example(changed(price_low=math.inf))
@example(changed(price_high=math.nan))
@example(changed(price_low=3))
@example(changed(unverified=1))
@example(changed(unverified=None))
@example(changed(record=None))
@example(changed(price_at="2024-01-01T00:00:00"))
@example(changed(price_at=""))
@example(changed(rank=True))
@example(changed(coin_id=""))
@example(changed(sources=None))
@example(changed(sources={}))
def test_fast_decoding_gives_what_the_checked_path_gives(d: dict[str, Any]) -> None:
    expected = outcome(_snapshot_checked, d)
    got = outcome(snapshot_from_dict, d)
    assert got[0] == expected[0], (got, expected)
    if got[0] == "ok":
        assert got[1][0] == expected[1][0]
        assert got[1][1] == expected[1][1]  # same types: 1.0 not 1, -0.0 not 0.0
    else:
        assert got[1] == expected[1]
    fast = _snapshot_fast(d)
    if fast is not None:
        assert expected[0] == "ok" and repr(fast) == expected[1][1]


@PROPERTY
@given(snapshots())
def test_what_encode_writes_takes_the_fast_path_and_round_trips(s: CoinSnapshot) -> None:
    d = orjson.loads(encode_snapshot(s))["snapshot"]
    fast = _snapshot_fast(d)
    assert fast is not None
    assert fast == _snapshot_checked(d) == decode_snapshot(encode_snapshot(s))
    # Times come back in UTC: the same instants, not the same offsets.
    assert snapshot_to_dict(fast) == snapshot_to_dict(s)


@pytest.mark.parametrize(("fields", "message"), [
    ({"price": MISSING}, "field 'price' is missing"),
    ({"price": "1.5"}, "field 'price': expected a number, got str"),
    ({"price": True}, "field 'price': expected a number, got bool"),
    ({"price": math.nan}, "field 'price': not a finite number"),
    ({"price": 0}, "field 'price': must be > 0, got 0.0"),
    ({"market_cap": -1}, "field 'market_cap': must be >= 0, got -1.0"),
    ({"volume_24h": -0.5}, "field 'volume_24h': must be >= 0, got -0.5"),
    ({"confidence": MISSING}, "field 'confidence' is missing"),
    ({"confidence": 1.5}, "field 'confidence': must be within [0, 1], got 1.5"),
    ({"confidence": -0.1}, "field 'confidence': must be within [0, 1], got -0.1"),
    ({"observed_at": MISSING}, "field 'observed_at' is missing"),
    ({"observed_at": 1700000000}, "field 'observed_at': expected an ISO-8601 string, got int"),
    ({"observed_at": "yesterday"}, "field 'observed_at': Invalid isoformat string: 'yesterday'"),
    ({"rank": 1.0}, "field 'rank': expected an integer"),
    ({"rank": False}, "field 'rank': expected an integer"),
    ({"coin_id": ""}, "field 'coin_id' is empty"),
    ({"coin_id": MISSING}, "field 'coin_id' is missing"),
    ({"symbol": 5}, "field 'symbol': expected a string, got int"),
    ({"sources": "coingecko"}, "field 'sources': expected a list"),
    ({"sources": [5]}, "field 'sources[0]': expected an object"),
    ({"sources": [{"source": "a", "source_id": "b"}]}, "field 'price' is missing"),
    ({"sources": [{"source": "a", "source_id": "b", "price": 1.0, "last_updated": "x"}]},
     "field 'sources[0].last_updated': Invalid isoformat string: 'x'"),
    ({"record": 1}, "field 'record': expected true or false, got int"),
    ({"unverified": "yes"}, "field 'unverified': expected true or false, got str"),
    ({"price_low": math.inf}, "field 'price_low': not a finite number"),
    ({"price_high": "2"}, "field 'price_high': expected a number, got str"),
    ({"price_at": 5}, "field 'price_at': expected an ISO-8601 string, got int"),
])
def test_a_broken_field_is_named(fields: dict[str, Any], message: str) -> None:
    d = changed(**fields)
    for decode in (snapshot_from_dict, _snapshot_checked):
        with pytest.raises(MessageError) as raised:
            decode(d)
        assert str(raised.value) == message


def test_optional_fields_have_their_defaults_when_absent_or_null() -> None:
    for value in (MISSING, None):
        d = changed(record=value, unverified=value, price_low=value, price_high=value, price_at=value, sources=value)
        for decode in (snapshot_from_dict, _snapshot_checked):
            s = decode(d)
            assert (s.record, s.unverified, s.price_low, s.price_high, s.price_at, s.sources) == (
                True, False, None, None, None, ())


def test_the_new_fields_decode_to_their_values() -> None:
    d = changed(price_low=99.5, price_high=101, unverified=True, record=False, price_at="2024-03-01T10:00:00+01:00")
    s = snapshot_from_dict(d)
    assert (s.price_low, s.price_high, s.unverified, s.record) == (99.5, 101.0, True, False)
    assert type(s.price_high) is float
    assert s.price_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    naive = snapshot_from_dict(changed(price_at="2024-03-01T10:00:00", observed_at="2024-03-01T10:00:05"))
    assert naive.price_at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert naive.observed_at.tzinfo is UTC
