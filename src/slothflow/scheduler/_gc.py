"""Garbage collection during a run.

A run keeps a record per call until it ends (jobs, cells, hashes), so the heap grows with the run. CPython's
collector is triggered by allocation counts and every few collections walks the whole heap: at the default
thresholds the collector's share grew with the size of the run (a third of a fully cached rerun of 30,000
calls), which made the cost per call grow too. While a run is active, young objects are collected less
often; the previous thresholds come back when the last active run ends. Nothing is disabled: cyclic garbage
is still collected, in larger batches.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

RUN_THRESHOLDS = (100_000, 20, 10)  # objects allocated before a young collection; then as CPython counts

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's thresholds (never lower them) for the duration of a run."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*(max(old, new) for old, new in zip(_saved, RUN_THRESHOLDS)))
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                if gc.get_threshold() == tuple(max(o, n) for o, n in zip(_saved, RUN_THRESHOLDS)):
                    gc.set_threshold(*_saved)  # unless someone set their own meanwhile
                _saved = None
