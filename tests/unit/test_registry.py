"""The source registry: one spec per source, and everything that derives from the specs."""

from __future__ import annotations

import logging
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from cryptoviz.config import Settings, load_settings
from cryptoviz.errors import ConfigError, ParseError
from cryptoviz.runtime import fetch_intervals
from cryptoviz.sources import registry
from cryptoviz.sources.base import RawPage
from cryptoviz.sources.coingecko import CoinGeckoSource, parse_markets
from cryptoviz.sources.coinmarketcap import NO_KEY_WARNING, CoinMarketCapSource, parse_listings
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.registry import CMC_PAGES_INSTEAD, SPECS, build_sources, get_parser, parse_page
from cryptoviz.sources.spec import RequestBudget

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T = datetime(2021, 4, 20, 23, 30, 10, tzinfo=UTC)


@pytest.fixture
def http() -> Any:
    with HttpClient(Settings()) as client:
        yield client


def page(source: str, path: str) -> RawPage:
    return RawPage(source=source, body=(FIXTURES / path).read_bytes(), extension="json", fetched_at=T)


def test_every_spec_is_consistent_with_settings_and_its_module() -> None:
    setting_names = set(Settings.model_fields)
    for name, spec in SPECS.items():
        assert spec.name == name
        assert set(spec.settings) <= setting_names, f"{name} reads settings that do not exist"
        assert 0 < spec.trust <= 1
        assert spec.kind in ("pull", "push")
        assert callable(spec.parse) and callable(spec.build)
    # Sources of one site share its id namespace: their quotes of one coin are joined by id.
    assert SPECS["coingecko"].namespace is SPECS["coingecko-html"].namespace
    assert SPECS["coinmarketcap"].namespace is SPECS["coinmarketcap-html"].namespace
    assert [n.name for n in registry.namespaces().values() if n.canonical] == ["coingecko", "coingecko"]


def test_parsers_come_from_the_specs() -> None:
    assert get_parser("coingecko") is parse_markets
    assert get_parser("coinmarketcap") is parse_listings
    for name, spec in SPECS.items():
        assert get_parser(name) is spec.parse


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


# --- settings derived from the registry ------------------------------------------------------------


def test_settings_accept_exactly_the_registered_names() -> None:
    assert load_settings(sources=",".join(SPECS)).sources == list(SPECS)
    with pytest.raises(ConfigError, match=r"CRYPTOVIZ_SOURCES: unknown source\(s\) 'bitstamp'; known: coingecko"):
        load_settings(sources="coingecko,bitstamp")
    with pytest.raises(ConfigError, match="CRYPTOVIZ_TRUST: unknown source 'nope'"):
        load_settings(trust="nope=0.5")
    with pytest.raises(ConfigError, match="CRYPTOVIZ_SOURCE_INTERVALS: unknown source 'nope'"):
        load_settings(source_intervals="nope=60")


def test_trust_defaults_come_from_the_specs_and_settings_override_them() -> None:
    settings = load_settings(trust="coingecko=0.55")
    assert settings.trust_of("coingecko") == 0.55
    assert settings.trust_of("coinmarketcap") == SPECS["coinmarketcap"].trust == 0.9
    assert settings.trust_of("not-registered") == 0.5


def test_source_intervals_are_parsed_and_checked() -> None:
    assert load_settings(source_intervals="coingecko=120, coinmarketcap-html=90").source_intervals == {
        "coingecko": 120.0, "coinmarketcap-html": 90.0}
    with pytest.raises(ConfigError, match="must be > 0 seconds"):
        load_settings(source_intervals="coingecko=0")
    with pytest.raises(ConfigError, match="expected source=number of seconds pairs"):
        load_settings(source_intervals="coingecko")


def test_fetch_intervals_default_to_the_spec_and_never_break_a_monthly_quota(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(interval=60, source_intervals="coingecko=30")
    intervals = fetch_intervals(settings, ["coingecko", "coinmarketcap-html"])
    # never more often than the cycle
    assert intervals == {"coingecko": 60.0, "coinmarketcap-html": 60.0}
    quota = next((s for s in SPECS.values() if s.budget.per_month), None)
    assert quota is not None, "no registered source has a monthly quota any more: this test has nothing to check"
    floor = quota.budget.shortest_interval()
    assert fetch_intervals(load_settings(), [quota.name])[quota.name] == max(quota.interval or 60.0, floor)
    hurried = load_settings(source_intervals=f"{quota.name}={floor / 2}")
    with caplog.at_level(logging.WARNING):
        assert fetch_intervals(hurried, [quota.name])[quota.name] == floor
    assert "calls a month" in caplog.text
    # a local simulator has no quota
    assert fetch_intervals(hurried, [quota.name], budgets=False)[quota.name] == max(floor / 2, 60.0)


def test_a_monthly_quota_sets_the_shortest_interval() -> None:
    assert RequestBudget(per_minute=1, per_month=20_000).shortest_interval() == 130  # 30 days / 20,000
    assert RequestBudget(per_minute=1, per_month=20_000).shortest_interval(2) == 260
    assert RequestBudget(per_minute=30).shortest_interval() == 0.0


# --- build_sources -------------------------------------------------------------------------------


def test_default_sources_without_cmc_key_read_cmc_pages_with_one_warning(http: HttpClient) -> None:
    sources, warnings = build_sources(Settings(), http)
    names = [s.name for s in sources]
    assert names[:2] == ["coingecko", "coinmarketcap-html"]
    assert names == registry.default_sources(Settings())
    assert warnings == [CMC_PAGES_INSTEAD]


def test_cmc_api_asked_for_without_key_is_skipped_with_one_warning(http: HttpClient) -> None:
    sources, warnings = build_sources(Settings(sources="coingecko,coinmarketcap"), http)
    assert [type(s) for s in sources] == [CoinGeckoSource]
    assert warnings == [NO_KEY_WARNING]
    assert NO_KEY_WARNING == (
        "coinmarketcap: no CRYPTOVIZ_COINMARKETCAP_API_KEY set, source skipped (get a free key at "
        "coinmarketcap.com/api, or add coinmarketcap-html to CRYPTOVIZ_SOURCES)")


def test_with_a_cmc_key_the_api_replaces_the_pages_and_all_share_one_client(http: HttpClient) -> None:
    sources, warnings = build_sources(Settings(coinmarketcap_api_key=SecretStr("k-123456")), http)
    names = [s.name for s in sources]
    assert names[:2] == ["coingecko", "coinmarketcap"] and "coinmarketcap-html" not in names
    assert [type(s) for s in sources[:2]] == [CoinGeckoSource, CoinMarketCapSource]
    assert warnings == []
    assert all(http.limiter(name) is not None for name in names)


def test_a_blank_cmc_key_counts_as_none(http: HttpClient) -> None:
    sources, warnings = build_sources(Settings(coinmarketcap_api_key=SecretStr("  "), sources=["coinmarketcap"]), http)
    assert sources == [] and warnings == [NO_KEY_WARNING]


def test_every_registered_source_builds(http: HttpClient) -> None:
    settings = Settings(sources=list(SPECS), coinmarketcap_api_key=SecretStr("k-123456"))
    sources, warnings = build_sources(settings, http)
    assert [s.name for s in sources] == list(SPECS) and warnings == []
    kinds = {f.name for f in fields(SPECS["coingecko"])}
    assert {"name", "namespace", "trust", "interval", "budget", "settings", "parse", "build"} <= kinds
