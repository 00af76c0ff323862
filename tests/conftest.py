"""Shared test set-up: every test starts from a clean environment in its own working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _service_env() -> dict[str, str]:
    """Service addresses from the environment (make test) or .services/env (make services-up)."""
    found = {k: v for k, v in os.environ.items() if k.startswith("CRYPTOVIZ_")}
    env_file = ROOT / ".services" / "env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            line = line.strip().removeprefix("export ")
            name, sep, value = line.partition("=")
            if sep and name.startswith("CRYPTOVIZ_"):
                found.setdefault(name, value.strip().strip("'\""))
    return found


# Read once, before any test clears the environment.
SERVICE_ENV = _service_env()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A developer's CRYPTOVIZ_* variables or .env must never steer a test.
    for name in list(os.environ):
        if name.startswith("CRYPTOVIZ_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
