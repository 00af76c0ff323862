from __future__ import annotations

import orjson
import pytest

from cryptoviz.errors import MessageError
from cryptoviz.models import SCHEMA_VERSION, decode_snapshot, encode_snapshot
from tests.factories import snapshot


def test_snapshot_round_trips_through_the_wire_format() -> None:
    original = snapshot("tiny", price=1e-12)
    original = original.__class__(**{**{f: getattr(original, f) for f in original.__slots__},
                                     "market_cap": 1e13})
    decoded = decode_snapshot(encode_snapshot(original))
    assert decoded == original
    assert decoded.price == 1e-12
    assert decoded.market_cap == 1e13


def test_envelope_carries_schema_version_and_coin_key() -> None:
    doc = orjson.loads(encode_snapshot(snapshot("ethereum")))
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["snapshot"]["coin_id"] == "ethereum"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"schema_version": 99, "snapshot": {}}', "unsupported schema_version 99"),
        (b"[1, 2]", "not a JSON object"),
        (None, "empty message"),
    ],
    ids=["invalid-json", "wrong-version", "not-object", "empty"],
)
def test_undecodable_messages_say_why(value: bytes | None, message: str) -> None:
    with pytest.raises(MessageError, match=message):
        decode_snapshot(value)


def test_negative_price_is_rejected_with_the_field_name() -> None:
    doc = orjson.loads(encode_snapshot(snapshot()))
    doc["snapshot"]["price"] = -5
    with pytest.raises(MessageError, match="field 'price': must be > 0"):
        decode_snapshot(orjson.dumps(doc))


@pytest.mark.parametrize(("path", "value", "message"), [
    (("name",), "N" * 201, "field 'name': longer than 200 characters"),
    (("symbol",), "S" * 65, "field 'symbol': longer than 64 characters"),
    (("coin_id",), "bit\x00coin", "field 'coin_id': contains a NUL character"),
    (("currency",), "usdollars!!", "field 'currency': longer than 10 characters"),
    (("sources", 0, "source"), "s" * 41, "field 'source': longer than 40 characters"),
    (("sources", 1, "source_id"), "\x00", "field 'source_id': contains a NUL character"),
])
def test_texts_the_database_cannot_store_make_a_dead_letter(path: tuple[str | int, ...], value: str,
                                                            message: str) -> None:
    """A foreign producer's message must fail here (to the DLQ), not in every batch that holds it."""
    doc = orjson.loads(encode_snapshot(snapshot()))
    target = doc["snapshot"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(MessageError, match=message):
        decode_snapshot(orjson.dumps(doc))


def test_text_limits_are_the_column_widths() -> None:
    from cryptoviz.models import SOURCE_TEXT_LIMITS, TEXT_LIMITS
    from cryptoviz.store.tables import currencies, currency_data, source_quotes

    widths = {"coin_id": currencies.c.id.type.length, "currency": currency_data.c.currency.type.length,
              **{name: currencies.c[name].type.length for name in TEXT_LIMITS if name in currencies.c}}
    assert TEXT_LIMITS == widths
    assert SOURCE_TEXT_LIMITS == {name: source_quotes.c[name].type.length for name in SOURCE_TEXT_LIMITS}
