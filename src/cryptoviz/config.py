"""Settings: the only place that reads the environment (``CRYPTOVIZ_*`` variables and ``.env``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cryptoviz.errors import ConfigError

UNKNOWN_SOURCE_TRUST = 0.5


def known_sources() -> tuple[str, ...]:
    """The source names of the registry (imported here, not at the top: the sources import Settings)."""
    from cryptoviz.sources.registry import names

    return names()


def _check_names(names: Any, what: str) -> None:
    known = known_sources()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(known)}")


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of CryptoViz. Env var = ``CRYPTOVIZ_`` + the upper-cased field name."""

    model_config = SettingsConfigDict(
        env_prefix="CRYPTOVIZ_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        validate_default=True,
    )

    # store
    database_url: str = "sqlite:///data/cryptoviz.db"
    # bus: no bootstrap servers -> the in-process bus
    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "crypto_viz"
    kafka_group: str = "cryptoviz-writer"
    kafka_partitions: int = Field(default=6, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    # schedule
    interval: float = Field(default=60.0, gt=0)
    max_staleness: float = Field(default=900.0, gt=0, description="seconds")
    # what to collect
    vs_currency: str = "usd"
    top_n: int | Literal["all"] = 250
    sources: Annotated[list[str] | None, NoDecode] = None
    trust: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    # seconds between fetches per source, e.g. coinpaprika=600; unset: the source's own default
    source_intervals: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    coingecko_api_key: SecretStr | None = None
    coinmarketcap_api_key: SecretStr | None = None
    coingecko_base_url: str = "https://api.coingecko.com/api/v3"
    coinmarketcap_base_url: str = "https://pro-api.coinmarketcap.com"
    coingecko_html_base_url: str = "https://www.coingecko.com"
    coinpaprika_api_key: SecretStr | None = None
    coinpaprika_base_url: str = "https://api.coinpaprika.com/v1"
    coinmarketcap_html_base_url: str = "https://coinmarketcap.com"
    http_timeout: float = Field(default=15.0, gt=0)
    http_retries: int = Field(default=3, ge=0)
    # validation and reconciliation
    market_cap_tolerance: float = Field(default=0.1, ge=0)
    disagreement_tolerance: float = Field(default=0.05, ge=0)
    # writer batching
    batch_size: int = Field(default=5000, ge=1)
    batch_timeout: float = Field(default=0.05, gt=0)
    # On stop, how long the writer keeps retrying what it already holds before giving up on it.
    drain_timeout: float = Field(default=30.0, ge=0)
    bus_queue_size: int = Field(default=10_000, ge=1)
    # API and built-in dashboard: loopback only unless the user chooses otherwise
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_token: SecretStr | None = None
    # logs
    log_dir: Path = Path("data/logs")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("vs_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.strip().lower()
        if not value.isalpha() or not 2 <= len(value) <= 10:
            raise ValueError(f"expected a currency code such as usd or eur, got {value!r}")
        return value

    @field_validator("top_n", mode="before")
    @classmethod
    def _top_n(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value == "all":
                return value
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"expected a positive integer or 'all', got {value!r}")
            return int(value)
        if isinstance(value, int) and value < 1:
            raise ValueError(f"expected a positive integer or 'all', got {value!r}")
        return value

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> Any:
        value = _split_list(value)
        if value is None:
            return None
        _check_names(value, "source(s)")
        if not value:
            raise ValueError("no source given")
        return value

    @field_validator("trust", mode="before")
    @classmethod
    def _trust(cls, value: Any) -> Any:
        return _source_numbers(value, "weight", "coingecko=0.8", lambda w: 0 < w <= 1, "trust", "within (0, 1]")

    @field_validator("source_intervals", mode="before")
    @classmethod
    def _source_intervals(cls, value: Any) -> Any:
        return _source_numbers(value, "number of seconds", "coinpaprika=600", lambda s: s > 0, "interval",
                               "> 0 seconds")

    # --- derived ---------------------------------------------------------------------------

    @property
    def kafka_enabled(self) -> bool:
        return bool(self.kafka_bootstrap_servers)

    @property
    def dlq_topic(self) -> str:
        return f"{self.kafka_topic}.dlq"

    def trust_of(self, source: str) -> float:
        """``CRYPTOVIZ_TRUST`` for ``source``, else its spec's default trust (0.5 for an unknown source)."""
        if source in self.trust:
            return self.trust[source]
        from cryptoviz.sources.registry import default_trust

        found = default_trust(source)
        return UNKNOWN_SOURCE_TRUST if found is None else found

    def enabled_sources(self) -> list[str]:
        """``CRYPTOVIZ_SOURCES``, else the sources that run by default (see the registry)."""
        from cryptoviz.sources.registry import enabled_sources

        return enabled_sources(self)


def _source_numbers(value: Any, what: str, example: str, valid: Callable[[float], bool], name: str,
                    bound: str) -> Any:
    """A ``source=number`` mapping: known sources only, each number ``valid``."""
    value = _pairs(value, what, example)
    if isinstance(value, dict):
        _check_names(value, "source")
        for source, number in value.items():
            if not valid(float(number)):
                raise ValueError(f"{name} of {source!r} must be {bound}, got {number}")
    return value


def _pairs(value: Any, what: str, example: str) -> Any:
    """``"a=1, b=2"`` -> ``{"a": 1.0, "b": 2.0}``; other values unchanged."""
    if not isinstance(value, str):
        return value
    parsed: dict[str, float] = {}
    for part in _split_list(value):
        name, sep, number = part.partition("=")
        if not sep:
            raise ValueError(f"expected source={what} pairs such as {example}, got {part!r}")
        try:
            parsed[name.strip()] = float(number)
        except ValueError:
            raise ValueError(f"{what} of {name.strip()!r} is not a number: {number!r}") from None
    return parsed


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; an invalid value raises ``ConfigError`` with one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        given = first.get("input")
        shown = "" if isinstance(given, dict) or "key" in name or given is None else f" (got {given!r})"
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid setting CRYPTOVIZ_{name.upper()}: {msg}{shown}") from None
