"""The project's exception tree.

    CryptoVizError
    ├── ConfigError          invalid settings (names the CRYPTOVIZ_* variable)
    ├── SourceError          a source could not deliver a usable response
    │   ├── TransientSourceError   worth retrying later (timeout, 5xx, 429, rate limit)
    │   └── TerminalSourceError    retrying will not help (invalid key, plan limit, layout changed)
    │       └── LayoutChangedError     a scraped page no longer holds its data where any known layout had it
    ├── ParseError           a raw body or value could not be parsed
    ├── MessageError         a bus message cannot be decoded or fails validation (goes to the DLQ)
    └── StoreError           the database is unavailable or refused a write
"""

from __future__ import annotations


class CryptoVizError(Exception):
    """Base of every error CryptoViz raises on purpose."""


class ConfigError(CryptoVizError):
    """Settings are invalid; the message names the variable and what is expected."""


class SourceError(CryptoVizError):
    """A source failed as a whole (not one item of it)."""

    def __init__(self, source: str, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.status = status
        self.retry_after = retry_after


class TransientSourceError(SourceError):
    """Worth retrying: timeouts, 5xx, rate limits."""


class TerminalSourceError(SourceError):
    """Retrying will not help until the user acts (key, plan, page layout)."""


class LayoutChangedError(TerminalSourceError):
    """No extraction strategy found the data in a scraped page: the site changed its layout.

    ``strategies_tried`` names the strategies tried, in order; the message says what the user can do.
    """

    def __init__(self, source: str, message: str, *, strategies_tried: tuple[str, ...] = ()) -> None:
        super().__init__(source, message)
        self.strategies_tried = strategies_tried


class ParseError(CryptoVizError):
    """A body or a value could not be parsed."""


class MessageError(CryptoVizError):
    """A bus message could not be decoded or validated."""


class StoreError(CryptoVizError):
    """The database could not be reached or refused the write."""
