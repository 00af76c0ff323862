"""Settings: the only place that reads the environment (``CRYPTOVIZ_*`` variables and ``.env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cryptoviz.errors import ConfigError

API_SOURCES = ("coingecko", "coinmarketcap")
HTML_SOURCES = ("coingecko-html", "coinmarketcap-html")
KNOWN_SOURCES = API_SOURCES + HTML_SOURCES

# Pages are scraped, so they are trusted a little less than the APIs by default.
DEFAULT_TRUST: dict[str, float] = {
    "coinmarketcap": 0.9,
    "coingecko": 0.8,
    "coinmarketcap-html": 0.7,
    "coingecko-html": 0.6,
}


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
    coingecko_api_key: SecretStr | None = None
    coinmarketcap_api_key: SecretStr | None = None
    coingecko_base_url: str = "https://api.coingecko.com/api/v3"
    coinmarketcap_base_url: str = "https://pro-api.coinmarketcap.com"
    coingecko_html_base_url: str = "https://www.coingecko.com"
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
        unknown = [s for s in value if s not in KNOWN_SOURCES]
        if unknown:
            raise ValueError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(KNOWN_SOURCES)}")
        if not value:
            raise ValueError("no source given")
        return value

    @field_validator("trust", mode="before")
    @classmethod
    def _trust(cls, value: Any) -> Any:
        if isinstance(value, str):
            parsed: dict[str, float] = {}
            for part in _split_list(value):
                name, sep, number = part.partition("=")
                if not sep:
                    raise ValueError(f"expected source=weight pairs such as coingecko=0.8, got {part!r}")
                try:
                    parsed[name.strip()] = float(number)
                except ValueError:
                    raise ValueError(f"weight of {name.strip()!r} is not a number: {number!r}") from None
            value = parsed
        if isinstance(value, dict):
            for name, weight in value.items():
                if name not in KNOWN_SOURCES:
                    raise ValueError(f"unknown source {name!r}; known: {', '.join(KNOWN_SOURCES)}")
                if not 0 < float(weight) <= 1:
                    raise ValueError(f"trust of {name!r} must be within (0, 1], got {weight}")
        return value

    # --- derived ---------------------------------------------------------------------------

    @property
    def kafka_enabled(self) -> bool:
        return bool(self.kafka_bootstrap_servers)

    @property
    def dlq_topic(self) -> str:
        return f"{self.kafka_topic}.dlq"

    def trust_of(self, source: str) -> float:
        return self.trust.get(source, DEFAULT_TRUST.get(source, 0.5))

    def enabled_sources(self) -> list[str]:
        """The explicit list; else CoinGecko plus CoinMarketCap's API with a key, or its pages without."""
        if self.sources:
            return list(self.sources)
        key = self.coinmarketcap_api_key
        has_key = key is not None and bool(key.get_secret_value().strip())
        return ["coingecko", "coinmarketcap" if has_key else "coinmarketcap-html"]


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
