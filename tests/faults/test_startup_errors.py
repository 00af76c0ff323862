"""The database is unusable when a command starts: unreachable, read-only, or on a full disk.

Each of ``cryptoviz run``, ``cryptoviz db upgrade`` and ``cryptoviz status`` must then exit non-zero with one
``error: ...`` line on stderr that names the database and the problem, and never a Python traceback.

The faults need no mount (which a CI runner seldom allows), so every test runs everywhere:

* unreachable: PostgreSQL on port 1 of 127.0.0.1, where nothing listens;
* read-only: a migrated SQLite file of mode 0444 in a directory of mode 0555, the command run without the
  capabilities that let root ignore file modes (``tests/faults/limited.py --read-only-files``); and
  SQLite's own ``?mode=ro&uri=true`` URL, a database that opens fine but refuses every write;
* disk full: SQLite's ``PRAGMA max_page_count`` (its own "database or disk is full" once the file would
  grow), or a file size limit (RLIMIT_FSIZE) under which not even the WAL's shared-memory file can be sized.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cryptoviz.simulator import start_simulator
from tests.faults.conftest import clean_env, cryptoviz

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


LIMITED = Path(__file__).with_name("limited.py")
PAGE = 4096  # SQLite's default page size


def limited(limits: list[str], args: list[str], env: dict[str, str], cwd: Path,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``cryptoviz ARGS`` under ``limits`` (see ``tests/faults/limited.py``), run to the end."""
    return subprocess.run([sys.executable, str(LIMITED), *limits, "--", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


@contextmanager
def read_only_files(directory: Path) -> Iterator[None]:
    """Every file of ``directory`` mode 0444 and the directory 0555, restored afterwards (for clean-up)."""
    files = [f for f in directory.iterdir() if f.is_file()]
    for f in files:
        f.chmod(0o444)
    directory.chmod(0o555)
    try:
        yield
    finally:
        directory.chmod(0o755)
        for f in files:
            f.chmod(0o644)


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


def test_read_only_database_file_fails_every_command_with_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    url = f"sqlite:///{directory}/cryptoviz.db"
    migrate_into(url, tmp_path)
    before = (directory / "cryptoviz.db").read_bytes()
    with read_only_files(directory):
        for command, args in COMMANDS.items():
            result = limited(["--read-only-files"], args, env_for(url, tmp_path), tmp_path, timeout=120)
            line = one_error_line(result, str(directory / "cryptoviz.db"))
            assert "unable to open database file" in line or "readonly database" in line, (command, line)
    assert sorted(f.name for f in directory.iterdir()) == ["cryptoviz.db"]  # no journal could be made
    assert (directory / "cryptoviz.db").read_bytes() == before


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
    db = tmp_path / "cryptoviz.db"
    result = limited(["--max-pages", "8"], COMMANDS[command], env_for(f"sqlite:///{db}", tmp_path), tmp_path,
                     timeout=120)
    one_error_line(result, str(db), "database or disk is full")


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_disk_full_after_migrating(command: str, tmp_path: Path) -> None:
    db = tmp_path / "cryptoviz.db"
    url = f"sqlite:///{db}"
    migrate_into(url, tmp_path)
    assert db.stat().st_size > 32 * 1024
    # Not one more block: the 32 KiB shared-memory file that opening a WAL database needs cannot be made.
    env = {**env_for(url, tmp_path), "CRYPTOVIZ_LOG_DIR": str(tmp_path / "fresh-logs")}  # a log stays small
    result = limited(["--max-file-bytes", str(24 * 1024)], COMMANDS[command], env, tmp_path, timeout=120)
    line = one_error_line(result, str(db))
    assert "disk I/O error" in line or "disk is full" in line, line


def test_upgrade_that_ran_out_of_disk_can_be_retried(tmp_path: Path) -> None:
    db = tmp_path / "cryptoviz.db"
    url = f"sqlite:///{db}"
    first = limited(["--max-pages", "8"], ["db", "upgrade"], env_for(url, tmp_path), tmp_path)
    one_error_line(first, "database or disk is full")
    second = cryptoviz(["db", "upgrade"], env_for(url, tmp_path), tmp_path)  # space freed
    assert second.returncode == 0 and "at revision" in second.stdout, second.stderr


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
    db = tmp_path / "cryptoviz.db"
    url = f"sqlite:///{db}"
    migrate_into(url, tmp_path)
    room = db.stat().st_size // PAGE + 64  # a few batches more, then full
    with start_simulator(faults="none", n_coins=200) as sim:
        env = env_for(url, tmp_path, CRYPTOVIZ_INTERVAL="1", CRYPTOVIZ_DRAIN_TIMEOUT="2")
        env.update({f"CRYPTOVIZ_{k.upper()}": v for k, v in sim.settings_overrides().items()})
        try:
            result = limited(["--max-pages", str(room)], ["run", "--no-serve", "--duration", "6"], env, tmp_path,
                             timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("`cryptoviz run --duration 6` still running 60 s after the disk filled up")
    stderr = result.stderr
    assert result.returncode != 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and "not stored" in last, stderr[-3000:]
    assert "disk is full" in last, last
    assert db.stat().st_size // PAGE <= room
