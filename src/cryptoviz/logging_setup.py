"""Logging for entry points: console (Rich) + rotating file; secrets masked in every record."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import sys
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from cryptoviz import progress
from cryptoviz.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SecretMask(logging.Filter):
    """Replace any configured secret value that reaches a log record (defence in depth): in the message,
    and in the traceback and stack text a record may carry (an exception's message can quote a secret)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            masked = self._mask(message)
            if masked != message:
                record.msg, record.args = masked, None
            if record.exc_info and not record.exc_text:
                # Formatters reuse exc_text once it is set: format the traceback once, here, and mask it.
                record.exc_text = _TRACEBACKS.formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self._mask(record.exc_text)
            if record.stack_info:
                record.stack_info = self._mask(record.stack_info)
        return True


_TRACEBACKS = logging.Formatter()


def secrets_of(settings: Settings) -> list[str]:
    """The secret values the settings hold: API keys and the API token. (Database URLs are logged through
    ``store.engine.redact``; their password, often an ordinary word such as the user name, is not masked
    here, where it would blank that word in every message.)"""
    keys = (settings.coingecko_api_key, settings.coinmarketcap_api_key, settings.api_token)
    return [key.get_secret_value() for key in keys if key is not None]


def configure_logging(settings: Settings, *, log_file: Path | None = None, quiet: bool = False) -> Path | None:
    """Console + ``data/logs/cryptoviz.log`` (rotating). Returns the log file path (None if unwritable)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(settings.log_level)
    mask = SecretMask(secrets_of(settings))
    console: logging.Handler
    if sys.stderr.isatty():
        terminal = Console(stderr=True)
        console = RichHandler(show_path=False, rich_tracebacks=False, markup=False, log_time_format="[%X]",
                              console=terminal)
        # Long page walks (TOP_N=all) show live bars on the same console; log lines print above them.
        atexit.register(progress.install_bars(terminal))
    else:  # pipes and files get plain, unwrapped lines
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(LOG_FORMAT))
    console.setLevel(logging.WARNING if quiet else settings.log_level)
    console.addFilter(mask)
    root.addHandler(console)
    path = log_file or settings.log_dir / "cryptoviz.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=10_000_000, backupCount=5,
                                                            encoding="utf-8")
    except OSError as exc:
        root.warning("cannot write log file %s (%s): logging to the console only", path, exc)
        return None
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    file_handler.addFilter(mask)
    root.addHandler(file_handler)
    # Library chatter (httpx request lines) stays out of the console unless debugging.
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return path
