"""Run ``cryptoviz ARGS`` with its SQLite database made full or read-only, without mounting a filesystem.

    python tests/faults/limited.py [--max-pages N] [--max-file-bytes N] [--read-only-files] -- ARGS...

Mounting a small or read-only filesystem needs privileges a CI runner seldom has; these limits need none:

* ``--max-pages N``: every SQLite connection gets ``PRAGMA max_page_count = N``; a database that would
  grow past N pages fails with SQLite's "database or disk is full" (SQLITE_FULL), as on a full disk.
* ``--max-file-bytes N``: no file of the process may grow past N bytes (RLIMIT_FSIZE, SIGXFSZ ignored, so
  writes fail with EFBIG), as when the disk has no free block left: SQLite cannot even size the
  shared-memory file it needs to open a WAL database.
* ``--read-only-files``: run without the capabilities that let root ignore file modes (CAP_DAC_OVERRIDE,
  CAP_DAC_READ_SEARCH, CAP_FOWNER), so that a database file of mode 0444 in a directory of mode 0555 is
  read-only to the command whoever runs it. Dropped from the bounding set, then this script starts again:
  root's capabilities after ``exec`` are what the bounding set allows.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import signal
import sqlite3
import sys
from typing import Any

PR_CAPBSET_DROP = 24
CAPABILITIES_OVER_FILE_MODES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
DROPPED = "--capabilities-dropped"


def drop_capabilities_over_file_modes() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in CAPABILITIES_OVER_FILE_MODES:
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            sys.exit(f"limited.py: cannot drop capability {cap} from the bounding set ({os.strerror(errno)}); "
                     "root needs CAP_SETPCAP for it")


def limit_pages(pages: int) -> None:
    import sqlalchemy as sa

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute(f"PRAGMA max_page_count = {int(pages)}")

    sa.event.listen(sa.pool.Pool, "connect", on_connect)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-pages", type=int)
    parser.add_argument("--max-file-bytes", type=int)
    parser.add_argument("--read-only-files", action="store_true")
    parser.add_argument(DROPPED, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    if options.read_only_files and os.geteuid() == 0 and not options.capabilities_dropped:
        drop_capabilities_over_file_modes()
        os.execv(sys.executable, [sys.executable, *sys.argv[:1], DROPPED, *sys.argv[1:]])
    if options.max_file_bytes is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (options.max_file_bytes, options.max_file_bytes))
    if options.max_pages is not None:
        limit_pages(options.max_pages)
    from cryptoviz.cli import main as cryptoviz

    sys.argv = ["cryptoviz", *args]
    cryptoviz()


if __name__ == "__main__":
    main()
