"""Pages a scraper could not read, kept for a bug report: ``<dir>/<source>/<UTC time>-<reason>.html``.

A pure file helper: the caller decides when a page is kept (a layout-drift error) and where (the pipeline
uses ``data/failed-pages/``). At most ``keep`` pages are kept per source; saving one more deletes the
oldest. File names sort in time order: ``20250301T120000.123456Z-layout-changed.html``.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_KEEP = 20
SUFFIX = ".html"
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_MAX_NAME = 60


def _safe(text: str, fallback: str) -> str:
    """``"Layout changed: table/x"`` -> ``"layout-changed-table-x"``: a file name part on every system."""
    cleaned = _UNSAFE.sub("-", text.casefold()).strip("-.")[:_MAX_NAME].strip("-.")
    return cleaned or fallback


def kept_pages(directory: Path, source: str) -> list[Path]:
    """The pages kept for ``source``, oldest first."""
    folder = directory / _safe(source, "source")
    if not folder.is_dir():
        return []
    pages = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(SUFFIX)]
    # By the time in the name, then by when the file was written (two pages of one microsecond).
    return sorted(pages, key=lambda p: (p.name.partition("-")[0], p.stat().st_mtime_ns, p.name))


def keep_failed_page(directory: Path, source: str, body: bytes, reason: str, *, keep: int = DEFAULT_KEEP,
                     now: datetime | None = None) -> Path:
    """Save ``body`` as ``<directory>/<source>/<UTC time>-<reason>.html`` and return its path; then delete
    the oldest pages of ``source`` beyond the ``keep`` newest. Creates the folders it needs.

    ``source`` and ``reason`` are reduced to lower-case letters, digits, ``.``, ``_`` and ``-``. Two pages
    saved in the same microsecond with the same reason get ``-2``, ``-3``... Raises ``ValueError`` for
    ``keep < 1`` and ``OSError`` when the file cannot be written.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = directory / _safe(source, "source")
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{stamp}-{_safe(reason, 'failed')}"
    path = folder / f"{stem}{SUFFIX}"
    count = 1
    while path.exists():
        count += 1
        path = folder / f"{stem}-{count}{SUFFIX}"
    # Written whole or not at all: a reader never sees half a page.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for old in kept_pages(directory, source)[:-keep]:
        if old != path:
            old.unlink(missing_ok=True)
    return path
