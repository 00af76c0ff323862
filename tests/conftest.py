"""Shared test set-up: every test starts from a clean environment in its own working directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Hypothesis keeps its example database under the directory pytest started in (the repository): out of
# the tree like everything else a test writes, and still kept between runs so a failing example replays.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "cryptoviz-hypothesis")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A developer's CRYPTOVIZ_* variables or .env must never steer a test.
    for name in list(os.environ):
        if name.startswith("CRYPTOVIZ_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
