"""One cycle through the real parsers, validation and reconciliation; scheduler behaviour."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

import pytest

from cryptoviz.config import Settings
from cryptoviz.errors import TransientSourceError
from cryptoviz.pipeline import Scheduler, SourceOutcome, process
from cryptoviz.reconcile import confidence_of
from cryptoviz.sources.base import RawPage
from cryptoviz.store.runs import RunReport, SourceReport
from tests.conftest import FIXTURES

CMC_AT = datetime(2021, 4, 20, 23, 30, 9, tzinfo=UTC)


def _cmc_page(body: bytes | None = None) -> RawPage:
    data = body or (FIXTURES / "coinmarketcap" / "listings-latest-2021-04-20.json").read_bytes()
    return RawPage("coinmarketcap", data, "json", CMC_AT)


def test_a_real_capture_goes_through_one_cycle() -> None:
    snapshots, run = process([SourceOutcome("coinmarketcap", [_cmc_page()])], observed_at=CMC_AT,
                             settings=Settings())
    assert run.status == "ok"
    assert run.sources["coinmarketcap"].fetched == 100
    btc = next(s for s in snapshots if s.coin_id == "bitcoin")
    assert btc.price == 56507.38254720854
    assert btc.coinmarketcap_id == "1"
    # one source: half of what the width of its own interval leaves (see cryptoviz.reconcile)
    assert btc.price_low is not None and btc.price_high is not None
    assert btc.price_low < btc.price < btc.price_high
    width = (btc.price_high - btc.price_low) / btc.price
    assert btc.confidence == confidence_of(width, 1, Settings().disagreement_tolerance) < 0.5
    assert btc.price_at is not None and btc.price_at < CMC_AT and not btc.unverified
    assert len(snapshots) + run.sources["coinmarketcap"].rejected == 100


def test_a_malformed_item_is_rejected_and_the_rest_of_the_page_kept() -> None:
    doc = json.loads((FIXTURES / "coinmarketcap" / "listings-latest-2021-04-20.json").read_bytes())
    doc["data"][1]["quote"]["USD"]["price"] = "n/a"  # ethereum
    snapshots, run = process([SourceOutcome("coinmarketcap", [_cmc_page(json.dumps(doc).encode())])],
                             observed_at=CMC_AT, settings=Settings())
    ids = {s.coin_id for s in snapshots}
    assert "ethereum" not in ids
    assert "bitcoin" in ids
    eth = [r for r in run.rejections if r.coin in ("1027", "ethereum")]
    assert eth and eth[0].source == "coinmarketcap"
    assert run.sources["coinmarketcap"].reasons


def test_a_failing_source_never_stops_the_others() -> None:
    failed = SourceOutcome("coingecko", [], error=TransientSourceError("coingecko", "HTTP 500 after 3 retries"))
    snapshots, run = process([failed, SourceOutcome("coinmarketcap", [_cmc_page()])], observed_at=CMC_AT,
                             settings=Settings())
    assert run.status == "partial"
    assert run.sources["coingecko"].error == "coingecko: HTTP 500 after 3 retries"
    assert len(snapshots) >= 95


def test_an_error_envelope_is_a_source_error_not_an_empty_success() -> None:
    page = _cmc_page((FIXTURES / "coinmarketcap" / "error-1008.json").read_bytes())
    snapshots, run = process([SourceOutcome("coinmarketcap", [page])], observed_at=CMC_AT, settings=Settings())
    assert snapshots == []
    assert run.status == "failed"
    assert "1008" in (run.sources["coinmarketcap"].error or "")


def _report(error: bool) -> RunReport:
    run = RunReport(started_at=datetime.now(UTC))
    run.sources["coingecko"] = SourceReport("coingecko", error="cannot reach host" if error else None)
    return run


def test_cycles_never_overlap_a_slow_cycle_skips_the_next(caplog: pytest.LogCaptureFixture) -> None:
    starts: list[float] = []

    def slow_cycle() -> RunReport:
        starts.append(time.monotonic())
        time.sleep(0.35 if len(starts) == 1 else 0.0)
        return _report(error=False)

    scheduler = Scheduler(slow_cycle, 0.2, threading.Event(), max_cycles=3)
    with caplog.at_level(logging.WARNING):
        scheduler.run()
    assert scheduler.cycles == 3
    assert scheduler.skipped == 1
    assert "skipping 1 cycle" in caplog.text
    assert all(b - a >= 0.19 for a, b in zip(starts, starts[1:], strict=False))  # never two at once


def test_no_reachable_source_says_so_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    calls: list[float] = []

    def failing() -> RunReport:
        calls.append(time.monotonic())
        return _report(error=True)

    with caplog.at_level(logging.ERROR):
        Scheduler(failing, 0.1, stop, duration=1.5).run()
    assert "no source is reachable" in caplog.text
    assert "make demo" in caplog.text
    assert len(calls) == 1  # the first backoff (about 5 s) outlasts the 1.5 s run instead of retrying every 0.1 s


def test_a_source_that_answers_with_nothing_usable_has_failed() -> None:
    doc = json.loads((FIXTURES / "coinmarketcap" / "listings-latest-2021-04-20.json").read_bytes())
    for item in doc["data"]:
        item["quote"]["USD"]["price"] = "n/a"
    broken = SourceOutcome("coinmarketcap", [_cmc_page(json.dumps(doc).encode())])
    snapshots, run = process([broken], observed_at=CMC_AT, settings=Settings())
    assert snapshots == [] and run.status == "failed"
    error = run.sources["coinmarketcap"].error or ""
    assert error.startswith("coinmarketcap: nothing usable: all 100 item(s) rejected (not_a_number 100)")
    # beside a source that delivered, the cycle is partial, not ok
    good = SourceOutcome("coinmarketcap", [_cmc_page()])
    cg = SourceOutcome("coingecko", [RawPage("coingecko", b"[]", "json", CMC_AT)])
    snapshots, run = process([good, cg], observed_at=CMC_AT, settings=Settings())
    assert run.status == "partial" and snapshots
    assert run.sources["coingecko"].error == "coingecko: no coin in the answer (1 page(s))"


def test_quotes_that_are_all_stale_are_nothing_usable() -> None:
    later = CMC_AT.replace(year=2022)  # a year after the capture: every quote is stale
    snapshots, run = process([SourceOutcome("coinmarketcap", [_cmc_page()])], observed_at=later, settings=Settings())
    assert snapshots == [] and run.status == "failed"
    assert "stale 100" in (run.sources["coinmarketcap"].error or "")
