"""What the figures were measured on."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import ROOT, Services, plain_pg_url


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _postgres_version(services: Services | None) -> str:
    if services is None:
        return "not used"
    try:
        import psycopg

        with psycopg.connect(plain_pg_url(services.pg_url), connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"
    except Exception as exc:  # noqa: BLE001 - informative only
        return f"unknown ({type(exc).__name__})"


def _kafka_version(services: Services | None) -> str:
    if services is None:
        return "not used"
    local = ROOT / ".services" / "kafka" / "VERSION"
    try:
        return local.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown (not started by scripts/services.sh)"


def describe(services: Services | None) -> dict[str, Any]:
    import confluent_kafka
    import psycopg
    import sqlalchemy

    info: dict[str, Any] = {
        "machine.cpu": _cpu_model(),
        "machine.cores": os.cpu_count() or 0,
        "machine.memory_gib": round(_memory_gib(), 1),
        "machine.python": platform.python_version(),
        "machine.postgresql": _postgres_version(services),
        "machine.kafka": _kafka_version(services),
        "machine.librdkafka": confluent_kafka.libversion()[0],
        "machine.psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__})",
        "machine.sqlalchemy": sqlalchemy.__version__,
        "machine.platform": platform.platform(),
        "machine.load_avg_1m": round(os.getloadavg()[0], 2),
        "machine.date": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    info["machine"] = (f"{info['machine.cpu']}, {info['machine.cores']} cores, {info['machine.memory_gib']} GiB, "
                       f"Python {info['machine.python']}, PostgreSQL {info['machine.postgresql']}, "
                       f"Kafka {info['machine.kafka']}, {info['machine.date']}")
    return info
