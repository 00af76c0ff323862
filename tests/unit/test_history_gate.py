"""Write on change, with a heartbeat: which snapshots make a history row."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from cryptoviz.history_gate import HistoryGate
from cryptoviz.models import CoinSnapshot, SourceValue
from tests.factories import T0, snapshot


def at(minutes: float, price: float = 100.0, *, updated: float | None = 0.0, page_price: float | None = None,
       coin: str = "bitcoin") -> CoinSnapshot:
    """A snapshot at T0 + minutes whose API source last updated at T0 + ``updated`` minutes (None: the source
    gives no time), beside a page source (no time of its own) showing ``page_price``."""
    when = T0 + timedelta(minutes=minutes)
    sources = [SourceValue("coingecko", coin, price, None, None,
                           None if updated is None else T0 + timedelta(minutes=updated))]
    if page_price is not None:
        sources.append(SourceValue("coinmarketcap-html", "1", page_price, None, None, None))
    return replace(snapshot(coin, price=price, at=when), sources=tuple(sources))


def recorded(gate: HistoryGate, *snapshots: CoinSnapshot) -> list[bool]:
    return [s.record for s in gate.apply(list(snapshots))]


@pytest.fixture
def gate() -> HistoryGate:
    return HistoryGate(deviation=0.001, heartbeat=600)


def test_first_then_only_changes(gate: HistoryGate) -> None:
    assert recorded(gate, at(0)) == [True]  # first observation of the coin
    assert recorded(gate, at(1)) == [False]  # same price, same source time
    assert recorded(gate, at(2, 100.05)) == [False]  # 0.05 % < 0.1 %
    assert recorded(gate, at(3, 100.2)) == [True]  # 0.2 % from the last recorded price
    assert recorded(gate, at(4, 100.2, updated=3.5)) == [True]  # the source's own value moved
    assert recorded(gate, at(5, 100.2, updated=3.5)) == [False]


def test_the_heartbeat_records_a_quiet_coin(gate: HistoryGate) -> None:
    assert recorded(gate, *(at(m) for m in range(0, 31))) == [m % 10 == 0 for m in range(0, 31)]


def test_small_moves_do_not_add_up_unnoticed(gate: HistoryGate) -> None:
    # each step 0.05 %, but against the last recorded price the third is past 0.1 %
    prices = [100.0, 100.05, 100.1, 100.15]
    assert recorded(gate, *(at(m, p) for m, p in enumerate(prices))) == [True, False, False, True]


def test_a_source_without_its_own_time_changes_when_its_price_does(gate: HistoryGate) -> None:
    assert recorded(gate, at(0, page_price=101.0)) == [True]
    assert recorded(gate, at(1, page_price=101.0)) == [False]
    assert recorded(gate, at(2, page_price=101.02)) == [True]


def test_a_new_source_is_a_change(gate: HistoryGate) -> None:
    assert recorded(gate, at(0)) == [True]
    assert recorded(gate, at(1, page_price=100.0)) == [True]


def test_late_or_repeated_observations_are_not_recorded_again(gate: HistoryGate) -> None:
    assert recorded(gate, at(5), at(5), at(3, 150.0)) == [True, False, False]


def test_each_coin_and_currency_has_its_own_state(gate: HistoryGate) -> None:
    eur = replace(at(0), currency="eur")
    assert recorded(gate, at(0), at(0, coin="ether"), eur, at(1), replace(eur, observed_at=T0 + timedelta(minutes=1))) \
        == [True, True, True, False, False]
    assert len(gate) == 3


def test_zero_deviation_records_every_price_move_and_bad_settings_are_refused() -> None:
    gate = HistoryGate(deviation=0.0, heartbeat=3600)
    assert recorded(gate, at(0), at(1, 100.0000001), at(2, 100.0000001)) == [True, True, False]
    with pytest.raises(ValueError, match="deviation"):
        HistoryGate(deviation=-0.1, heartbeat=60)
    with pytest.raises(ValueError, match="heartbeat"):
        HistoryGate(deviation=0.001, heartbeat=0)


def test_the_decision_travels_with_the_snapshot() -> None:
    from cryptoviz.models import decode_snapshot, encode_snapshot

    quiet = replace(at(0), record=False)
    assert decode_snapshot(encode_snapshot(quiet)).record is False
    assert decode_snapshot(encode_snapshot(at(0))).record is True
    # a message from a producer that does not know the field: recorded, as before
    legacy = encode_snapshot(at(0)).replace(b',"record":true', b"")
    assert b"record" not in legacy and decode_snapshot(legacy).record is True
