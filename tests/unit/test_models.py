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
