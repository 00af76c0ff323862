"""Which sources exist: their parsers (for replaying recorded pages) and how to build them from settings.

The page sources (``coingecko-html``, ``coinmarketcap-html``) live in their own modules and are looked up
lazily: a module ``cryptoviz.sources.<name with _>`` providing ``parse_page`` (a ``ParseFn``) and a source
class (``build_source(settings, http)``, or the class named in ``_HTML_CLASSES``) joins by itself.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, cast

from cryptoviz.config import API_SOURCES, HTML_SOURCES, Settings
from cryptoviz.errors import ParseError
from cryptoviz.models import ParseResult
from cryptoviz.sources.base import ParseFn, RawPage, Source
from cryptoviz.sources.coingecko import CoinGeckoSource, parse_markets
from cryptoviz.sources.coinmarketcap import KEY_VAR, CoinMarketCapSource, parse_listings
from cryptoviz.sources.http import HttpClient

PARSERS: dict[str, ParseFn] = {
    "coingecko": parse_markets,
    "coinmarketcap": parse_listings,
}

_HTML_CLASSES = {"coingecko-html": "CoinGeckoHtmlSource", "coinmarketcap-html": "CoinMarketCapHtmlSource"}

CMC_PAGES_INSTEAD = (
    "coinmarketcap: no CRYPTOVIZ_COINMARKETCAP_API_KEY set, reading coinmarketcap.com pages instead "
    "(coinmarketcap-html); a free key at coinmarketcap.com/api gives the API")
CMC_NO_KEY_WARNING = (
    f"coinmarketcap: no {KEY_VAR} set, source skipped (get a free key at coinmarketcap.com/api, "
    "or add coinmarketcap-html to CRYPTOVIZ_SOURCES)"
)


def register_parser(name: str, fn: ParseFn) -> None:
    """Make ``fn`` the parser of pages recorded from source ``name``."""
    PARSERS[name] = fn


def _module_name(source: str) -> str:
    return f"cryptoviz.sources.{source.replace('-', '_')}"


def _html_module(source: str) -> Any | None:
    """The module of a page source, or ``None`` when this build does not have it."""
    if source not in HTML_SOURCES:
        return None
    name = _module_name(source)
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def get_parser(source: str) -> ParseFn:
    """The parse function of ``source``; raises ``ParseError`` for a source nobody can parse."""
    parser = PARSERS.get(source)
    if parser is None:
        module = _html_module(source)
        found = getattr(module, "parse_page", None) if module is not None else None
        if not callable(found):
            known = ", ".join(sorted({*PARSERS, *API_SOURCES}))
            raise ParseError(f"no parser for source {source!r} in this build (known: {known})")
        parser = cast(ParseFn, found)
        register_parser(source, parser)
    return parser


def parse_page(page: RawPage, currency: str) -> ParseResult:
    """Parse a page with its source's parser, as collected at ``page.fetched_at``."""
    return get_parser(page.source)(page.body, page.fetched_at, currency)


def _build_html_source(name: str, settings: Settings, http: HttpClient) -> Source | None:
    module = _html_module(name)
    if module is None:
        return None
    factory = getattr(module, "build_source", None) or getattr(module, _HTML_CLASSES[name], None)
    if not callable(factory):
        return None
    return cast(Source, factory(settings, http))


def build_sources(settings: Settings, http: HttpClient | None = None) -> tuple[list[Source], list[str]]:
    """The enabled sources, sharing one ``HttpClient``, and one-line warnings about skipped ones.

    The warnings are returned, not logged: the caller shows them once, where the user looks."""
    http = http if http is not None else HttpClient(settings)
    sources: list[Source] = []
    warnings: list[str] = []
    enabled = settings.enabled_sources()
    if settings.sources is None and "coinmarketcap-html" in enabled:
        warnings.append(CMC_PAGES_INSTEAD)
    for name in enabled:
        if name == "coingecko":
            sources.append(CoinGeckoSource(settings, http))
        elif name == "coinmarketcap":
            key = settings.coinmarketcap_api_key
            if key is None or not key.get_secret_value().strip():
                warnings.append(CMC_NO_KEY_WARNING)
                continue
            sources.append(CoinMarketCapSource(settings, http))
        elif (source := _build_html_source(name, settings, http)) is not None:
            sources.append(source)
        else:
            warnings.append(f"{name}: not available in this build, source skipped")
    return sources, warnings
