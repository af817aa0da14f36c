"""The end of a caller's loop, as a Pending: what ``Caller.stop()`` returns.

Done once the loop has ended and, for a caller that owns its thread (``Caller.start_new``,
``Caller.get``), once that thread has ended too: awaiting it stops and joins.
"""

from __future__ import annotations

import threading

from .pending import Pending

__all__ = ["LoopEnd"]


class LoopEnd:
    """Whether a caller's loop has ended, and a Pending for whoever waits for it."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        #: The caller started this thread for its loop: the end includes the thread's.
        self.own_thread = False
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._pending: Pending[None] | None = None

    def pending(self) -> Pending[None]:
        """Done once the loop (and its own thread) has ended; the same one every time."""
        with self._lock:
            if self._pending is None:
                self._pending = Pending()
            pending = self._pending
        if self._ended.is_set():
            if self.own_thread and threading.current_thread() is not self.thread:
                self.thread.join()  # its loop has ended: the thread is on its last lines
            pending.set_result(None)
        return pending

    def mark(self) -> None:
        """The loop has ended (called on its thread, last thing)."""
        self._ended.set()
        with self._lock:
            pending = self._pending
        if pending is None:
            return
        if self.own_thread:  # done once the thread itself has ended
            thread = self.thread
            threading.Thread(
                target=lambda: (thread.join(), pending.set_result(None)),
                name="async-kernel-join",
                daemon=True,
            ).start()
        else:
            pending.set_result(None)
