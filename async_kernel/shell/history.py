"""Batch IPython's history writes so sqlite never sits on the path of a cell.

By default IPython wakes its saving thread after every cell, and the next cell waits for
that thread's lock while sqlite commits: it doubled a ``pass`` round trip.  Here inputs
are kept in memory and written once the kernel has been quiet for a moment (and at exit),
so a crash can lose at most the last couple of seconds of history.

Also here: answering a history_request without writing (:func:`read_history`), so it can be
answered on another thread while a cell blocks the main one.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from typing import Any

import anyio
from IPython.core.history import HistoryAccessor, HistoryManager

__all__ = ["batch_history_writes", "read_history"]

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


_readers = threading.local()  # each thread's own connection to the history file


def _reader(history: HistoryManager) -> HistoryAccessor:
    """This thread's read-only view of ``history``'s file (sqlite connections stay on the
    thread that opened them; the manager's own belongs to the main thread)."""
    reader: HistoryAccessor | None = getattr(_readers, "accessor", None)
    if reader is None or reader.hist_file != history.hist_file:
        reader = HistoryAccessor(hist_file=str(history.hist_file))
        _readers.accessor = reader
    return reader


def read_history(history: HistoryManager, content: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The entries a history_request asks for, read without writing anything.

    Safe on any thread, also while a cell runs: the running session comes from memory
    (it includes the running cell), earlier sessions from the file.  Session numbers are
    absolute.  Raises ValueError for an unknown ``hist_access_type``.
    """
    raw = bool(content.get("raw", True))
    output = bool(content.get("output", False))
    kind = content.get("hist_access_type", "tail")
    current = history.session_number
    if kind == "tail":
        n = int(content.get("n", 10) or 10)
        entries = _current_session(history, raw, output)[-n:] if n > 0 else []
        session = current - 1
        while len(entries) < n and session > 0:
            earlier = list(_reader(history).get_range(session, 1, None, raw, output))
            entries = earlier[len(earlier) - (n - len(entries)) :] + entries
            session -= 1
        return entries
    if kind == "range":
        session = int(content.get("session", 0))
        if session <= 0:
            session += current
        start, stop = int(content.get("start", 1)), content.get("stop")
        if session == current:
            return [
                (current, line, entry)
                for _, line, entry in history.get_range(0, start, stop, raw, output)
            ]
        return list(_reader(history).get_range(session, start, stop, raw, output))
    if kind == "search":
        pattern = str(content.get("pattern", "*"))
        unique = bool(content.get("unique", False))
        earlier = [
            entry
            for entry in _reader(history).search(pattern, raw, output=output)
            if entry[0] != current
        ]
        now = [
            entry
            for entry in _current_session(history, raw, output)
            if fnmatch.fnmatchcase(entry[2][0] if output else entry[2], pattern)
        ]
        found = earlier + now
        if unique:
            seen: set[Any] = set()
            kept: list[tuple[Any, ...]] = []
            for entry in reversed(found):
                key = entry[2][0] if output else entry[2]
                if key not in seen:
                    seen.add(key)
                    kept.append(entry)
            found = kept[::-1]
        n = content.get("n")
        return found[-int(n) :] if isinstance(n, int) and n > 0 else found
    raise ValueError(f"unknown hist_access_type {kind!r}")


def _current_session(history: HistoryManager, raw: bool, output: bool) -> list[tuple[Any, ...]]:
    current = history.session_number
    return [(current, line, entry) for _, line, entry in history.get_range(0, 1, None, raw, output)]
