"""Batch IPython's history writes so sqlite never sits on the path of a cell.

By default IPython wakes its saving thread after every cell, and the next cell waits for
that thread's lock while sqlite commits: it doubled a ``pass`` round trip.  Here inputs
are kept in memory and written once the kernel has been quiet for a moment (and at exit),
so a crash can lose at most the last couple of seconds of history.
"""

from __future__ import annotations

import time

import anyio
from IPython.core.history import HistoryManager

__all__ = ["batch_history_writes"]

CACHE_SIZE = 1000  # inputs kept in memory before a write is forced
QUIET = 1.0  # seconds without an execute before the cache is written


async def batch_history_writes(history: HistoryManager | None, last_activity: list[float]) -> None:
    """Run forever: write the history cache when ``last_activity[0]`` is QUIET seconds old."""
    if history is None or not history.enabled:
        return
    history.db_cache_size = CACHE_SIZE
    while True:
        await anyio.sleep(QUIET)
        idle_for = time.monotonic() - last_activity[0]
        cache_waiting = idle_for >= QUIET and history.db_input_cache
        if cache_waiting and history.save_flag is not None:
            history.save_flag.set()  # the saving thread writes; this loop never blocks on it
