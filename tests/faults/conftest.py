"""Fault-injection tests: the real PostgreSQL and Apache Kafka of ``scripts/services.sh`` and the market
simulator, with services stopped, sources failing and databases refusing, checked by what ends up stored.

The service fixtures are the integration suite's (``tests/integration/conftest.py``), imported here so that
both suites share one definition. A missing service fails the tests under CI (``CI=true``), else skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT
from tests.integration.conftest import (  # noqa: F401 - fixtures, found by pytest through this module
    drop_topics,
    kafka_admin,
    kafka_bootstrap,
    kafka_group,
    kafka_topic,
    pg_database,
    pg_url,
)

SERVICES = ROOT / "scripts" / "services.sh"


def services(command: str, timeout: float = 180) -> None:
    """``scripts/services.sh <command>`` (kafka-stop, kafka-start, pg-stop...), failing loudly."""
    subprocess.run(["bash", str(SERVICES), command], check=True, cwd=ROOT, timeout=timeout,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def clean_env(**settings: str) -> dict[str, str]:
    """The environment of a ``cryptoviz`` child: no CRYPTOVIZ_* from outside, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    env.update(settings)
    return env


def cryptoviz(args: list[str], env: dict[str, str], cwd: Path,
              timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cryptoviz ARGS`` to the end; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "cryptoviz", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
