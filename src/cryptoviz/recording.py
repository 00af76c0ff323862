"""Record raw bodies exactly as received, and read them back as cycles for replay.

Layout: ``DIR/<source>/<UTC time as YYYY-MM-DDTHH-MM-SSZ>.<json|html>``; a source's later pages in the
same cycle get ``-p2``, ``-p3``... before the extension. All sources of one cycle share its time, so a
replay groups files by time into the same cycles.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from cryptoviz.config import KNOWN_SOURCES
from cryptoviz.errors import CryptoVizError
from cryptoviz.pipeline import SourceOutcome
from cryptoviz.sources.base import RawPage

logger = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%dT%H-%M-%SZ"
_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)(?:-p(\d+))?\.(json|html)$")


def file_name(observed_at: datetime, page_number: int, extension: str) -> str:
    stamp = observed_at.astimezone(UTC).strftime(TIME_FORMAT)
    suffix = "" if page_number <= 1 else f"-p{page_number}"
    return f"{stamp}{suffix}.{extension}"


class PageRecorder:
    """A page sink for the collector: writes each body byte for byte."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.files: list[Path] = []
        self._counts: dict[tuple[str, datetime], int] = defaultdict(int)
        self._lock = threading.Lock()

    def __call__(self, page: RawPage, observed_at: datetime) -> None:
        with self._lock:
            self._counts[(page.source, observed_at)] += 1
            number = self._counts[(page.source, observed_at)]
        folder = self.out_dir / page.source
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / file_name(observed_at, number, page.extension)
        path.write_bytes(page.body)
        self.files.append(path)


def read_recording(directory: Path) -> list[tuple[datetime, list[SourceOutcome]]]:
    """Recorded cycles in time order: each is (observed_at, one outcome per source with its pages)."""
    if not directory.is_dir():
        raise CryptoVizError(f"replay: {directory} is not a directory (expected DIR/<source>/<time>.json)")
    cycles: dict[datetime, dict[str, list[tuple[int, RawPage]]]] = defaultdict(lambda: defaultdict(list))
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if folder.name not in KNOWN_SOURCES:
            logger.warning("replay: skipping %s (not a known source: %s)", folder, ", ".join(KNOWN_SOURCES))
            continue
        for path in sorted(folder.iterdir()):
            match = _FILE.match(path.name)
            if not match:
                logger.warning("replay: skipping %s (name is not <YYYY-MM-DDTHH-MM-SSZ>.<json|html>)", path)
                continue
            observed_at = datetime.strptime(match.group(1), TIME_FORMAT).replace(tzinfo=UTC)
            number = int(match.group(2) or 1)
            page = RawPage(folder.name, path.read_bytes(), match.group(3), observed_at, url=str(path))
            cycles[observed_at][folder.name].append((number, page))
    if not cycles:
        raise CryptoVizError(f"replay: no recorded files under {directory}")
    return [
        (at, [SourceOutcome(source, [p for _, p in sorted(pages, key=lambda np: np[0])])
              for source, pages in sorted(by_source.items())])
        for at, by_source in sorted(cycles.items())
    ]
