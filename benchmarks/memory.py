"""Peak RSS of a real ``cryptoviz consume`` process while it drains a large backlog.

The process runs ``python -m cryptoviz consume --duration ...`` with its environment pointing at a fresh
topic, a fresh consumer group and a fresh database. It is sampled through ``/proc/<pid>/status``
(``VmHWM``, the kernel's high-water mark of its resident set, and ``VmRSS``) until its committed offsets reach
the end of the topic. Baseline beside it: the same process idle on the same, still empty, topic.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Services, fresh_database, fresh_topic, group_name, progress
from benchmarks.kafka_io import produce, stream
from cryptoviz.bus.kafka import consumer_lag


def _status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    name, value = line.split(":", 1)
                    out[name] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


class _Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.pid = pid
        self.hwm_kb = 0
        self.rss_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            status = _status_kb(self.pid)
            self.hwm_kb = max(self.hwm_kb, status.get("VmHWM", 0))
            self.rss_kb = max(self.rss_kb, status.get("VmRSS", 0))
            self.done.wait(0.1)


class _Consume:
    """One ``cryptoviz consume`` child process, sampled while it runs."""

    def __init__(self, env: dict[str, str], log: Path, duration: float) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cryptoviz", "consume", "--duration", str(duration)],
                                         env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
        self.sampler = _Sampler(self.proc.pid)
        self.sampler.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> float:
        """SIGTERM (the consumer finishes its batch), wait; returns the peak RSS in MB."""
        status = _status_kb(self.proc.pid)
        self.sampler.hwm_kb = max(self.sampler.hwm_kb, status.get("VmHWM", 0))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sampler.done.set()
        self.sampler.join()
        return max(self.sampler.hwm_kb, self.sampler.rss_kb) / 1024.0

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-2000:]


def _env(services: Services, url: str, topic: str, group: str, logs: Path, batch_size: int,
         batch_timeout: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOVIZ_")}
    env.update({
        "CRYPTOVIZ_DATABASE_URL": url, "CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
        "CRYPTOVIZ_KAFKA_TOPIC": topic, "CRYPTOVIZ_KAFKA_GROUP": group, "CRYPTOVIZ_LOG_DIR": str(logs),
        "CRYPTOVIZ_BATCH_SIZE": str(batch_size), "CRYPTOVIZ_BATCH_TIMEOUT": str(batch_timeout),
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", ""),
    })
    return env


def run(services: Services, count: int, coins: int, batch_size: int, batch_timeout: float,
        idle_seconds: float = 8.0) -> dict[str, Any]:
    progress(f"memory: `cryptoviz consume` draining a {count:,}-message backlog")
    group = group_name("memory")
    with fresh_database(services, "memory") as url, fresh_topic(services, "memory") as topic, \
            tempfile.TemporaryDirectory(prefix="cv-bench-") as tmp:
        env = _env(services, url, topic, group, Path(tmp), batch_size, batch_timeout)
        idle = _Consume(env, Path(tmp) / "consume-idle.log", duration=600)
        time.sleep(idle_seconds)
        if not idle.alive():
            raise RuntimeError(f"memory: `cryptoviz consume` exited early:\n{idle.tail()}")
        idle_mb = idle.stop()
        produced, produce_s = produce(services.bootstrap, topic, stream(count, coins), label="memory: ")
        progress(f"memory: {produced:,} messages in Kafka ({produced / produce_s:,.0f}/s); starting the consumer")
        consume = _Consume(env, Path(tmp) / "consume.log", duration=3600)
        started = time.monotonic()
        next_report = started + 15
        try:
            while True:
                time.sleep(1.0)
                if not consume.alive():
                    raise RuntimeError(f"memory: `cryptoviz consume` exited early:\n{consume.tail()}")
                left = sum(consumer_lag(services.bootstrap, topic, group).values())
                if left == 0:
                    break
                if time.monotonic() >= next_report:
                    progress(f"memory: {produced - left:,} / {produced:,} committed, peak RSS so far "
                             f"{consume.sampler.hwm_kb / 1024:.0f} MB")
                    next_report += 15
            seconds = time.monotonic() - started
        finally:
            peak_mb = consume.stop()
    progress(f"memory: peak RSS {peak_mb:.0f} MB draining {count:,} messages in {seconds:.0f}s "
             f"(idle {idle_mb:.0f} MB)")
    return {
        "memory.peak_rss_mb": peak_mb,
        "memory.idle_rss_mb": idle_mb,
        "memory.backlog": count,
        "memory.drain_seconds": seconds,
        "memory.drain_rows_per_s": count / seconds,
        "memory.batch_size": batch_size,
    }
