"""The I/O thread, ``async-kernel-io``: it waits for every socket and serves each in turn.

One turn: read the sockets that may have input (:mod:`.reader`), run the due timers
(:mod:`.timers`), send a batch of what others queued (:mod:`.outbox`), then wait in
``select()`` on each socket's notification descriptor (``zmq.FD``), the wake-up socket pair
(:class:`Waker`) and the next timer's deadline.  While it waits, other threads send directly.

The descriptors are edge-triggered: any operation on a socket, a send included, may consume
the notice of a message that arrived meanwhile.  So a socket that yielded a full batch, or
that was just sent on, is read again without waiting for a notice; a wake-up (a timer, a
stop, a notice a sender passed on) makes the thread look at every socket once.

A loop that reads its own channel while it is free (:meth:`.reader.Reader.lend`) gets that
channel's notices: the thread takes the descriptor out of its selector for a short grace
(:class:`SteppedAside`) instead of racing the loop for the request.

Threads: everything here runs on the I/O thread, except :meth:`Waker.wake` (any thread) and
:meth:`IoThread.start`/:meth:`IoThread.stop` (the transport's owner).  SIGINT is blocked in
the thread: it is the main thread's.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable

from ..clib import libc_function
from ..interrupt import block_sigint_in_this_thread
from .binding import SocketReader, Sockets
from .frames import notice_fd, prepare_zero_copy
from .outbox import Outbox
from .reader import Reader
from .timers import Timers
from .wire import Channel

__all__ = ["LOAN_GRACE", "IoThread", "SteppedAside", "Waker"]

log = logging.getLogger("async_kernel.transport")

# How long the I/O thread leaves a request on a lent channel to its free loop before it reads
# the request itself: only a loop blocked outside any request makes a request wait this long.
LOAN_GRACE = 0.005  # seconds
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class Waker:
    """Wakes the I/O thread from ``select()``: one byte on a socket pair, at most one pending.

    A socket pair, not a pipe: ``select()`` takes only sockets on Windows.  The flag is
    guarded by the transport's lock.  The byte is sent with the GIL held where libc's
    ``send`` can be called so (it never blocks: the socket is non-blocking).  A ``print``
    wakes the thread when it schedules a flush, between the writes that make up one line;
    letting go of the GIL there let other threads' prints into the middle of that line.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self.pending = False
        self.socket, self._write_end = socket.socketpair()
        self.socket.setblocking(False)
        self._write_end.setblocking(False)
        self._send_byte = _send_byte_holding_the_gil(self._write_end) or self._send_byte_released

    def _send_byte_released(self) -> None:
        self._write_end.send(b"\0")

    def wake(self) -> None:
        """Any thread.

        The byte first, then the flag: an asynchronous exception (a subshell interrupt)
        landing between the two then costs at most a spare wake-up, where the other order
        could leave the flag set with no byte written, and every later wake-up skipped.
        """
        with self._lock:
            if self.pending:
                return
            with contextlib.suppress(BlockingIOError, OSError):
                self._send_byte()
            self.pending = True

    def drain(self) -> None:
        """I/O thread, after a wake-up.

        Read, then clear: a wake-up asked for in between finds the flag still set and writes
        nothing, and its reason is seen by the full look that follows the clear.
        """
        with contextlib.suppress(BlockingIOError, OSError):
            while self.socket.recv(4096):
                pass
        with self._lock:
            self.pending = False

    def close(self) -> None:
        # A late wake-up (a timer asked for by a thread printing as the kernel ends) sends
        # nothing: the libc call holds the descriptor's number, which may be reused.
        with self._lock:
            self.pending = True
        for end in (self.socket, self._write_end):
            end.close()


def _send_byte_holding_the_gil(end: socket.socket) -> Callable[[], object] | None:
    """A call that sends one byte on ``end`` through libc with the GIL held (``PyDLL``), or
    None where libc's ``send`` is not there to call.  A full socket refuses the byte (-1,
    EAGAIN): a byte is pending then anyway."""
    argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int)
    send = libc_function("send", ctypes.c_ssize_t, argtypes)
    if send is None:
        return None
    return functools.partial(send, end.fileno(), b"\0", 1, _MSG_DONTWAIT)


class SteppedAside:
    """The sockets whose notice the I/O thread leaves, for a grace period, to their loop.

    Meanwhile a socket's descriptor is out of the selector: it stays readable until someone
    reads, and would wake the thread again at once.  Once the grace is over the thread reads
    the socket itself, whatever its descriptor says: a notice consumed without a read (by a
    send's look at ``zmq.EVENTS``) would otherwise leave a request unread.
    """

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        self._until: dict[int, tuple[float, int]] = {}  # reader index: (deadline, fd)

    def begin(self, index: int, fd: int) -> None:
        self._selector.unregister(fd)
        self._until[index] = (time.monotonic() + LOAN_GRACE, fd)

    def shorten(self, timeout: float | None) -> float | None:
        """``timeout`` for select(), cut to the nearest end of a grace period."""
        if not self._until:
            return timeout
        deadline = min(deadline for deadline, _ in self._until.values())
        left = max(0.0, deadline - time.monotonic())
        return left if timeout is None else min(timeout, left)

    def end_overdue(self) -> set[int]:
        """End the grace periods that are over; their sockets are to be read now."""
        now = time.monotonic()
        overdue = {index for index, (deadline, _) in self._until.items() if deadline <= now}
        for index in overdue:
            self._end(index)
        return overdue

    def end_all(self) -> None:
        for index in list(self._until):
            self._end(index)

    def _end(self, index: int) -> None:
        _, fd = self._until.pop(index)
        self._selector.register(fd, selectors.EVENT_READ, index)


class IoThread:
    """Serves the sockets, the timers and the outbox on one thread (see the module)."""

    def __init__(
        self, sockets: Sockets, reader: Reader, outbox: Outbox, timers: Timers, waker: Waker
    ) -> None:
        self._sockets = sockets
        self._reader = reader
        self._outbox = outbox
        self._timers = timers
        self._waker = waker
        self.running = False
        self.thread = threading.Thread(target=self._run, name="async-kernel-io", daemon=True)

    def start(self) -> None:
        with self._sockets.lock:
            self.running = True
            self._outbox.start(self.thread)
        self.thread.start()

    def stop(self) -> None:
        """End the thread after a last turn (due timers, queued output); it closes the
        sockets.  Waits for it (bounded) unless called on it."""
        self.running = False
        self._outbox.stop()
        self._waker.wake()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)

    def _run(self) -> None:
        block_sigint_in_this_thread()
        # Before any request is read, so before any cell can send; off the main thread's
        # start-up, and the garbage thread it starts inherits this thread's blocked SIGINT.
        prepare_zero_copy()
        self._timers.io_thread = threading.get_ident()
        by_channel = self._sockets.by_channel
        readers: list[SocketReader] = [
            (sock, self._reader.reader_for(channel)) for channel, sock in by_channel.items()
        ]
        readers.extend(self._sockets.security_readers())
        selector = selectors.DefaultSelector()
        selector.register(self._waker.socket, selectors.EVENT_READ)
        for index, (sock, _) in enumerate(readers):
            selector.register(notice_fd(sock), selectors.EVENT_READ, index)
        everyone = set(range(len(readers)))
        index_of = {channel: i for i, channel in enumerate(by_channel)}
        channel_at: dict[int, Channel] = dict(enumerate(by_channel))
        stepped_aside = SteppedAside(selector)
        timers, outbox, reader = self._timers, self._outbox, self._reader
        ready = everyone  # look at every socket once before waiting
        try:
            while self.running:
                busy = {i for i in ready if readers[i][1](readers[i][0])}
                timers.fire()
                # Our own sends may have read notices too: look at those sockets again.
                busy |= {index_of[channel] for channel in outbox.drain()}
                backlog = outbox.io_waits()
                timeout = 0 if busy or backlog else timers.timeout()
                if outbox.iopub.holding:  # a full client may read at any moment: try again soon
                    soon = outbox.iopub.retry_in()
                    timeout = soon if timeout is None else min(timeout, soon)
                events = selector.select(stepped_aside.shorten(timeout))
                outbox.io_busy()
                fired: set[int] = {key.data for key, _ in events if key.data is not None}
                if len(fired) < len(events):  # a wake-up: a timer, a stop, a notice passed on
                    self._waker.drain()
                    stepped_aside.end_all()
                    ready = everyone
                    continue
                ready = busy | fired | stepped_aside.end_overdue()
                # Only a notice seen here is left to a loop: one consumed by a read or a
                # send (`busy`, a wake-up) may never reach that loop's own wait.
                for index in fired - busy:
                    channel = channel_at.get(index)
                    loop_is_free = reader.lender(channel) if channel else None
                    if loop_is_free is not None and loop_is_free():
                        stepped_aside.begin(index, notice_fd(readers[index][0]))
                        ready.discard(index)
            timers.fire(everything=True)
            outbox.drain_all()
        except Exception:
            # A kernel that cannot talk is worse than a dead one: the manager sees a dead
            # kernel and can restart it, where a deaf one would hang every client.
            log.critical("the I/O thread failed; the kernel exits", exc_info=True)
            os._exit(70)
        finally:
            selector.close()
            self._sockets.close()
