"""iopub's bound: output for a client that does not read costs the kernel a bounded amount.

iopub queues up to ``IOPUB_HWM`` messages per subscriber (beyond what the network and the
client's own queue hold); ``XPUB_NODROP`` makes a full queue refuse a message rather than lose
it silently.  A refused message waits in a backlog of at most ``IOPUB_BACKLOG`` bytes for up
to ``IOPUB_STALL`` seconds without progress; after that the oldest goes out to the
subscribers with room and the full ones miss it (a drop, counted and logged), until they read
again.  A subscriber that reads, however slowly, makes progress and is waited for.  A print
flood's messages are at most 80 Ki characters each, under 1 MiB of JSON (the shell's
iostream): a stalled subscriber's queue (``IOPUB_HWM`` messages, and the few libzmq has in
flight) holds ~30 MiB at most.

Status after a drop.  libzmq skips a subscriber it dropped for until that subscriber has
caught up with its queue, and we cannot see when: every message sent meanwhile is lost to it,
a request's ``idle`` status among them, and a front end would show the kernel busy for good.
So after a drop, the last status message of each request sent from then on (of the last
``RESYNC_REQUESTS`` requests) is sent again, with a header of its own, ``IOPUB_RESYNC``
seconds after the last drop, when the client has most likely caught up, and twice more at
doubling intervals for one that took longer.  A client that got the first copy sees the same
state again.

Threads: :class:`IopubBound` is called with the transport's lock held
(:attr:`.binding.Sockets.lock`), by a thread sending directly or by the I/O thread, which
retries the backlog every ``IOPUB_RETRY`` seconds while there is one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import zmq

from .frames import send_multipart, send_or_log, size_of

__all__ = [
    "IOPUB_BACKLOG",
    "IOPUB_HWM",
    "IOPUB_RESYNC",
    "IOPUB_RETRY",
    "IOPUB_STALL",
    "RESYNC_REQUESTS",
    "RESYNC_TIMES",
    "IopubBound",
    "IopubDrops",
    "configure_iopub",
]

log = logging.getLogger("async_kernel.transport")

IOPUB_HWM = 32
IOPUB_BACKLOG = 16 * 1024 * 1024  # bytes
IOPUB_STALL = 1.0  # seconds without progress
IOPUB_RETRY = 0.002  # seconds between attempts while a backlog waits
IOPUB_RESYNC = 1.0  # seconds after the last drop that the missed status messages go again
RESYNC_TIMES = 3  # how often they go again (after 1, 2 and 4 times IOPUB_RESYNC)
RESYNC_REQUESTS = 64  # the most requests whose status is kept for that
_STATUS_TOPIC = b"kernel.status"
_DROP_LOG_EVERY = 10.0  # seconds


def configure_iopub(sock: zmq.Socket[bytes]) -> None:
    """Set iopub's options; before it is bound."""
    # Every subscription, even a repeated one, is passed up so each new client gets its
    # iopub_welcome.
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    # Bounded: a client that stops reading must not grow the kernel without limit.  NODROP
    # makes a full queue refuse the message, so it can wait for a slow client and be counted
    # when dropped, instead of vanishing.
    sock.sndhwm = IOPUB_HWM
    sock.setsockopt(zmq.XPUB_NODROP, 1)


class IopubDrops:
    """Counts the times iopub dropped output for a client that stopped reading, and logs them.

    Each drop is one message sent past a subscriber whose queue was full for
    ``IOPUB_STALL`` seconds (or whose backlog outgrew ``IOPUB_BACKLOG``): that subscriber
    misses it, and libzmq then skips it (it misses every message) until it has caught up
    with its queue.  The first drop is logged, later ones at most every ``_DROP_LOG_EVERY``
    seconds.
    """

    def __init__(self) -> None:
        self.total = 0
        self._logged_at: float | None = None

    def dropped(self) -> None:
        self.total += 1
        now = time.monotonic()
        if self._logged_at is None or now - self._logged_at >= _DROP_LOG_EVERY:
            self._logged_at = now
            log.warning(
                "iopub: a client has not read its output for a while; output is dropped for "
                "it until it catches up, the other clients still get it (%d drops so far)",
                self.total,
            )


class IopubBound:
    """Sends on iopub; holds back what full subscribers refuse, and drops past the budget.

    Every method is called with the transport's lock held (see the module's docstring).
    """

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        renew: Callable[[list[bytes]], list[bytes]] | None = None,
    ) -> None:
        """``renew``: a message's frames with a header of its own (for the status sent again
        after a drop; None: nothing is sent again)."""
        self._sock = sock
        self._backlog: deque[list[bytes]] = deque()
        self.backlog_bytes = 0
        self._progress = 0.0  # when a message last went out
        self.drops = IopubDrops()
        self._renew = renew
        # After a drop: when the status messages sent since go again, and those messages
        # (each request's last, by its parent header's frame).
        self._resync_at: float | None = None
        self._resync: dict[bytes, list[bytes]] = {}
        self._resent = 0  # times the kept status messages went again since the last drop

    @property
    def holding(self) -> bool:
        """Whether messages wait for a full subscriber, or status messages to be sent again
        after a drop (then the I/O thread retries soon)."""
        return bool(self._backlog) or self._resync_at is not None

    def put(self, frames: list[bytes]) -> bool:
        """Send one message; True if it was held back (a subscriber is full)."""
        if self._backlog or not self._send(frames):
            self._hold(frames)
            return True
        return False

    def retry(self) -> None:
        """Send what full subscribers held back, waiting for them up to the stall or budget.

        Past either, the oldest message goes out to the subscribers with room and the full
        ones miss it (a counted drop); libzmq then skips those until they catch up, so the
        rest of the backlog flows to the others.
        """
        backlog = self._backlog
        while backlog:
            if not self._send(backlog[0]):
                stalled = time.monotonic() - self._progress >= IOPUB_STALL
                if not stalled and self.backlog_bytes <= IOPUB_BACKLOG:
                    return
                self._send_lossy(backlog[0])
                self.drops.dropped()
                self._progress = time.monotonic()
                if self._renew is not None:
                    self._resync_at = self._progress + IOPUB_RESYNC
                    self._resent = 0
            self.backlog_bytes -= size_of(backlog.popleft())
        if self._resync_at is not None and time.monotonic() >= self._resync_at:
            self._send_again()

    def retry_in(self) -> float:
        """Seconds until :meth:`retry` has something to do (while :attr:`holding`)."""
        if self._backlog or self._resync_at is None:
            return IOPUB_RETRY
        return max(0.0, self._resync_at - time.monotonic())

    def _send_again(self) -> None:
        """Send again, each with a header of its own, the status messages kept since the
        last drop (see the module's docstring); then again later, or forget them."""
        renew, kept = self._renew, list(self._resync.values())
        self._resent += 1
        if self._resent < RESYNC_TIMES:
            self._resync_at = time.monotonic() + IOPUB_RESYNC * 2**self._resent
        else:
            self._resync_at, self._resync = None, {}
        if renew is not None:
            for frames in kept:
                self.put(renew(frames))

    def _note_status(self, frames: list[bytes]) -> None:
        """Keep a status message sent while a dropped-for client may still be skipped."""
        if frames[0] == _STATUS_TOPIC and len(frames) > 4:
            parent = frames[4]  # the parent header: each request's last status is kept
            self._resync.pop(parent, None)
            self._resync[parent] = frames
            if len(self._resync) > RESYNC_REQUESTS:
                del self._resync[next(iter(self._resync))]

    def _send(self, frames: list[bytes]) -> bool:
        """False if a subscriber's queue is full (nothing was sent)."""
        try:
            send_multipart(self._sock, frames)
        except zmq.Again:
            return False
        except (zmq.ZMQError, TypeError, ValueError) as err:
            log.warning("could not send on iopub: %s", err)
        self._progress = time.monotonic()
        if self._resync_at is not None:
            self._note_status(frames)
        return True

    def _hold(self, frames: list[bytes]) -> None:
        """Queue a message a full subscriber refused; past the budget, drop for it."""
        if not self._backlog:
            self._progress = time.monotonic()
        self._backlog.append(frames)
        self.backlog_bytes += size_of(frames)
        if self.backlog_bytes > IOPUB_BACKLOG:
            self.retry()

    def _send_lossy(self, frames: list[bytes]) -> None:
        """Send past a full subscriber: it alone misses the message."""
        self._sock.setsockopt(zmq.XPUB_NODROP, 0)
        try:
            send_or_log(self._sock, "iopub", frames)
        finally:
            self._sock.setsockopt(zmq.XPUB_NODROP, 1)
        if self._renew is not None:
            self._note_status(frames)
