"""``call_later``'s timers: callbacks run on the I/O thread, outside the transport's lock.

Output streams ask for one flush soon instead of sending per write; the router gives a free
loop a few milliseconds before a read-only request goes elsewhere, and answers a request for a
thread inside a cell's code from a timer (not inside ``deliver``, which runs under the
transport's lock: the callback may take the output streams' locks, which a printing cell
holds while it asks for the transport's lock; git 4ba548c).

Threads: :meth:`Timers.call_later` from any thread (then it wakes the I/O thread);
:meth:`Timers.fire` and :meth:`Timers.timeout` on the I/O thread.  The lock is the
transport's (:attr:`.binding.Sockets.lock`), shared, not one of its own: a finalizer that
prints may run while a timer is pushed, and it takes the transport's lock; two locks taken
in either order by two threads could wait for each other.

``call_later`` never waits for that lock: a ``print`` asks for its stream's flush between
the writes that make up one line, holding the stream's lock; waiting there (while the I/O
thread held the transport's lock) let the GIL go, and the other threads' prints into the
line (on Python 3.13, whose locks hand themselves over to a waiter, every time).  When the
lock is taken, the timer goes on a queue of its own (a deque: appending is atomic), which
the I/O thread moves onto the heap before it looks at the heap.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
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
        # Asked for while the lock was taken (any thread appends; the I/O thread takes).
        self._arriving: deque[tuple[float, Callable[[], object]]] = deque()
        self.io_thread: int | None = None
        """The I/O thread's ident, once it runs (set by it)."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the I/O thread about ``delay`` seconds from now (any thread)."""
        deadline = time.monotonic() + delay
        locked = self._lock.acquire(blocking=False)  # (then the try: see Waker.wake)
        try:
            if locked:
                self._push(deadline, callback)
            else:
                self._arriving.append((deadline, callback))
        finally:
            if locked:
                self._lock.release()
        if threading.get_ident() != self.io_thread:
            # The I/O thread itself (a request it delivers, a timer) needs no wake-up: it
            # fires due timers after reading and reckons its next wait after that.  Not
            # waking spares a syscall and a turn through select(), each a hand-back of the
            # GIL that costs up to the switch interval (5 ms) while a cell spins the CPU.
            self._wake()

    def _push(self, deadline: float, callback: Callable[[], object]) -> None:
        """Onto the heap (the lock held)."""
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, callback))

    def _take_arrivals(self) -> None:
        """Move what was asked for while the lock was taken onto the heap (the lock held)."""
        while self._arriving:
            self._push(*self._arriving.popleft())

    def timeout(self) -> float | None:
        """Seconds until the next timer is due; None without timers."""
        with self._lock:
            self._take_arrivals()
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
            self._take_arrivals()
            while self._heap and (everything or self._heap[0][0] <= now):
                due.append(heapq.heappop(self._heap)[2])
        for callback in due:
            try:
                callback()
            except Exception:
                log.exception("timer callback %r failed", callback)
