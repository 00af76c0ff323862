"""Pause the cyclic garbage collector around allocation-heavy, cycle-free work.

Decoding a batch of bus messages or reconciling a cycle allocates hundreds of thousands of small,
acyclic objects (freed by reference counting alone); every few hundred allocations the collector would
walk the young generation and, now and then, the whole heap, for nothing. Pauses nest and may overlap
between threads: the collector runs again once the last pause ends, and catches up at once if the
allocation count passed its threshold meanwhile.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
