"""``call_later``'s timers: callbacks run on the I/O thread, outside the transport's lock.

Output streams ask for one flush soon instead of sending per write; the router gives a free
loop a few milliseconds before a read-only request goes elsewhere, and answers a request for a
thread inside a cell's code from a timer (not inside ``deliver``, which runs under the
transport's lock: the callback may take the output streams' locks, which a printing cell
holds while it asks for the transport's lock; git 4ba548c).

Threads: :meth:`Timers.call_later` from any thread (it takes the lock, then wakes the I/O
thread); :meth:`Timers.fire` and :meth:`Timers.timeout` on the I/O thread.  The lock is the
transport's (:attr:`.binding.Sockets.lock`), shared, not one of its own: a finalizer that
prints may run while a timer is pushed, and it takes the transport's lock; two locks taken
in either order by two threads could wait for each other.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Timers"]

log = logging.getLogger("async_kernel.transport")


class Timers:
    """A heap of (deadline, order, callback); ties run in the order they were asked for."""

    def __init__(self, lock: threading.RLock, wake: Callable[[], None]) -> None:
        self._lock = lock
        self._wake = wake
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = 0
        self.io_thread: int | None = None
        """The I/O thread's ident, once it runs (set by it)."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the I/O thread about ``delay`` seconds from now (any thread)."""
        with self._lock:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + delay, self._seq, callback))
        if threading.get_ident() != self.io_thread:
            # The I/O thread itself (a request it delivers, a timer) needs no wake-up: it
            # fires due timers after reading and reckons its next wait after that.  Not
            # waking spares a syscall and a turn through select(), each a hand-back of the
            # GIL that costs up to the switch interval (5 ms) while a cell spins the CPU.
            self._wake()

    def timeout(self) -> float | None:
        """Seconds until the next timer is due; None without timers."""
        with self._lock:
            if not self._heap:
                return None
            return max(0.0, self._heap[0][0] - time.monotonic())

    def fire(self, *, everything: bool = False) -> None:
        """Run the timers that are due (``everything``: all of them, at the end).

        Taken off the heap under the lock, run outside it; one that raises is logged and
        the others still run.
        """
        now = time.monotonic()
        due: list[Callable[[], object]] = []
        with self._lock:
            while self._heap and (everything or self._heap[0][0] <= now):
                due.append(heapq.heappop(self._heap)[2])
        for callback in due:
            try:
                callback()
            except Exception:
                log.exception("timer callback %r failed", callback)
