"""The database is unusable when a command starts: unreachable, read-only, or on a full disk.

Each of ``cryptoviz run``, ``cryptoviz db upgrade`` and ``cryptoviz status`` must then exit non-zero with one
``error: ...`` line on stderr that names the database and the problem, and never a Python traceback.

How the faults are made, given that the tests run as root (for whom ``chmod 0444`` stops nothing):

* unreachable: PostgreSQL on port 1 of 127.0.0.1, where nothing listens;
* read-only: a small tmpfs holding a migrated SQLite database, remounted read-only (``mount -o remount,ro``),
  which refuses writes to root too (EROFS); and SQLite's own ``?mode=ro&uri=true`` URL, a database that opens
  fine but refuses every write;
* disk full: a tmpfs of 64 KiB (too small for the schema), or one filled to the last byte after migrating.

The tmpfs cases need ``mount`` (root, CAP_SYS_ADMIN) and are skipped, saying so, where it is not allowed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cryptoviz.simulator import start_simulator
from tests.faults.conftest import clean_env, cryptoviz, wait_for

pytestmark = pytest.mark.faults

UNREACHABLE = "postgresql+psycopg://cryptoviz:cryptoviz@127.0.0.1:1/nope"
COMMANDS = {
    "run": ["run", "--no-serve", "--duration", "5"],
    "db-upgrade": ["db", "upgrade"],
    "status": ["status"],
}
# No network in the tests: a source on a port where nothing listens (start-up fails before it is used).
OFFLINE = {"CRYPTOVIZ_SOURCES": "coingecko", "CRYPTOVIZ_COINGECKO_BASE_URL": "http://127.0.0.1:9/api/v3"}


def env_for(url: str, tmp_path: Path, **more: str) -> dict[str, str]:
    return clean_env(CRYPTOVIZ_DATABASE_URL=url, CRYPTOVIZ_LOG_DIR=str(tmp_path / "logs"), **OFFLINE, **more)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The failure as the user sees it: asserts a non-zero exit, no traceback, an ``error:`` line first."""
    assert result.returncode != 0, f"exit 0 instead of an error\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines


def one_error_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    lines = error_lines(result)
    assert len(lines) == 1, f"one line expected, got {len(lines)}:\n" + "\n".join(lines)
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` for the duration of the block (unmounted whatever happens)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the test needs root and "
                    "CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=True)


def remount(path: Path, options: str) -> None:
    result = _mount("-o", f"remount,{options}", str(path))
    assert result.returncode == 0, result.stderr


def fill(path: Path) -> None:
    """Take every free byte of the filesystem at ``path``."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: full
        pass
    finally:
        os.close(fd)


def migrate_into(url: str, tmp_path: Path) -> None:
    result = cryptoviz(["db", "upgrade"], env_for(url, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr


# --- unreachable ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_unreachable_database_fails_with_one_line_naming_it(command: str, tmp_path: Path) -> None:
    result = cryptoviz(COMMANDS[command], env_for(UNREACHABLE, tmp_path), tmp_path, timeout=120)
    # psycopg's message spans two lines ("...Connection refused" then "\tIs the server running..."): folded
    one_error_line(result, "127.0.0.1:1/nope", "Connection refused")
    assert "cryptoviz:cryptoviz@" not in result.stderr + result.stdout  # the password stays hidden


# --- read-only ----------------------------------------------------------------------------------------


def test_read_only_filesystem_fails_every_command_with_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "4m") as mnt:
        url = f"sqlite:///{mnt}/cryptoviz.db"
        migrate_into(url, tmp_path)
        remount(mnt, "ro")
        assert subprocess.run(["touch", str(mnt / "probe")], capture_output=True, check=False).returncode != 0
        for command, args in COMMANDS.items():
            result = cryptoviz(args, env_for(url, tmp_path), tmp_path, timeout=120)
            line = one_error_line(result, str(mnt / "cryptoviz.db"))
            assert "unable to open database file" in line or "read" in line, (command, line)


def test_read_only_sqlite_database_can_still_be_read(tmp_path: Path) -> None:
    """``?mode=ro``: nothing to migrate and a status to show, so these two have no reason to fail."""
    db = tmp_path / "cryptoviz.db"
    migrate_into(f"sqlite:///{db}", tmp_path)
    url = f"sqlite:///file:{db}?mode=ro&uri=true"
    upgrade = cryptoviz(["db", "upgrade"], env_for(url, tmp_path), tmp_path)
    assert upgrade.returncode == 0 and "at revision" in upgrade.stdout, upgrade.stderr
    status = cryptoviz(["status"], env_for(url, tmp_path), tmp_path)
    assert status.returncode == 0 and "no cycle has run yet" in status.stdout, status.stderr


def test_sqlite_uri_creates_no_stray_directory(tmp_path: Path) -> None:
    """The "file:..." of a URI is no path to create (make_engine once made a "file:" directory here)."""
    db = tmp_path / "cryptoviz.db"
    migrate_into(f"sqlite:///{db}", tmp_path)
    cryptoviz(["status"], env_for(f"sqlite:///file:{db}?mode=ro&uri=true", tmp_path), tmp_path)
    assert not (tmp_path / "file:").exists()


# --- disk full ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "db-upgrade"])
def test_disk_too_small_for_the_schema(command: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "64k") as mnt:
        result = cryptoviz(COMMANDS[command], env_for(f"sqlite:///{mnt}/cryptoviz.db", tmp_path), tmp_path,
                           timeout=120)
        one_error_line(result, str(mnt / "cryptoviz.db"), "database or disk is full")


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_disk_full_after_migrating(command: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "1m") as mnt:
        url = f"sqlite:///{mnt}/cryptoviz.db"
        migrate_into(url, tmp_path)
        fill(mnt)
        result = cryptoviz(COMMANDS[command], env_for(url, tmp_path), tmp_path, timeout=120)
        line = one_error_line(result, str(mnt / "cryptoviz.db"))
        assert "disk I/O error" in line or "disk is full" in line, line


def test_upgrade_that_ran_out_of_disk_can_be_retried(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "64k") as mnt:
        url = f"sqlite:///{mnt}/cryptoviz.db"
        first = cryptoviz(["db", "upgrade"], env_for(url, tmp_path), tmp_path)
        one_error_line(first, "database or disk is full")
        remount(mnt, "size=8m")  # space freed
        second = cryptoviz(["db", "upgrade"], env_for(url, tmp_path), tmp_path)
        assert second.returncode == 0, second.stderr


# --- a database that opens but refuses writes, with the run already going -----------------------------


def test_run_ends_with_an_error_when_the_database_refuses_writes(tmp_path: Path) -> None:
    db = tmp_path / "cryptoviz.db"
    migrate_into(f"sqlite:///{db}", tmp_path)
    with start_simulator(faults="none", n_coins=50) as sim:
        env = env_for(f"sqlite:///file:{db}?mode=ro&uri=true", tmp_path)
        env.update({f"CRYPTOVIZ_{k.upper()}": v for k, v in sim.settings_overrides().items()})
        try:
            result = cryptoviz(COMMANDS["run"], env, tmp_path, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("`cryptoviz run --duration 5` still running after 30 s: the writer retries forever")
    one_error_line(result, "read")


def test_run_ends_with_an_error_when_the_disk_fills_up_during_the_run(tmp_path: Path) -> None:
    """The start-up probe passes, then the disk fills: the run still ends, CRYPTOVIZ_DRAIN_TIMEOUT after."""
    with tmpfs(tmp_path / "full", "4m") as mnt, start_simulator(faults="none", n_coins=200) as sim:
        url = f"sqlite:///{mnt}/cryptoviz.db"
        migrate_into(url, tmp_path)
        env = env_for(url, tmp_path, CRYPTOVIZ_INTERVAL="1", CRYPTOVIZ_DRAIN_TIMEOUT="2")
        env.update({f"CRYPTOVIZ_{k.upper()}": v for k, v in sim.settings_overrides().items()})
        proc = subprocess.Popen([sys.executable, "-m", "cryptoviz", "run", "--no-serve", "--duration", "6"],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: (mnt / "cryptoviz.db-wal").exists() or proc.poll() is not None, 30,
                     "the run to start writing")
            fill(mnt)
            _, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("`cryptoviz run --duration 6` still running 60 s after the disk filled up")
    assert proc.returncode != 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and "not stored" in last, stderr[-3000:]
    assert "disk is full" in last or "disk I/O error" in last, last
