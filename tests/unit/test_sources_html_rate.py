"""The page sources' own rate limit: real sources, a real ``HttpClient`` and the market simulator's pages
over HTTP; only the client's clock is fake, so the waits can be read off it instead of slept."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cryptoviz.config import Settings
from cryptoviz.simulator import Simulator, start_simulator
from cryptoviz.sources.base import RawPage
from cryptoviz.sources.coingecko import CoinGeckoSource
from cryptoviz.sources.coingecko_html import CoinGeckoHtmlSource
from cryptoviz.sources.coinmarketcap_html import CoinMarketCapHtmlSource
from cryptoviz.sources.html import PAGE_RATE, HtmlPageSource
from cryptoviz.sources.http import HttpClient
from tests.unit.test_http import FakeClock

FROZEN = 3600.0  # step_seconds that keeps the market still for the length of a test
COINS = 220  # the simulator's largest market: 3 pages of up to 100 coins


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with start_simulator(faults="none", seed=3, n_coins=COINS, step_seconds=FROZEN) as running:
        yield running


class TimedClient:
    """An ``HttpClient`` on a fake clock, noting the (fake) time each request goes out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = FakeClock()
        self.sent: list[tuple[str, float]] = []  # (path, seconds since the start)
        self._start = self.clock.now
        client = httpx.Client(timeout=10, event_hooks={"request": [self._note]})
        self.http = HttpClient(settings, client, sleep=self.clock.sleep, clock=self.clock)
        self._client = client

    def _note(self, request: httpx.Request) -> None:
        self.sent.append((request.url.path, self.clock.now - self._start))

    def times(self, path_part: str) -> list[float]:
        return [round(at, 6) for path, at in self.sent if path_part in path]

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def timed(simulator: Simulator) -> Iterator[TimedClient]:
    settings = Settings(_env_file=None, **simulator.settings_overrides(), top_n=COINS,  # type: ignore[call-arg]
                        http_retries=0)
    client = TimedClient(settings)
    yield client
    client.close()


def _coins(source: HtmlPageSource, pages: list[RawPage]) -> int:
    return sum(len(source.parse(page).quotes) for page in pages)


@pytest.mark.parametrize(("source_class", "path_part"), [(CoinGeckoHtmlSource, "/coingecko-www/"),
                                                         (CoinMarketCapHtmlSource, "/cmc-www/")])
def test_page_fetches_burst_then_are_paced_at_the_page_rate(
        timed: TimedClient, source_class: type[HtmlPageSource], path_part: str) -> None:
    rate, burst = PAGE_RATE
    assert (rate, burst) == (6, 3)  # the numbers below follow from these
    source = source_class(timed.settings, timed.http)
    limiter = timed.http.limiter(source.name)
    assert limiter is not None and (limiter.rate_per_minute, limiter.burst) == (rate, burst)

    # One cycle (3 pages) fits the bucket: no wait.
    first = source.fetch()
    assert _coins(source, first) == COINS
    assert timed.times(path_part) == [0.0, 0.0, 0.0]
    assert timed.clock.sleeps == []

    # An immediate second cycle finds the bucket empty: one page every 10 s.
    second = source.fetch()
    assert _coins(source, second) == COINS
    assert timed.times(path_part)[3:] == [10.0, 20.0, 30.0]
    assert timed.clock.sleeps == [pytest.approx(10.0)] * 3

    # A minute later the bucket is full again, but holds no more than the burst.
    timed.clock.now += 60.0
    timed.sent.clear()
    timed.clock.sleeps.clear()
    source.fetch()
    source.fetch()
    assert timed.times(path_part) == [90.0, 90.0, 90.0, 100.0, 110.0, 120.0]


def test_each_page_source_has_its_own_bucket_apart_from_the_apis(timed: TimedClient) -> None:
    settings = timed.settings
    gecko_api = CoinGeckoSource(settings, timed.http)
    gecko_pages = CoinGeckoHtmlSource(settings, timed.http)
    cmc_pages = CoinMarketCapHtmlSource(settings, timed.http)
    gecko_pages.fetch()
    cmc_pages.fetch()  # coingecko-html emptied its bucket, not this one
    gecko_api.fetch()
    assert timed.times("/coingecko-www/") == [0.0, 0.0, 0.0]
    assert timed.times("/cmc-www/") == [0.0, 0.0, 0.0]
    assert timed.times("/api/v3/") == [0.0]
    assert timed.clock.sleeps == []
    for name in ("coingecko-html", "coinmarketcap-html"):
        limiter = timed.http.limiter(name)
        assert limiter is not None and limiter.tokens == pytest.approx(0.0)  # each spent its own burst
    api_limiter = timed.http.limiter("coingecko")
    assert api_limiter is not None and (api_limiter.rate_per_minute, api_limiter.burst) == (10, 2)
