"""The ZMQ transport: the sockets of a connection file, made of one object per job.

================  ===========================================================================
job               where, and on which thread
================  ===========================================================================
binding           :mod:`.binding`: the message sockets, CurveZMQ's ZAP handler and monitor;
                  bound on the thread that makes the transport
heartbeat         :mod:`.heartbeat`: a C-level echo on its own thread
sending           :mod:`.outbox` (iopub's bound: :mod:`.iopub`): from the sending thread
                  while the I/O thread waits, else queued for it
reading           :mod:`.reader`: the I/O thread, or a loop reading its own channel
timers            :mod:`.timers`: ``call_later``, run on the I/O thread outside the lock
the I/O thread    :mod:`.io_thread`: one loop serving the three jobs above, and its wake-up
================  ===========================================================================

Every socket operation, by any thread, happens under one lock (:attr:`.binding.Sockets.lock`),
which the jobs share: that is what makes sharing the sockets between threads safe.  The
frames themselves go on and off the sockets through :mod:`.frames`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .base import Deliver, Transport
from .binding import Sockets
from .connection import ConnectionInfo
from .curve import curve_keys
from .heartbeat import Heartbeat
from .io_thread import IoThread, Waker
from .iopub import IopubDrops
from .outbox import Outbox
from .reader import Reader
from .timers import Timers
from .wire import Channel, Codec, Message

__all__ = ["ZmqTransport"]


class ZmqTransport(Transport):
    """Binds the sockets of a connection file; sends from any thread, reads on one."""

    def __init__(self, info: ConnectionInfo, codec: Codec) -> None:
        self.info = info
        self.codec = codec
        keys = curve_keys(info.extra)
        self._sockets = Sockets(info, keys)
        self._heartbeat = Heartbeat(info, keys)
        self._waker = Waker(self._sockets.lock)
        self._timers = Timers(self._sockets.lock, self._waker.wake)
        self._outbox = Outbox(self._sockets, codec, self._waker.wake)
        self._reader = Reader(self._sockets, codec, self._outbox.send, self._waker.wake)
        self._io = IoThread(self._sockets, self._reader, self._outbox, self._timers, self._waker)
        self._close_lock = threading.Lock()
        self._closed = False  # under the close lock

    @property
    def iopub_drops(self) -> IopubDrops:
        """The times iopub dropped output for a client that stopped reading (``.total``)."""
        return self._outbox.iopub.drops

    def start(self, deliver: Deliver) -> None:
        self._reader.deliver = deliver
        self._heartbeat.start()
        self._io.start()

    def send(self, channel: Channel, msg: Message, identities: list[bytes] | None = None) -> None:
        """Send ``msg`` from this thread, or queue it while the I/O thread is busy.

        Safe from any thread; never blocks on the network (see :mod:`.outbox`).
        """
        self._outbox.send(channel, msg, identities)

    def wait_sent(self, timeout: float) -> bool:
        return self._outbox.wait_sent(timeout)

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        self._timers.call_later(delay, callback)

    async def read_while_free(self, channel: Channel, loop_is_free: Callable[[], bool]) -> None:
        await self._reader.read_while_free(channel, loop_is_free)

    def notice_fd(self, channel: Channel) -> int:
        """See :meth:`.reader.Reader.notice_fd`."""
        return self._reader.notice_fd(channel)

    def read_here(self, channel: Channel) -> None:
        """See :meth:`.reader.Reader.read_here`."""
        self._reader.read_here(channel)

    def lend(self, channel: Channel, loop_is_free: Callable[[], bool] | None) -> None:
        """See :meth:`.reader.Reader.lend`."""
        self._reader.lend(channel, loop_is_free)

    def close(self) -> None:
        """Run due timers (queued output), close every socket and join the threads (bounded).

        Once, from any thread: a second closer (the stop's watchdog while the main thread
        closes) waits for the first to finish, then returns.  Two at once would end the
        heartbeat's context twice concurrently, and libzmq aborts the process when the
        first term frees the context the second still waits on.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if self._io.running:
                self._io.stop()  # its last turn sends what is queued, then closes the sockets
            else:  # never started
                self._sockets.close()
            self._heartbeat.stop()
            self._waker.close()
