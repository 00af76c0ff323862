"""The source registry: parser dispatch for recorded pages, and building the enabled sources."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError
from cryptoviz.models import ParseResult, SourceQuote
from cryptoviz.sources import registry
from cryptoviz.sources.base import RawPage
from cryptoviz.sources.coingecko import CoinGeckoSource, parse_markets
from cryptoviz.sources.coinmarketcap import CoinMarketCapSource, parse_listings
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.registry import (
    CMC_NO_KEY_WARNING,
    PARSERS,
    build_sources,
    get_parser,
    parse_page,
    register_parser,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T = datetime(2021, 4, 20, 23, 30, 10, tzinfo=UTC)


@pytest.fixture
def http() -> Any:
    with HttpClient(Settings()) as client:
        yield client


def page(source: str, path: str) -> RawPage:
    return RawPage(source=source, body=(FIXTURES / path).read_bytes(), extension="json", fetched_at=T)


def test_api_parsers_are_registered() -> None:
    assert PARSERS["coingecko"] is parse_markets
    assert PARSERS["coinmarketcap"] is parse_listings


def test_parse_page_dispatches_by_source_and_uses_the_fetch_time() -> None:
    cmc = parse_page(page("coinmarketcap", "coinmarketcap/listings-latest-2021-04-20.json"), "usd")
    assert len(cmc.quotes) == 100
    assert {q.collected_at for q in cmc.quotes} == {T}
    cg = parse_page(page("coingecko", "coingecko/markets-usd-page1.json"), "usd")
    assert cg.quotes[0].source == "coingecko"
    assert len(cg.quotes) == 6


def test_unknown_source_has_no_parser() -> None:
    with pytest.raises(ParseError, match="no parser for source 'nope'"):
        parse_page(RawPage("nope", b"[]", "json", T), "usd")


def test_register_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PARSERS", dict(PARSERS))

    def parse_nothing(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
        return ParseResult()

    register_parser("custom", parse_nothing)
    assert get_parser("custom") is parse_nothing


def _quote(source: str) -> SourceQuote:
    return SourceQuote(source, "x", "X", "X", "x", 1, 1.0, None, None, None, None, None, None, None, None,
                       None, T, "usd")


def test_html_parsers_are_found_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PARSERS", dict(PARSERS))

    def parse_html(body: bytes, collected_at: datetime, currency: str) -> ParseResult:
        return ParseResult(quotes=[_quote("coingecko-html")])

    modules = {"coingecko-html": SimpleNamespace(parse_page=parse_html)}
    monkeypatch.setattr(registry, "_html_module", modules.get)
    result = parse_page(RawPage("coingecko-html", b"<html></html>", "html", T), "usd")
    assert [q.source for q in result.quotes] == ["coingecko-html"]
    assert registry.PARSERS["coingecko-html"] is parse_html
    with pytest.raises(ParseError, match="no parser for source 'coinmarketcap-html'"):
        get_parser("coinmarketcap-html")


def test_html_module_lookup_only_for_known_page_sources() -> None:
    assert registry._html_module("coingecko") is None
    assert registry._html_module("../../etc") is None


# --- build_sources -------------------------------------------------------------------------------


def test_default_sources_without_cmc_key_read_cmc_pages_with_one_warning(http: HttpClient) -> None:
    from cryptoviz.sources.coinmarketcap_html import CoinMarketCapHtmlSource
    from cryptoviz.sources.registry import CMC_PAGES_INSTEAD

    sources, warnings = build_sources(Settings(), http)
    assert [type(s) for s in sources] == [CoinGeckoSource, CoinMarketCapHtmlSource]
    assert warnings == [CMC_PAGES_INSTEAD]


def test_cmc_api_asked_for_without_key_is_skipped_with_one_warning(http: HttpClient) -> None:
    sources, warnings = build_sources(Settings(sources="coingecko,coinmarketcap"), http)
    assert [type(s) for s in sources] == [CoinGeckoSource]
    assert warnings == [CMC_NO_KEY_WARNING]
    assert CMC_NO_KEY_WARNING == (
        "coinmarketcap: no CRYPTOVIZ_COINMARKETCAP_API_KEY set, source skipped (get a free key at "
        "coinmarketcap.com/api, or add coinmarketcap-html to CRYPTOVIZ_SOURCES)")


def test_both_api_sources_with_a_key_share_one_client(http: HttpClient) -> None:
    sources, warnings = build_sources(Settings(coinmarketcap_api_key=SecretStr("k-123456")), http)
    assert [s.name for s in sources] == ["coingecko", "coinmarketcap"]
    assert [type(s) for s in sources] == [CoinGeckoSource, CoinMarketCapSource]
    assert warnings == []
    assert http.limiter("coingecko") is not None and http.limiter("coinmarketcap") is not None


def test_a_blank_cmc_key_counts_as_none(http: HttpClient) -> None:
    sources, warnings = build_sources(Settings(coinmarketcap_api_key=SecretStr("  "), sources=["coinmarketcap"]), http)
    assert sources == [] and warnings == [CMC_NO_KEY_WARNING]


def test_missing_page_source_is_skipped_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                       http: HttpClient) -> None:
    monkeypatch.setattr(registry, "_html_module", lambda name: None)
    sources, warnings = build_sources(Settings(sources=["coingecko", "coinmarketcap-html"]), http)
    assert [s.name for s in sources] == ["coingecko"]
    assert warnings == ["coinmarketcap-html: not available in this build, source skipped"]


def test_page_sources_are_built_from_their_module(monkeypatch: pytest.MonkeyPatch, http: HttpClient) -> None:
    built: list[tuple[Settings, HttpClient]] = []

    class CoinGeckoHtmlSource:
        name = "coingecko-html"

        def __init__(self, settings: Settings, client: HttpClient) -> None:
            built.append((settings, client))

    def build_source(settings: Settings, client: HttpClient) -> Any:
        return SimpleNamespace(name="coinmarketcap-html")

    modules = {"coingecko-html": SimpleNamespace(CoinGeckoHtmlSource=CoinGeckoHtmlSource),
               "coinmarketcap-html": SimpleNamespace(build_source=build_source)}
    monkeypatch.setattr(registry, "_html_module", modules.get)
    settings = Settings(sources=["coingecko-html", "coinmarketcap-html"])
    sources, warnings = build_sources(settings, http)
    assert [s.name for s in sources] == ["coingecko-html", "coinmarketcap-html"]
    assert warnings == []
    assert built == [(settings, http)]
