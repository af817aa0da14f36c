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
import os
import sqlite3
import threading
import time
from typing import Any

import anyio
from IPython.core.history import HistoryManager

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


def _earlier(
    history: HistoryManager, where: str, params: tuple[Any, ...], raw: bool, output: bool
) -> list[tuple[Any, ...]]:
    """Rows of sessions before the running one: ``where`` over history ``h``, in file order.

    One query on this thread's own read-only connection (sqlite connections stay on the
    thread that opened them; the manager's belongs to the main thread).  Plain sqlite, not
    IPython's HistoryAccessor: made on a thread that competes for the GIL with a cell
    spinning the CPU, its set-up alone took over a second.
    """
    path = str(history.hist_file)
    if path == ":memory:" or not os.path.exists(path):
        return []
    connection: sqlite3.Connection | None = getattr(_readers, "connection", None)
    if connection is None or getattr(_readers, "path", None) != path:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        _readers.connection, _readers.path = connection, path
    source = "h.source_raw" if raw else "h.source"
    columns = f"h.session, h.line, {source}" + (", o.output" if output else "")
    joined = (
        " LEFT JOIN output_history o ON o.session = h.session AND o.line = h.line" if output else ""
    )
    query = f"SELECT {columns} FROM history h{joined} WHERE h.session < ? AND {where}"
    try:
        rows = connection.execute(query, (history.session_number, *params)).fetchall()
    except sqlite3.Error:
        return []  # a file being written for the first time, or of another layout
    return [(row[0], row[1], (row[2], row[3]) if output else row[2]) for row in rows]


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
        missing = n - len(entries)
        if missing > 0:
            newest = _earlier(
                history, "1 ORDER BY h.session DESC, h.line DESC LIMIT ?", (missing,), raw, output
            )
            entries = newest[::-1] + entries
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
        end = int(stop) if isinstance(stop, int) else 2**62
        return _earlier(
            history,
            "h.session = ? AND h.line >= ? AND h.line < ? ORDER BY h.line",
            (session, start, end),
            raw,
            output,
        )
    if kind == "search":
        pattern = str(content.get("pattern", "*"))
        unique = bool(content.get("unique", False))
        column = "h.source_raw" if raw else "h.source"
        earlier = _earlier(
            history, f"{column} GLOB ? ORDER BY h.session, h.line", (pattern,), raw, output
        )
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
