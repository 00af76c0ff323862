"""The collector: per-source intervals (reuse between fetches), push sources (latest quote per coin), and the
pipeline assembly that starts and stops them; push frames recorded and replayed like pages."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from cryptoviz.bus.base import Publisher
from cryptoviz.config import Settings, load_settings
from cryptoviz.errors import ParseError, TransientSourceError
from cryptoviz.models import CoinSnapshot, ParseResult, SourceQuote
from cryptoviz.pipeline import Collector, QuoteBooks, SourceOutcome, process
from cryptoviz.recording import PageRecorder, read_recording
from cryptoviz.runtime import Pipeline, open_store
from cryptoviz.simulator import start_simulator
from cryptoviz.sources import registry
from cryptoviz.sources.base import FRAME, FeedStatus, RawPage, is_push
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.registry import build_sources
from cryptoviz.sources.spec import IdNamespace, RequestBudget, SourceSpec
from cryptoviz.store.sink import MemorySink
from cryptoviz.store.tables import source_quotes
from cryptoviz.timeutil import utc_now
from tests.conftest import FIXTURES

CMC_AT = datetime(2021, 4, 20, 23, 30, 9, tzinfo=UTC)
FEED = "ticker-feed"


class ListPublisher(Publisher):
    """Where the collector's snapshots land in these tests."""

    def __init__(self) -> None:
        self.batches: list[list[CoinSnapshot]] = []

    def publish(self, snapshots: Sequence[CoinSnapshot]) -> None:
        self.batches.append(list(snapshots))

    def flush(self, timeout: float = 30.0) -> int:
        return 0


# --- a push source: frames of ticks, as an exchange's websocket would send them -------------------------


def tick_frame(at: datetime, **prices: float) -> bytes:
    names = {"btc": ("Bitcoin", "BTC"), "eth": ("Ethereum", "ETH"), "doge": ("Dogecoin", "DOGE")}
    return orjson.dumps({"ts": at.isoformat(), "ticks": [
        {"id": coin, "name": names[coin][0], "symbol": names[coin][1], "price": price}
        for coin, price in prices.items()]})


def parse_ticks(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"{FEED}: not a JSON frame ({exc})") from None
    at = datetime.fromisoformat(doc["ts"])
    return ParseResult(quotes=[
        SourceQuote(FEED, t["id"], t["symbol"], t["name"], None, None, float(t["price"]), None, None, None, None,
                    None, None, None, None, at, collected_at, currency)
        for t in doc["ticks"]])


class TickerFeed:
    """A push source whose 'connection' is a list the test appends frames to."""

    name = FEED

    def __init__(self, _settings: Settings | None = None, _http: Any = None) -> None:
        self.pending: list[RawPage] = []
        self.running = False
        self.starts = self.stops = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self.running, self.starts = True, self.starts + 1

    def stop(self) -> None:
        self.running, self.stops = False, self.stops + 1

    def push(self, body: bytes, at: datetime | None = None) -> None:
        with self._lock:
            self.pending.append(RawPage(self.name, body, FRAME, at or utc_now()))

    def take_frames(self) -> list[RawPage]:
        with self._lock:
            frames, self.pending = self.pending, []
        return frames

    def parse(self, page: RawPage) -> ParseResult:
        return parse_ticks(page.body, page.fetched_at, "usd")

    def status(self) -> FeedStatus:
        return FeedStatus(connected=self.running)


FEED_SPEC = SourceSpec(name=FEED, title="test ticker feed", kind="push", namespace=IdNamespace(FEED), trust=0.85,
                       parse=parse_ticks, build=TickerFeed, budget=RequestBudget(per_minute=60))


@pytest.fixture
def feed_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "SPECS", MappingProxyType({**registry.SPECS, FEED: FEED_SPEC}))
    yield


def test_a_push_source_is_recognised_by_its_protocol() -> None:
    assert is_push(TickerFeed())
    assert not is_push(build_sources(Settings(sources=["coingecko"]))[0][0])


@pytest.mark.usefixtures("feed_registered")
def test_push_frames_keep_the_latest_quote_per_coin_while_it_is_fresh() -> None:
    settings = load_settings(sources=FEED, max_staleness=300)
    books = QuoteBooks()
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    frames = [RawPage(FEED, tick_frame(t0, btc=100.0, eth=10.0), FRAME, t0),
              RawPage(FEED, tick_frame(t0 + timedelta(seconds=1), btc=101.0), FRAME, t0 + timedelta(seconds=1))]
    snaps, run = process([SourceOutcome(FEED, frames, push=True)], observed_at=t0 + timedelta(seconds=2),
                         settings=settings, books=books)
    assert {s.symbol: s.price for s in snaps} == {"BTC": 101.0, "ETH": 10.0}  # eth kept from the first frame
    assert run.sources[FEED].fetched == 3 and run.status == "ok"
    # a quiet cycle: the book still holds both coins
    snaps, run = process([SourceOutcome(FEED, [], push=True)], observed_at=t0 + timedelta(seconds=60),
                         settings=settings, books=books)
    assert {s.symbol: s.price for s in snaps} == {"BTC": 101.0, "ETH": 10.0}
    # an older frame arriving late never replaces a newer quote
    late = RawPage(FEED, tick_frame(t0 - timedelta(seconds=5), btc=99.0), FRAME, t0 + timedelta(seconds=61))
    snaps, _ = process([SourceOutcome(FEED, [late], push=True)], observed_at=t0 + timedelta(seconds=62),
                       settings=settings, books=books)
    assert {s.symbol: s.price for s in snaps}["BTC"] == 101.0
    # past max_staleness the quotes are let go: no snapshot rather than a stale one
    snaps, _ = process([SourceOutcome(FEED, [], push=True)], observed_at=t0 + timedelta(seconds=400),
                       settings=settings, books=books)
    assert snaps == []
    assert books.books[FEED] == {}


def _cmc_page() -> RawPage:
    return RawPage("coinmarketcap", (FIXTURES / "coinmarketcap" / "listings-latest-2021-04-20.json").read_bytes(),
                   "json", CMC_AT)


def test_a_source_not_fetched_this_cycle_offers_its_last_quotes_and_a_failure_drops_them() -> None:
    settings = Settings()
    books = QuoteBooks()
    first, run = process([SourceOutcome("coinmarketcap", [_cmc_page()])], observed_at=CMC_AT, settings=settings,
                         books=books)
    assert run.sources["coinmarketcap"].reused == 0
    later = CMC_AT + timedelta(seconds=60)
    again, run = process([], observed_at=later, settings=settings, books=books)
    assert run.sources["coinmarketcap"].reused == len(first) and run.status == "ok"
    assert {s.coin_id: s.price for s in again} == {s.coin_id: s.price for s in first}
    assert all(s.observed_at == later for s in again)
    failed = SourceOutcome("coinmarketcap", [], error=TransientSourceError("coinmarketcap", "HTTP 500"))
    snaps, run = process([failed], observed_at=later + timedelta(seconds=60), settings=settings, books=books)
    assert snaps == [] and run.status == "failed"
    snaps, run = process([], observed_at=later + timedelta(seconds=120), settings=settings, books=books)
    assert snaps == [] and "coinmarketcap" not in run.sources


def test_a_slow_source_is_fetched_on_its_own_interval_against_the_simulator() -> None:
    with start_simulator(faults="none", seed=3, n_coins=30) as sim:
        settings = load_settings(**sim.settings_overrides(), sources="coingecko,coinmarketcap", top_n=30,
                                 interval=60)
        with HttpClient(settings) as http:
            sources, warnings = build_sources(settings, http)
            assert warnings == []
            clock = [1000.0]
            publisher = ListPublisher()
            collector = Collector(settings, sources, publisher, intervals={"coinmarketcap": 300.0},
                                  clock=lambda: clock[0])
            try:
                reports = []
                for now in (1000.0, 1060.0, 1120.0, 1301.0):
                    clock[0] = now
                    reports.append(collector.run_cycle())
            finally:
                collector.close()
            requests = sim.stats()["requests"]
    assert requests["/api/v3/coins/markets"] == 4
    assert requests["/v1/cryptocurrency/listings/latest"] == 2  # at 1000 and 1301 only
    fetched = [r.sources["coinmarketcap"].fetched for r in reports]
    reused = [r.sources["coinmarketcap"].reused for r in reports]
    assert fetched[0] == 30 and fetched[3] == 30 and fetched[1:3] == [0, 0]
    assert reused[0] == 0 and reused[1] == reused[2] == 30 and reused[3] == 0
    # the reused quotes still count in the consensus of every cycle
    for batch in publisher.batches:
        assert sum(1 for s in batch if "coinmarketcap" in s.sources_used) == 30


@pytest.mark.usefixtures("feed_registered")
def test_the_pipeline_starts_and_stops_push_sources_and_stores_what_they_pushed() -> None:
    feed = TickerFeed()
    sink = MemorySink()
    settings = load_settings(sources=FEED, interval=0.05)
    pipeline = Pipeline(settings, engine=None, sink=sink, sources=[feed])
    assert feed.starts == 0
    with pipeline:
        assert feed.running and feed.starts == 1
        feed.push(tick_frame(utc_now(), btc=100.0, doge=0.1))
        pipeline.cycle()
        feed.push(tick_frame(utc_now(), btc=102.0))
        pipeline.cycle()
    assert not feed.running and feed.stops == 1
    assert pipeline.stored == 4 and pipeline.cycles == 2
    prices = [(s.symbol, s.price) for s in sink.snapshots]
    assert prices == [("BTC", 100.0), ("DOGE", 0.1), ("BTC", 102.0), ("DOGE", 0.1)]
    assert {s.coin_id for s in sink.snapshots} == {f"{FEED}:btc", f"{FEED}:doge"}


@pytest.mark.usefixtures("feed_registered")
def test_push_frames_are_recorded_and_replayed_with_their_receive_times(tmp_path: Path) -> None:
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    recorder = PageRecorder(tmp_path / "rec")
    frames = [RawPage(FEED, tick_frame(t0, btc=100.0, eth=10.0), FRAME, t0 + timedelta(seconds=1)),
              RawPage(FEED, tick_frame(t0 + timedelta(seconds=2), btc=100.5), FRAME, t0 + timedelta(seconds=3)),
              RawPage(FEED, b"\xff\xfe not utf-8", FRAME, t0 + timedelta(seconds=4))]
    for frame in frames:
        recorder(frame, t0 + timedelta(seconds=5))
    recorder(frames[0], t0 + timedelta(seconds=65))  # the next cycle
    assert [p.name for p in recorder.files] == ["2026-12-01T12-00-05Z.jsonl", "2026-12-01T12-01-05Z.jsonl"]
    cycles = read_recording(tmp_path / "rec")
    assert [at for at, _ in cycles] == [t0 + timedelta(seconds=5), t0 + timedelta(seconds=65)]
    [outcome] = cycles[0][1]
    assert outcome.push and [p.body for p in outcome.pages] == [f.body for f in frames]
    assert [p.fetched_at for p in outcome.pages] == [f.fetched_at for f in frames]

    # replayed into a database: the same rows as the live cycle would store (the binary frame is reported)
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'replay.db'}", sources=FEED)
    engine = open_store(settings)
    with Pipeline(settings, engine=engine, in_process=True) as pipeline:
        runs = [pipeline.publish(outcomes, at) for at, outcomes in cycles]
    assert runs[0].sources[FEED].error and "ticker-feed" in runs[0].sources[FEED].error
    with engine.connect() as conn:
        rows = conn.execute(sa.select(source_quotes.c.source_id, source_quotes.c.price)
                            .order_by(source_quotes.c.observed_at, source_quotes.c.source_id)).all()
        current = conn.execute(sa.text("SELECT DISTINCT observed_at FROM currency_data")).scalars().all()
    # the second cycle brought nothing new: no history row (write on change), the current values moved on
    assert [tuple(r) for r in rows] == [("btc", 100.5), ("eth", 10.0)]
    assert [str(c)[:19] for c in current] == ["2026-12-01 12:01:05"]


def test_keep_known_ids_finds_a_coin_by_any_of_its_sources_ids() -> None:
    from cryptoviz.pipeline import keep_known_ids
    from tests.factories import snapshot

    base = snapshot("cronos")
    only_cmc = replace(base, coin_id="cronos", coingecko_id=None, coinmarketcap_id="3635",
                       sources=(replace(base.sources[1], source="coinmarketcap-html", source_id="3635"),))
    [kept] = keep_known_ids([only_cmc], {("coinmarketcap", "3635"): "crypto-com-chain"})
    assert kept.coin_id == "crypto-com-chain"
    # a coin that CoinGecko reported this cycle keeps the id it was given
    [same] = keep_known_ids([base], {("coinmarketcap", "1"): "another"})
    assert same.coin_id == "cronos"
    # an id already taken in this cycle is not given twice
    assert [s.coin_id for s in keep_known_ids([only_cmc, replace(base, coin_id="crypto-com-chain")],
                                              {("coinmarketcap", "3635"): "crypto-com-chain"})] == [
        "cronos", "crypto-com-chain"]


def test_a_replayed_cycle_keeps_the_capture_times(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'replay.db'}")
    engine = open_store(settings)
    doc = orjson.loads((FIXTURES / "coinmarketcap" / "listings-latest-2021-04-20.json").read_bytes())
    doc["data"][0]["quote"]["USD"]["price"] = "n/a"
    page = RawPage("coinmarketcap", orjson.dumps(doc), "json", CMC_AT)
    with Pipeline(settings, engine=engine, in_process=True) as pipeline:
        run = pipeline.publish([SourceOutcome("coinmarketcap", [page])], CMC_AT)
    assert run.finished_at == CMC_AT  # not the wall clock: the cycle took no time in 2021
    with engine.connect() as conn:
        started, finished = conn.execute(sa.text("SELECT started_at, finished_at FROM pipeline_runs")).one()
        rejected_at = conn.execute(sa.text("SELECT DISTINCT rejected_at FROM quote_rejections")).scalars().all()
    assert str(started)[:19] == str(finished)[:19] == "2021-04-20 23:30:09"
    assert [str(r)[:19] for r in rejected_at] == ["2021-04-20 23:30:09"]


class RecordedPages:
    """A pull source serving recorded page bodies, one fetch after another (fetched now)."""

    def __init__(self, name: str, bodies: list[bytes]) -> None:
        self.name = name
        self.bodies = list(bodies)

    def fetch(self) -> list[RawPage]:
        return [RawPage(self.name, self.bodies.pop(0), "html", utc_now(), url=f"https://example.test/{self.name}")]

    def parse(self, page: RawPage) -> ParseResult:
        return registry.parse_page(page, "usd")


def test_layout_drift_is_flagged_before_a_page_yields_nothing_and_the_pages_are_kept(tmp_path: Path) -> None:
    from cryptoviz import metrics

    html = FIXTURES / "html"
    pages = [(html / "coinmarketcap-en-page1.html").read_bytes(),  # 100 coins from the embedded list
             (html / "coinmarketcap-en-no-next-data.html").read_bytes(),  # the list is gone: 10 table rows
             b"<html lang='en'><body><p>We moved things around</p></body></html>"]  # nothing at all
    # the recorded pages are from 2024: let their quotes count as fresh
    settings = load_settings(sources="coinmarketcap-html", failed_pages_dir=tmp_path / "failed", top_n=100,
                             max_staleness=1e9)
    ticks = iter(range(0, 10_000, 60))
    collector = Collector(settings, [RecordedPages("coinmarketcap-html", pages)], ListPublisher(),
                          clock=lambda: float(next(ticks)))
    try:
        runs = [collector.run_cycle() for _ in range(3)]
    finally:
        collector.close()
    first, shrunk, gone = (r.sources["coinmarketcap-html"] for r in runs)
    assert (first.strategy, first.fell_back, first.layout, first.fetched) == (
        "next-data:cryptoCurrencyList", False, None, 100)
    assert (shrunk.strategy, shrunk.fell_back) == ("table", True)
    assert shrunk.layout == "layout_changed: 10 coins vs 100 at the last fetch"
    assert runs[1].status == "ok"  # still usable: flagged, not failed
    assert gone.layout is not None and gone.layout.startswith("layout_changed: no coins found (tried next-data:")
    assert runs[2].status == "failed" and "coin list not found" in (gone.error or "")
    kept = sorted((tmp_path / "failed" / "coinmarketcap-html").iterdir())
    assert [p.name.split("-", 1)[1] for p in kept] == ["fewer-coins.html", "layout-changed.html"]
    assert kept[1].read_bytes() == pages[2]
    sample = metrics.render().decode()
    assert 'cryptoviz_source_layout_changed{source="coinmarketcap-html"} 1.0' in sample
    assert 'cryptoviz_source_strategy_fallbacks_total{source="coinmarketcap-html",strategy="table"}' in sample
    assert runs[2].sources["coinmarketcap-html"].as_json()["layout"] == gone.layout


# --- live updates from an exchange feed --------------------------------------------------------------------

EXCHANGE = "test-exchange"


def parse_pairs(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
    """Frames like an exchange's ticker array: [{"s": "BTCUSDT", "b": "BTC", "q": "usdt", "c": 100.0, "E": ms}]."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"{EXCHANGE}: not a JSON frame ({exc})") from None
    return ParseResult(quotes=[
        SourceQuote(EXCHANGE, t["s"], t["b"], "", None, None, float(t["c"]), None, 1000.0, None, None, None, None,
                    None, None, datetime.fromtimestamp(t["E"] / 1000, UTC), collected_at, t["q"])
        for t in items])


class ExchangeFeed(TickerFeed):
    name = EXCHANGE

    def parse(self, page: RawPage) -> ParseResult:
        return parse_pairs(page.body, page.fetched_at, "usd")


EXCHANGE_SPEC = SourceSpec(name=EXCHANGE, title="test exchange", kind="push", namespace=IdNamespace(EXCHANGE),
                           trust=0.9, parse=parse_pairs, build=ExchangeFeed, budget=RequestBudget(per_minute=60),
                           pairs=True)


def ticks(**prices: tuple[str, float]) -> bytes:
    now_ms = int(utc_now().timestamp() * 1000)
    return orjson.dumps([{"s": pair, "b": pair[:-4] if pair.endswith(("USDT", "USDC")) else pair[:-3],
                          "q": quote, "c": price, "E": now_ms} for pair, (quote, price) in prices.items()])


def test_exchange_ticks_publish_the_coins_they_moved_between_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "SPECS", MappingProxyType({**registry.SPECS, EXCHANGE: EXCHANGE_SPEC}))
    feed = ExchangeFeed()
    with start_simulator(faults="none", seed=5, n_coins=30) as sim:
        settings = load_settings(**sim.settings_overrides(), sources=f"coingecko,{EXCHANGE}", top_n=30)
        with HttpClient(settings) as http:
            [coingecko], _ = build_sources(load_settings(**sim.settings_overrides(), sources="coingecko", top_n=30),
                                           http)
            publisher = ListPublisher()
            collector = Collector(settings, [coingecko, feed], publisher)
            collector.streaming = True
            collector.start()
            try:
                # before any aggregator cycle no symbol is known: the ticks wait in the book, unmapped
                feed.push(ticks(BTCUSDT=("usdt", 101_000.0)))
                assert collector.stream_tick() == []
                run = collector.run_cycle()  # coingecko: the coins, their symbols, tether's live price
                assert run.sources[EXCHANGE].fetched == 1  # the tick's frame, counted in the cycle's report
                assert run.sources[EXCHANGE].feed == FeedStatus(connected=True).as_json()
                tether = next(s for s in publisher.batches[-1] if s.coin_id == "tether")
                # from now on a live tick publishes, at once, only the coins it moved
                time.sleep(1.05)  # observations are whole seconds: the next one is newer than the cycle's
                feed.push(ticks(BTCUSDT=("usdt", 102_000.0), FOOUSDT=("usdt", 1.0)))
                moved = collector.stream_tick()
                assert [s.coin_id for s in moved] == ["bitcoin"]
                assert {v.source for v in moved[0].sources} == {"coingecko", EXCHANGE}
                assert next(v for v in moved[0].sources if v.source == EXCHANGE).price == pytest.approx(
                    102_000.0 * tether.price)  # converted with tether's own consensus, not 1
                assert moved[0].record  # the first with the exchange: a history row
                # the same price again a second later: published (current value) but no history row
                time.sleep(1.05)
                feed.push(ticks(BTCUSDT=("usdt", 102_000.0)))
                [again] = collector.stream_tick()
                assert again.record is False
                run = collector.run_cycle()
                assert run.sources[EXCHANGE].fetched == 3  # the ticks' frames since the last cycle
                assert run.sources[EXCHANGE].pairs is not None
                assert run.sources[EXCHANGE].pairs["unmapped_pairs"] == ["FOOUSDT"]
            finally:
                collector.close()
    assert feed.stops == 1


class _EmptyListHandler(BaseHTTPRequestHandler):
    """A CoinGecko lookalike that answers every request with 200 and no coin: nothing usable."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_a_source_that_keeps_answering_nothing_usable_opens_its_breaker() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyListHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/v3"
        settings = load_settings(sources="coingecko", coingecko_base_url=url, top_n=10, interval=60)
        with HttpClient(settings) as http:
            sources, _ = build_sources(settings, http)
            clock = [1000.0]
            collector = Collector(settings, sources, ListPublisher(), clock=lambda: clock[0])
            try:
                reports = []
                for _ in range(3):
                    reports.append(collector.run_cycle())
                    clock[0] += 60
                assert all(r.status == "failed" for r in reports)
                assert "no coin in the answer" in (reports[0].sources["coingecko"].error or "")
                assert http.breaker("coingecko").state == "open"
                fourth = collector.run_cycle()  # the breaker stops the fetch before it reaches the server
            finally:
                collector.close()
        assert fourth.sources["coingecko"].breaker == "open"
    finally:
        server.shutdown()
        server.server_close()


# --- the consensus's memory from one cycle to the next ------------------------------------------------------


def _named_feed(name: str) -> tuple[SourceSpec, type[TickerFeed]]:
    def parse(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
        result = parse_ticks(body, collected_at, currency)
        return ParseResult(quotes=[replace(q, source=name) for q in result.quotes])

    feed_class = type(f"Feed_{name}", (TickerFeed,), {"name": name,
                                                      "parse": lambda self, page: parse(page.body, page.fetched_at,
                                                                                        "usd")})
    spec = SourceSpec(name=name, title=f"test feed {name}", kind="push", namespace=IdNamespace(name), trust=0.8,
                      parse=parse, build=feed_class, budget=RequestBudget(per_minute=60))
    return spec, feed_class


def test_a_source_left_out_as_an_outlier_stays_out_until_well_back_in_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector hands each cycle what the last one remembered: 4 % off stays out after 10 % off
    (the limit is 5 %, re-admission within 2.5 %), while a collector without that memory takes it."""
    names = ("feed-a", "feed-b", "feed-c")
    made = {name: _named_feed(name) for name in names}
    monkeypatch.setattr(registry, "SPECS", MappingProxyType({**registry.SPECS, **{n: s for n, (s, _) in made.items()}}))
    settings = load_settings(sources=",".join(names), disagreement_tolerance=0.05)

    def cycle(collector: Collector, feeds: list[TickerFeed], off: float) -> CoinSnapshot:
        at = utc_now()
        for feed, price in zip(feeds, (100.0, 100.1, 100.0 * (1 + off)), strict=True):
            feed.push(tick_frame(at, btc=price), at)
        collector.run_cycle()
        [btc] = [s for s in collector.publisher.batches[-1] if s.symbol == "BTC"]  # type: ignore[attr-defined]
        return btc

    def collector() -> tuple[Collector, list[TickerFeed]]:
        feeds = [made[n][1]() for n in names]
        return Collector(settings, feeds, ListPublisher()), feeds

    remembering, feeds = collector()
    try:
        first = cycle(remembering, feeds, 0.10)
        assert "feed-c" not in first.sources_used
        assert "feed-c" not in cycle(remembering, feeds, 0.04).sources_used  # still out: not within half
        assert "feed-c" in cycle(remembering, feeds, 0.01).sources_used  # back within half the limit
    finally:
        remembering.close()
    fresh, feeds = collector()
    try:
        assert "feed-c" in cycle(fresh, feeds, 0.04).sources_used  # no memory: 4 % is within the limit
    finally:
        fresh.close()
