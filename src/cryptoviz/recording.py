"""Record raw bodies exactly as received, and read them back as cycles for replay.

Layout: ``DIR/<source>/<UTC time as YYYY-MM-DDTHH-MM-SSZ>.<json|html>`` for a pull source's pages (a
source's later pages in the same cycle get ``-p2``, ``-p3``... before the extension), and
``DIR/<source>/<time>.jsonl`` for the frames a push source received during the cycle: one JSON object a
line, ``{"received_at": ISO-8601, "frame": text}`` (``"frame_b64"`` for a frame that is not UTF-8). All
sources of one cycle share its time, so a replay groups files by time into the same cycles and feeds
each frame with its own receive time.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import orjson

from cryptoviz.config import known_sources
from cryptoviz.errors import CryptoVizError
from cryptoviz.pipeline import SourceOutcome
from cryptoviz.sources.base import FRAME, RawPage

logger = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%dT%H-%M-%SZ"
FRAMES_EXTENSION = "jsonl"
_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)(?:-p(\d+))?\.(json|html|jsonl)$")


def file_name(observed_at: datetime, page_number: int, extension: str) -> str:
    stamp = observed_at.astimezone(UTC).strftime(TIME_FORMAT)
    suffix = "" if page_number <= 1 else f"-p{page_number}"
    return f"{stamp}{suffix}.{extension}"


def frame_line(frame: RawPage) -> bytes:
    """One recorded frame: its receive time and its bytes (as text when they are UTF-8)."""
    record: dict[str, str] = {"received_at": frame.fetched_at.astimezone(UTC).isoformat()}
    try:
        record["frame"] = frame.body.decode("utf-8")
    except UnicodeDecodeError:
        record["frame_b64"] = base64.b64encode(frame.body).decode("ascii")
    return orjson.dumps(record) + b"\n"


class PageRecorder:
    """A page sink for the collector: writes each body byte for byte, and appends each frame."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.files: list[Path] = []
        self._counts: dict[tuple[str, datetime], int] = defaultdict(int)
        self._lock = threading.Lock()

    def __call__(self, page: RawPage, observed_at: datetime) -> None:
        folder = self.out_dir / page.source
        folder.mkdir(parents=True, exist_ok=True)
        if page.extension == FRAME:
            path = folder / file_name(observed_at, 1, FRAMES_EXTENSION)
            with self._lock:
                with path.open("ab") as out:
                    out.write(frame_line(page))
                if path not in self.files:
                    self.files.append(path)
            return
        with self._lock:
            self._counts[(page.source, observed_at)] += 1
            number = self._counts[(page.source, observed_at)]
        path = folder / file_name(observed_at, number, page.extension)
        path.write_bytes(page.body)
        self.files.append(path)


def read_frames(path: Path, source: str) -> list[RawPage]:
    """The frames of a ``.jsonl`` recording, in the order received; a broken line is skipped with a warning."""
    frames: list[RawPage] = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            received = datetime.fromisoformat(record["received_at"])
            body = (record["frame"].encode("utf-8") if "frame" in record
                    else base64.b64decode(record["frame_b64"], validate=True))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            logger.warning("replay: %s line %d is not a recorded frame (%s): skipped", path, number, exc)
            continue
        received = received if received.tzinfo else received.replace(tzinfo=UTC)
        frames.append(RawPage(source, body, FRAME, received, url=str(path)))
    frames.sort(key=lambda frame: frame.fetched_at)
    return frames


def read_recording(directory: Path) -> list[tuple[datetime, list[SourceOutcome]]]:
    """Recorded cycles in time order: each is (observed_at, one outcome per source with its pages)."""
    if not directory.is_dir():
        raise CryptoVizError(f"replay: {directory} is not a directory (expected DIR/<source>/<time>.json)")
    known = known_sources()
    cycles: dict[datetime, dict[str, list[tuple[int, RawPage]]]] = defaultdict(lambda: defaultdict(list))
    pushed: set[tuple[datetime, str]] = set()
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if folder.name not in known:
            logger.warning("replay: skipping %s (not a known source: %s)", folder, ", ".join(known))
            continue
        for path in sorted(folder.iterdir()):
            match = _FILE.match(path.name)
            if not match:
                logger.warning("replay: skipping %s (name is not <YYYY-MM-DDTHH-MM-SSZ>.<json|html|jsonl>)", path)
                continue
            observed_at = datetime.strptime(match.group(1), TIME_FORMAT).replace(tzinfo=UTC)
            if match.group(3) == FRAMES_EXTENSION:
                pushed.add((observed_at, folder.name))
                cycles[observed_at][folder.name].extend((0, frame) for frame in read_frames(path, folder.name))
                continue
            number = int(match.group(2) or 1)
            page = RawPage(folder.name, path.read_bytes(), match.group(3), observed_at, url=str(path))
            cycles[observed_at][folder.name].append((number, page))
    if not cycles:
        raise CryptoVizError(f"replay: no recorded files under {directory}")
    return [
        (at, [SourceOutcome(source, [p for _, p in sorted(pages, key=lambda np: np[0])],
                            push=(at, source) in pushed)
              for source, pages in sorted(by_source.items())])
        for at, by_source in sorted(cycles.items())
    ]
