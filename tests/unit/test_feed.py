"""The shared websocket feed, against the simulator's exchanges on 127.0.0.1: connecting, subscribing and
receiving; reconnecting after a close or a dropped connection; stalls; sequence gaps; rotation; a slow
consumer's dropped frames; the client's message rate; error frames; a refused handshake (HTTP 451/403)
switching the feed off; and a prompt stop. Each test takes a second or three."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from cryptoviz.config import Settings, load_settings
from cryptoviz.simulator import Faults, Simulator, start_simulator
from cryptoviz.sources import binance, coinbase, kraken
from cryptoviz.sources.base import FRAME
from cryptoviz.sources.feed import Exchange, FeedLimits, WebSocketFeed, backoff_delay

# Every test talks to a server on 127.0.0.1 for a second or three: a hung connection fails it soon.
pytestmark = pytest.mark.timeout(60)

FROZEN = 3600.0  # the market's step: still for the length of a test
# Short enough for tests: a stall after 1 s, reconnections within a fifth of a second.
FAST = FeedLimits(stall_after=1.0, poll=0.05, open_timeout=2.0, backoff_min=0.05, backoff_max=0.2,
                  backoff_reset_after=0.5, messages_per_second=20.0)
FEED_LOG = "cryptoviz.sources.feed"


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


@pytest.fixture
def feeds() -> Iterator[list[WebSocketFeed]]:
    """Feeds a test starts; all stopped at the end."""
    started: list[WebSocketFeed] = []
    yield started
    for feed in started:
        feed.stop()


def simulator(faults: str = "none", **options: Any) -> Simulator:
    fault_options = {k: options.pop(k) for k in list(options) if k in ("feed_fault_after", "flood_factor")}
    return start_simulator(faults=Faults.parse(faults, **fault_options), step_seconds=FROZEN,
                           feed_tick=options.pop("feed_tick", 0.1), **options)


def start(feeds: list[WebSocketFeed], exchange: Exchange, sim: Simulator | None, limits: FeedLimits = FAST,
          **settings: Any) -> WebSocketFeed:
    overrides = sim.settings_overrides() if sim is not None else {}
    feed = WebSocketFeed(exchange, load_settings(**{**overrides, **settings}), limits=limits, rng=random.Random(1))
    feeds.append(feed)
    feed.start()
    return feed


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == FEED_LOG and r.levelno == logging.WARNING and text in r.getMessage()]


# --- connect, subscribe, receive --------------------------------------------------------------------------


@pytest.mark.parametrize("module", [binance, coinbase, kraken], ids=["binance", "coinbase", "kraken"])
def test_connects_subscribes_and_queues_data_frames(feeds: list[WebSocketFeed], module: Any) -> None:
    with simulator() as sim:
        feed = start(feeds, module.EXCHANGE, sim)
        assert wait_until(lambda: feed.status().connected and feed.status().last_message_at is not None)
        time.sleep(0.4)
        frames = feed.take_frames()
        status = feed.status()
    assert frames and all(f.source == module.SOURCE and f.extension == FRAME for f in frames)
    assert [f.fetched_at for f in frames] == sorted(f.fetched_at for f in frames)  # oldest first
    results = [feed.parse(f) for f in frames]
    quotes = [q for r in results for q in r.quotes]
    assert quotes and not [r for result in results for r in result.rejected]
    assert {"btc"} <= {q.symbol.lower() for q in quotes}
    assert status.connected and status.since is not None and status.since <= status.last_message_at  # type: ignore[operator]
    assert (status.reconnects, status.stalls, status.gaps, status.dropped, status.disabled) == (0, 0, 0, 0, None)
    assert feed.take_frames() == [] or all(f.fetched_at > frames[-1].fetched_at for f in feed.take_frames())


def test_control_frames_and_heartbeats_are_activity_not_data(feeds: list[WebSocketFeed]) -> None:
    with simulator(feed_tick=5.0) as sim:  # no tick within the test: only the acknowledgements and heartbeats
        feed = start(feeds, coinbase.EXCHANGE, sim, coinbase_products="BTC-USD")
        assert wait_until(lambda: feed.status().last_message_at is not None)
        first = feed.status().last_message_at
        assert wait_until(lambda: feed.status().last_message_at != first, timeout=3)  # a heartbeat a second
        frames = feed.take_frames()
        assert feed.status().stalls == 0
    # the snapshot sent on subscribing is data; subscriptions and heartbeats are not
    assert len(frames) == 1 and orjson.loads(frames[0].body)["channel"] == "ticker_batch"


# --- reconnecting ------------------------------------------------------------------------------------------


def test_reconnects_after_the_server_closes(feeds: list[WebSocketFeed]) -> None:
    with simulator("server-close@coinbase", feed_fault_after=0.4) as sim:
        feed = start(feeds, coinbase.EXCHANGE, sim, coinbase_products="BTC-USD")
        assert wait_until(lambda: feed.status().reconnects >= 2)
        feed.take_frames()
        assert wait_until(lambda: bool(feed.take_frames()))  # data again on the new connection
        stats = sim.stats()["feeds"]["coinbase"]
        status = feed.status()
    assert status.stalls == 0 and status.disabled is None
    assert status.last_error is not None and "code 1001" in status.last_error
    assert stats["connections"] >= 3 and stats["faults"]["server-close"] >= 2


def test_a_shutdown_notice_reconnects_at_once(feeds: list[WebSocketFeed]) -> None:
    with simulator("server-close@binance", feed_fault_after=0.3) as sim:
        slow = replace(FAST, backoff_min=5.0, backoff_max=5.0)  # a backoff would show
        feed = start(feeds, binance.EXCHANGE, sim, limits=slow)
        assert wait_until(lambda: feed.status().reconnects >= 2, timeout=3)
        assert feed.status().last_error is None  # announced, not a failure


def test_reconnects_after_the_connection_drops(feeds: list[WebSocketFeed]) -> None:
    with simulator("disconnect@kraken", feed_fault_after=0.4) as sim:
        feed = start(feeds, kraken.EXCHANGE, sim, kraken_pairs="BTC/USD,ETH/USD")
        assert wait_until(lambda: feed.status().reconnects >= 2)
        assert wait_until(lambda: feed.status().connected)
        status = feed.status()
    assert status.last_error is not None and "no close frame" in status.last_error
    assert status.stalls == 0


def test_a_silent_connection_is_a_stall_with_one_warning(feeds: list[WebSocketFeed],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=FEED_LOG)
    with simulator("stall@coinbase", feed_fault_after=0.2) as sim:
        feed = start(feeds, coinbase.EXCHANGE, sim, coinbase_products="BTC-USD")
        assert wait_until(lambda: feed.status().stalls >= 2, timeout=6)
        assert wait_until(lambda: feed.status().connected)
        status = feed.status()
    assert status.reconnects >= 2 and "stalled" in (status.last_error or "")
    assert len(warnings(caplog, "stalled")) == 1  # one warning for the run of stalls


def test_the_backoff_doubles_from_one_second_to_a_minute_with_jitter() -> None:
    limits, rng = FeedLimits(), random.Random(7)
    delays = [backoff_delay(attempt, limits, rng) for attempt in range(1, 12)]
    assert delays[0] == 1.0
    assert all(1.0 <= d <= 60.0 for d in delays)
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(60.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jitter at the cap too


# --- sequence gaps, rotation, slow consumers ---------------------------------------------------------------


def test_a_coinbase_sequence_gap_is_counted(feeds: list[WebSocketFeed]) -> None:
    with simulator("sequence-gap@coinbase=1") as sim:
        feed = start(feeds, coinbase.EXCHANGE, sim, coinbase_products="BTC-USD")
        assert wait_until(lambda: feed.status().gaps >= 6)
        skips = sim.stats()["feeds"]["coinbase"]["faults"]["sequence-gap"]
        status = feed.status()
    assert status.gaps % 3 == 0 and status.gaps <= skips * 3  # three numbers skipped a hit
    assert status.reconnects == 0


def test_rotation_replaces_an_old_connection_before_the_exchange_does(feeds: list[WebSocketFeed]) -> None:
    with simulator() as sim:
        feed = start(feeds, binance.EXCHANGE, sim, limits=replace(FAST, max_age=0.5))
        assert wait_until(lambda: feed.status().reconnects >= 2, timeout=4)
        feed.take_frames()
        assert wait_until(lambda: bool(feed.take_frames()))
        connections = sim.stats()["feeds"]["binance"]["connections"]
        status = feed.status()
    assert connections >= 3 and status.stalls == 0 and status.last_error is None


def test_a_slow_consumer_drops_the_oldest_frames_and_counts_them(feeds: list[WebSocketFeed]) -> None:
    with simulator("flood@binance", n_coins=20, flood_factor=20) as sim:
        feed = start(feeds, binance.EXCHANGE, sim, limits=replace(FAST, queue_frames=25))
        assert wait_until(lambda: feed.status().dropped >= 50)
        frames = feed.take_frames()
    assert len(frames) <= 25
    assert [f.fetched_at for f in frames] == sorted(f.fetched_at for f in frames)
    assert feed.status().dropped >= 50


def test_the_queue_is_bounded_in_bytes_too(feeds: list[WebSocketFeed]) -> None:
    with simulator(n_coins=30) as sim:
        feed = start(feeds, binance.EXCHANGE, sim, limits=replace(FAST, queue_bytes=40_000))  # 2 or 3 frames
        assert wait_until(lambda: feed.status().dropped >= 3)
        frames = feed.take_frames()
    assert frames and sum(len(f.body) for f in frames) <= 40_000


# --- what the client sends, and what the exchange says -------------------------------------------------------


def _binance_requests(count: int) -> Callable[[Settings], list[str]]:
    def subscriptions(_settings: Settings) -> list[str]:
        return [orjson.dumps({"method": "SUBSCRIBE", "params": ["!miniTicker@arr"], "id": n}).decode()
                for n in range(1, count + 1)]
    return subscriptions


def _binance_requesting(count: int) -> Exchange:
    """Binance over ``/ws`` with ``count`` SUBSCRIBE requests: the exchange allows 5 client messages a second."""
    return Exchange("binance", binance.BUDGET, binance.LIMITS, url=lambda s: s.binance_ws_url + "/ws",
                    classify=binance.classify, parse=binance.parse_frame, subscriptions=_binance_requests(count))


def test_the_client_keeps_to_the_exchange_s_message_rate(feeds: list[WebSocketFeed]) -> None:
    with simulator() as sim:
        polite = start(feeds, _binance_requesting(7), sim, limits=replace(FAST, messages_per_second=4.0))
        hasty = start(feeds, _binance_requesting(7), sim, limits=replace(FAST, messages_per_second=100.0))
        assert wait_until(lambda: hasty.status().reconnects >= 1)
        time.sleep(1.8)  # the seven requests at 4 a second
        polite_status, hasty_status = polite.status(), hasty.status()
        assert polite.take_frames()
    assert polite_status.reconnects == 0 and polite_status.connected
    assert "code 1008" in (hasty_status.last_error or "")


def test_subscriptions_that_cannot_be_sent_in_time_are_refused() -> None:
    with pytest.raises(ValueError, match="within 5 s"):
        WebSocketFeed(coinbase.EXCHANGE, Settings(), limits=replace(coinbase.LIMITS, messages_per_second=0.2))


def test_an_error_frame_is_logged_once_and_reported(feeds: list[WebSocketFeed],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=FEED_LOG)
    with simulator("server-close@kraken", feed_fault_after=0.3) as sim:
        feed = start(feeds, kraken.EXCHANGE, sim, kraken_pairs="BTC/USD,ABC/USD")
        assert wait_until(lambda: feed.status().reconnects >= 2)  # the refusal came on every connection
        assert wait_until(lambda: "ABC/USD" in (feed.status().last_error or ""))
        frames = feed.take_frames()
    assert len(warnings(caplog, "Currency pair not supported ABC/USD")) == 1
    assert {q.source_id for f in frames for q in feed.parse(f).quotes} == {"BTC/USD"}


# --- a refused handshake -------------------------------------------------------------------------------------


def refusing(status: int) -> Callable[[ServerConnection, Request], Response]:
    def process_request(connection: ServerConnection, _request: Request) -> Response:
        return connection.respond(status, "Service unavailable from a restricted location according to 'b. "
                                          "Eligibility' in https://www.binance.com/en/terms.\n")
    return process_request


@pytest.mark.parametrize("status", [451, 403])
def test_a_refused_handshake_switches_the_feed_off_with_one_warning(feeds: list[WebSocketFeed], status: int,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=FEED_LOG)
    with serve(lambda connection: None, "127.0.0.1", 0, process_request=refusing(status)) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        feed = start(feeds, binance.EXCHANGE, None, binance_ws_url=url)
        assert wait_until(lambda: not feed.running)
        feed.start()  # switched off: stays off
        time.sleep(0.2)
        server.shutdown()
    status_now = feed.status()
    assert status_now.disabled == f"HTTP {status}" and not status_now.connected
    assert not feed.running and feed.take_frames() == []
    [warning] = [r.getMessage() for r in caplog.records if r.name == FEED_LOG and r.levelno >= logging.WARNING]
    assert warning.startswith(f"binance: the exchange refused the connection with HTTP {status}")
    assert "the other sources go on" in warning
    assert "set CRYPTOVIZ_SOURCES without binance (e.g. CRYPTOVIZ_SOURCES=coingecko,coinmarketcap-html," in warning
    assert status_now.last_error is not None and f"HTTP {status}" in status_now.last_error


def test_an_unreachable_exchange_is_retried_with_one_warning(feeds: list[WebSocketFeed],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=FEED_LOG)
    feed = start(feeds, kraken.EXCHANGE, None, kraken_ws_url=f"ws://127.0.0.1:{free_port()}/v2")  # nobody listens
    time.sleep(1.0)
    status = feed.status()
    assert feed.running and status.disabled is None and not status.connected
    assert "cannot connect" in (status.last_error or "")
    assert len(warnings(caplog, "cannot connect")) == 1


# --- stopping -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("faults", ["none", "stall@binance"])
def test_stop_is_prompt(faults: str) -> None:
    with simulator(faults, feed_fault_after=0.2) as sim:
        feed = WebSocketFeed(binance.EXCHANGE, load_settings(**sim.settings_overrides()),
                             limits=replace(FAST, stall_after=30.0, poll=0.25))
        feed.start()
        assert wait_until(lambda: feed.status().connected)
        time.sleep(0.5)
        began = time.monotonic()
        feed.stop()
        took = time.monotonic() - began
    assert took < 2.0 and not feed.running and not feed.status().connected


def test_stop_is_prompt_during_a_backoff(feeds: list[WebSocketFeed]) -> None:
    feed = WebSocketFeed(kraken.EXCHANGE, load_settings(kraken_ws_url=f"ws://127.0.0.1:{free_port()}/v2"))
    feed.start()
    time.sleep(0.3)
    began = time.monotonic()
    feed.stop()
    assert time.monotonic() - began < 0.5 and not feed.running
