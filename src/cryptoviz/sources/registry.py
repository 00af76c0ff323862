"""Every source CryptoViz knows, one :class:`~cryptoviz.sources.spec.SourceSpec` each.

Adding a source is one module ending with its ``SPEC`` plus one line in :data:`SPECS` (see
docs/extending.md). Settings validation, the default sources, building the enabled ones, the parsers of
recorded bodies, default trust and intervals, and the reconciler's id namespaces all read this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cryptoviz.config import Settings
from cryptoviz.errors import ParseError
from cryptoviz.models import ParseResult
from cryptoviz.sources import (
    binance,
    coinbase,
    coingecko,
    coingecko_html,
    coinmarketcap,
    coinmarketcap_html,
    coinpaprika,
    kraken,
)
from cryptoviz.sources.base import ParseFn, RawPage, Source
from cryptoviz.sources.http import HttpClient
from cryptoviz.sources.spec import IdNamespace, SourceSpec

SPECS: Mapping[str, SourceSpec] = MappingProxyType({spec.name: spec for spec in (
    coingecko.SPEC,
    coinmarketcap.SPEC,
    coingecko_html.SPEC,
    coinmarketcap_html.SPEC,
    coinpaprika.SPEC,
    binance.SPEC,
    coinbase.SPEC,
    kraken.SPEC,
)})

CMC_PAGES_INSTEAD = (
    "coinmarketcap: no CRYPTOVIZ_COINMARKETCAP_API_KEY set, reading coinmarketcap.com pages instead "
    "(coinmarketcap-html); a free key at coinmarketcap.com/api gives the API")


def names() -> tuple[str, ...]:
    """The known source names, in registry order."""
    return tuple(SPECS)


def spec_of(source: str) -> SourceSpec:
    """The spec of ``source``; raises ``KeyError`` naming the known sources for an unknown one."""
    try:
        return SPECS[source]
    except KeyError:
        raise KeyError(f"unknown source {source!r}; known: {', '.join(SPECS)}") from None


def namespaces() -> dict[str, IdNamespace]:
    """Source name -> the id namespace it reports in (what the reconciler joins coins by)."""
    return {name: spec.namespace for name, spec in SPECS.items()}


def exchanges() -> frozenset[str]:
    """The sources whose quotes are exchange pairs (see cryptoviz.pairs)."""
    return frozenset(name for name, spec in SPECS.items() if spec.pairs)


def push_sources() -> frozenset[str]:
    return frozenset(name for name, spec in SPECS.items() if spec.kind == "push")


def default_trust(source: str) -> float | None:
    spec = SPECS.get(source)
    return spec.trust if spec is not None else None


def has_setting(settings: Settings, field: str) -> bool:
    """Whether the setting ``field`` is set to something (a secret: to a non-blank value)."""
    value = getattr(settings, field, None)
    if value is None:
        return False
    secret = getattr(value, "get_secret_value", None)
    text = secret() if callable(secret) else value
    return bool(str(text).strip())


def default_sources(settings: Settings) -> list[str]:
    """The sources that run when ``CRYPTOVIZ_SOURCES`` is unset, in registry order."""
    return [name for name, spec in SPECS.items() if spec.default(settings)]


def enabled_sources(settings: Settings) -> list[str]:
    """``CRYPTOVIZ_SOURCES`` when set, else the default sources."""
    return list(settings.sources) if settings.sources else default_sources(settings)


def get_parser(source: str) -> ParseFn:
    """The parse function of ``source``'s bodies; raises ``ParseError`` for a source nobody can parse."""
    spec = SPECS.get(source)
    if spec is None:
        raise ParseError(f"no parser for source {source!r} in this build (known: {', '.join(SPECS)})")
    return spec.parse


def parse_page(page: RawPage, currency: str) -> ParseResult:
    """Parse a body with its source's parser, as collected at ``page.fetched_at``."""
    return get_parser(page.source)(page.body, page.fetched_at, currency)


def build_sources(settings: Settings, http: HttpClient | None = None) -> tuple[list[Source], list[str]]:
    """The enabled sources, sharing one ``HttpClient``, and one-line warnings about skipped ones.

    The warnings are returned, not logged: the caller shows them once, where the user looks."""
    http = http if http is not None else HttpClient(settings)
    sources: list[Source] = []
    warnings: list[str] = []
    enabled = enabled_sources(settings)
    if settings.sources is None and "coinmarketcap-html" in enabled and "coinmarketcap" not in enabled:
        warnings.append(CMC_PAGES_INSTEAD)
    for name in enabled:
        spec = SPECS[name]
        if spec.key_setting is not None and not has_setting(settings, spec.key_setting):
            warnings.append(spec.missing_key or f"{name}: no CRYPTOVIZ_{spec.key_setting.upper()} set, "
                                                 "source skipped")
            continue
        sources.append(spec.build(settings, http))
    return sources, warnings
