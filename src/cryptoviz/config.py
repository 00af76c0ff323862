"""Settings: the only place that reads the environment (``CRYPTOVIZ_*`` variables and ``.env``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cryptoviz.errors import ConfigError

UNKNOWN_SOURCE_TRUST = 0.5
DAY = 86_400.0
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY, "y": 365 * DAY}
_OFF = ("off", "none", "never", "forever", "0")


def parse_duration(value: Any, *, allow_off: bool = False) -> float | None:
    """``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w``, ``1y`` -> seconds; ``off`` (with ``allow_off``) -> None."""
    if value is None or isinstance(value, int | float) and not isinstance(value, bool):
        seconds = None if value is None else float(value)
    else:
        text = str(value).strip().lower()
        if allow_off and text in _OFF:
            return None
        number, unit = (text[:-1], text[-1]) if text and text[-1] in _DURATION_UNITS else (text, "s")
        try:
            seconds = float(number) * _DURATION_UNITS[unit]
        except ValueError:
            raise ValueError("expected a duration such as 30d, 12h, 15m or seconds"
                             + (" (or off)" if allow_off else "")) from None
    if seconds is None or seconds == 0 and allow_off:
        if allow_off:
            return None
        raise ValueError("a duration is required")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("must be a positive duration")
    return seconds


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
    # exchanges' public websocket feeds (keyless)
    binance_ws_url: str = "wss://stream.binance.com:9443"
    coinbase_ws_url: str = "wss://advanced-trade-ws.coinbase.com"
    kraken_ws_url: str = "wss://ws.kraken.com/v2"
    # pairs the feeds that need a list subscribe to (comma lists; empty: the feed's built-in top pairs)
    coinbase_products: Annotated[list[str] | None, NoDecode] = None
    kraken_pairs: Annotated[list[str] | None, NoDecode] = None
    # base asset -> coin id where a symbol alone is ambiguous or unknown, e.g. UNI=uniswap
    symbol_map: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # seconds between live consensus updates of coins with new exchange quotes
    stream_interval: float = Field(default=1.0, gt=0)
    coinmarketcap_html_base_url: str = "https://coinmarketcap.com"
    http_timeout: float = Field(default=15.0, gt=0)
    http_retries: int = Field(default=3, ge=0)
    # validation and reconciliation
    market_cap_tolerance: float = Field(default=0.1, ge=0)
    disagreement_tolerance: float = Field(default=0.05, ge=0)
    # history: a row only when something changed, or the heartbeat is due
    history_deviation: float = Field(default=0.001, ge=0, description="relative consensus move")
    history_heartbeat: float = Field(default=600.0, gt=0, description="seconds")
    # retention: raw history and source quotes, 5-minute candles (None: kept forever)
    retention_raw: Annotated[float | None, NoDecode] = 30 * DAY
    retention_5m: Annotated[float | None, NoDecode] = 365 * DAY
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
    # logs, and scraped pages no layout strategy could read (kept for bug reports, the last 20 per source)
    log_dir: Path = Path("data/logs")
    failed_pages_dir: Path = Path("data/failed-pages")
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

    @field_validator("retention_raw", "retention_5m", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        return parse_duration(value, allow_off=True)

    @field_validator("coinbase_products", "kraken_pairs", mode="before")
    @classmethod
    def _pair_lists(cls, value: Any) -> Any:
        value = _split_list(value)
        return [str(v).strip().upper() for v in value] if isinstance(value, list) and value else None

    @field_validator("symbol_map", mode="before")
    @classmethod
    def _symbol_map(cls, value: Any) -> Any:
        if isinstance(value, str):
            parsed: dict[str, str] = {}
            for part in _split_list(value):
                symbol, sep, coin = part.partition("=")
                if not sep or not symbol.strip() or not coin.strip():
                    raise ValueError(f"expected SYMBOL=coin-id pairs such as UNI=uniswap, got {part!r}")
                parsed[symbol.strip().upper()] = coin.strip()
            return parsed
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
