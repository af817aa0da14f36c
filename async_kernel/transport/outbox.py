"""Sending: directly from the sending thread, or through a queue the I/O thread drains.

While the I/O thread waits for input, a thread with a message sends it itself: a cell's reply
then pays no hand-over to another thread and no GIL hand-back, which is most of a round
trip's overhead.  While the I/O thread is busy (a burst of requests, timers), others queue
their messages for it, so a burst is not slowed by every frame's GIL release handing the
interpreter back and forth.  Order holds either way: a message is sent directly only when
nothing is queued.  iopub's own bound applies on both paths (:mod:`.iopub`).

A send may consume the notice (``zmq.FD``, edge-triggered) of a message that arrived
meanwhile; peers lost requests to exactly this.  Every direct send is followed by a look at
``zmq.EVENTS`` under the same lock, and a waiting message wakes the I/O thread.

Threads: :meth:`Outbox.send` and :meth:`Outbox.wait_sent` from any thread, under the
transport's lock (:attr:`.binding.Sockets.lock`).  A sender that finds the queue full
(``OUTBOX_LIMIT`` messages or ``OUTBOX_BYTES``: a thread printing flat out is slowed to the
pace of the network, and a starved I/O thread does not let output pile up) waits
outside the lock, on a :class:`~async_kernel.interrupt.Latch`: an asynchronous
KeyboardInterrupt (a subshell cell's interrupt) striking that wait leaves no lock or
condition half updated.  :meth:`Outbox.drain`, :meth:`Outbox.io_waits` and
:meth:`Outbox.io_busy` on the I/O thread only; only it drains the queue, so it never waits
for room itself.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable

from ..interrupt import Latch
from .binding import Sockets
from .frames import has_input, send_or_log, size_of
from .iopub import IopubBound
from .wire import Channel, Codec, Message

__all__ = ["OUTBOX_BYTES", "OUTBOX_LIMIT", "SEND_BATCH", "Outbox"]

log = logging.getLogger("async_kernel.transport")

SEND_BATCH = 256  # queued messages sent per turn of the I/O thread
# Queued messages beyond which a sender waits for the I/O thread to make room.
OUTBOX_LIMIT = 10_000
# Queued bytes from which a sender waits too: the queue holds at most this and one message
# more (a message of any size goes in once there is room, never starved by smaller ones).
OUTBOX_BYTES = 8 * 2**20


def _yield_cpu() -> None:
    """Let a thread just woken on this CPU run now (see :meth:`Outbox.wait_sent`)."""
    if sys.platform == "linux":  # the scheduler whose wake-up placement was measured
        os.sched_yield()


def _queued_size(frames: list[bytes]) -> int:
    """The bytes ``frames`` hold; a frame that is no buffer counts none (it is refused when
    the message is sent, and logged: not raised to the sender, whichever path it takes)."""
    try:
        return size_of(frames)
    except TypeError:
        return 0


class Outbox:
    """Every outgoing message of the ZMQ transport goes through :meth:`send`."""

    def __init__(self, sockets: Sockets, codec: Codec, wake: Callable[[], None]) -> None:
        self._sockets = sockets
        self._by_channel = sockets.by_channel
        self._lock = sockets.lock
        self._codec = codec
        self._wake = wake
        self.iopub = IopubBound(sockets.by_channel["iopub"], codec.renew)
        # The thread that drains the queue, from start() until stop(); None otherwise.
        self._io_thread: threading.Thread | None = None
        # True while the I/O thread waits in select() and leaves the sockets to senders.
        self._io_waiting = True
        self._queue: deque[tuple[Channel, list[bytes], int]] = deque()  # and their size
        self._queued_bytes = 0
        # Counts of messages queued and sent, for wait_sent(); `_sent` shares the lock.
        self._queued_count = 0
        self._sent_count = 0
        self._sent = threading.Condition(self._lock)
        self._send_waiters = 0
        self._room = Latch()  # set when the I/O thread has drained part of a full queue

    def start(self, io_thread: threading.Thread) -> None:
        """Until ``io_thread`` first waits, messages queue for it."""
        with self._lock:
            self._io_thread = io_thread
            self._io_waiting = False

    def stop(self) -> None:
        """From now on no sender waits for room: the I/O thread is ending."""
        self._io_thread = None

    # -- any thread -------------------------------------------------------------------------
    def send(self, channel: Channel, msg: Message, identities: list[bytes] | None = None) -> None:
        """Send ``msg`` from this thread, or queue it while the I/O thread is busy.

        Never blocks on the network; waits (bounded slices, interrupt-safe) only while the
        queue is full.
        """
        if channel == "iopub" and identities is None:
            identities = [b"kernel." + msg["msg_type"].encode()]
        frames = self._codec.encode(msg, identities)
        while True:
            with self._lock:
                if self._sockets.closed:
                    log.debug("dropped %s on %s: the transport is closed", msg["msg_type"], channel)
                    return
                if not self._io_waiting or self._queue:
                    if self._has_room() or not self._may_wait_for_room():
                        size = _queued_size(frames)
                        self._queue.append((channel, frames, size))
                        self._queued_count += 1
                        self._queued_bytes += size
                        return
                else:
                    sock = self._by_channel[channel]
                    held = self._put(channel, frames)
                    # The send may have read the notice of an incoming message: pass it on.
                    missed = has_input(sock)
                    break
            # The queue is full: wait for the I/O thread to drain it, outside the lock and
            # on a raw lock (a Latch), so that an interrupt striking this wait (a subshell
            # cell's, raised asynchronously) leaves no lock or condition half updated.
            self._room.wait(0.1)
        if missed or held:  # a held message is retried by the I/O thread
            self._wake()

    def _has_room(self) -> bool:
        """Whether a message may join the queue now (lock held)."""
        return len(self._queue) < OUTBOX_LIMIT and self._queued_bytes < OUTBOX_BYTES

    def _may_wait_for_room(self) -> bool:
        """Whether a sender finding the queue full waits (lock held): not the I/O thread
        itself (only it drains the queue), nor once the transport is stopping."""
        io_thread = self._io_thread
        return io_thread is not None and threading.current_thread() is not io_thread

    def wait_sent(self, timeout: float) -> bool:
        """Block until what is queued now has been sent, for at most ``timeout`` seconds.

        Called before work that holds the GIL and the CPU for long (a completion): replies
        queued during a burst go out first instead of waiting for the interpreter's switch
        interval.  Then the CPU is yielded: the scheduler wakes libzmq's I/O thread, which
        writes the sent replies to the network, on the CPU of the thread that sent them, and
        left there it would wait for that thread's time slice to end (~4 ms on a 2-vCPU VM).
        """
        io_thread = self._io_thread
        if io_thread is None or threading.current_thread() is io_thread:
            return False
        with self._lock:
            target = self._queued_count
            self._send_waiters += 1
            try:
                sent = self._sent.wait_for(lambda: self._sent_count >= target, timeout)
            finally:
                self._send_waiters -= 1
        _yield_cpu()
        return sent

    # -- the I/O thread ---------------------------------------------------------------------
    def io_waits(self) -> bool:
        """The I/O thread is about to wait: senders send themselves from now on, unless
        messages are still queued (returned: True, and the thread must not wait long)."""
        with self._lock:
            self._io_waiting = True  # senders still queue behind a backlog
            return bool(self._queue)

    def io_busy(self) -> None:
        """The I/O thread woke: senders queue for it again."""
        with self._lock:
            self._io_waiting = False

    def drain(self) -> set[Channel]:
        """Send a batch of what was queued while the I/O thread was busy, and retry what
        iopub held back; the channels whose sockets may have input now.

        A bounded share per turn, so reading requests goes on during an output flood.
        """
        touched: set[Channel] = set()
        with self._lock:
            if self.iopub.holding:
                self.iopub.retry()
                # Its sends may have read the notice of a new subscription (as any send may):
                # a look at the events tells, and re-arms the descriptor if nothing waits.
                if has_input(self._by_channel["iopub"]):
                    touched.add("iopub")
            if not self._queue:
                return touched
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), SEND_BATCH))]
            for channel, frames, size in batch:
                self._put(channel, frames)
                self._queued_bytes -= size
            self._sent_count += len(batch)
            if self._send_waiters:
                self._sent.notify_all()
            if self._has_room():
                self._room.set()
        touched.update(channel for channel, _, _ in batch)
        return touched

    def drain_all(self) -> None:
        """The I/O thread's last turn: send everything queued now (not one batch; not what
        senders keep adding meanwhile), and give what iopub holds back one more try."""
        with self._lock:
            batches = -(-len(self._queue) // SEND_BATCH)
        for _ in range(max(1, batches)):
            self.drain()

    def _put(self, channel: Channel, frames: list[bytes]) -> bool:
        """Send one message (lock held); True if it was held back (iopub, a client is full)."""
        if channel != "iopub":
            send_or_log(self._by_channel[channel], channel, frames)
            return False
        return self.iopub.put(frames)
