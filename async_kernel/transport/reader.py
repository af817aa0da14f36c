"""Reading: frames off the request sockets, decoded, handed to the kernel's ``deliver``.

The I/O thread reads every socket.  A loop may also read a request channel itself
(:meth:`Reader.read_while_free`): waking the I/O thread and then the loop costs a hand-over
per request, which the loop saves by reading while it has nothing else to do.  Each reader
delivers its batch under the transport's lock, so requests keep their order whoever reads.
While that loop is free, the I/O thread steps aside for its requests (:meth:`Reader.lend`;
the stepping aside itself is the I/O thread's, :mod:`.io_thread`) instead of racing it for
each one.

Threads: :meth:`Reader.read_and_deliver` and :meth:`Reader.greet_subscribers` on the I/O
thread; :meth:`Reader.read_here` on a loop that reads its own channel; both under the
transport's lock (:attr:`.binding.Sockets.lock`), so ``deliver`` runs under that lock and
must be quick (work that may wait for another lock goes to a timer; see :mod:`.timers`).
:meth:`Reader.lend` from the loop's thread; the I/O thread asks :meth:`Reader.lender`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Generator

import anyio
import sniffio
import zmq

from .base import Deliver
from .binding import Sockets
from .frames import has_input, notice_fd, recv_multipart
from .wire import Channel, Codec, Message, ProtocolError, new_message

__all__ = ["RECV_BATCH", "Reader"]

log = logging.getLogger("async_kernel.transport")

RECV_BATCH = 64  # messages read from one socket per turn, so no channel starves another

Send = Callable[[Channel, Message, list[bytes] | None], None]


def _not_started(channel: Channel, identities: list[bytes], msg: Message) -> None:
    raise RuntimeError("the transport delivered a message before it was started")


class Reader:
    """Reads the request channels and iopub's subscriptions, for any thread that asks."""

    def __init__(
        self, sockets: Sockets, codec: Codec, send: Send, wake: Callable[[], None]
    ) -> None:
        self._sockets = sockets
        self._lock = sockets.lock
        self._codec = codec
        self._send = send
        self._wake = wake
        self.deliver: Deliver = _not_started
        # Channels a loop reads itself (see lend()), each with that loop's "am I free?".
        self._lenders: dict[Channel, Callable[[], bool]] = {}

    def reader_for(self, channel: Channel) -> Callable[[zmq.Socket[bytes]], bool]:
        """What the I/O thread calls when ``channel``'s socket may have input."""
        if channel == "iopub":
            return self.greet_subscribers
        return functools.partial(self.read_and_deliver, channel)

    # -- reading (I/O thread, or a loop reading its own channel) ----------------------------
    def read_and_deliver(self, channel: Channel, sock: zmq.Socket[bytes]) -> bool:
        """Read, decode and hand over a batch; True if more wait behind it.

        Under the lock from the first read to the last hand-over: a request channel may be
        read by two threads (see :meth:`read_here`), and each must deliver its batch before
        the other reads the next one.
        """
        with self._lock:
            batch, more = self._take(sock)
            for frames in batch:
                self._accept(channel, frames)
        return more

    def greet_subscribers(self, sock: zmq.Socket[bytes]) -> bool:
        """Greet every new iopub subscriber with an iopub_welcome for its topic."""
        batch, more = self._take(sock)
        for frames in batch:
            event = frames[0] if frames else b""
            if event[:1] == b"\x01":
                topic = event[1:].decode("utf-8", "replace")
                welcome = new_message("iopub_welcome", {"subscription": topic})
                self._send("iopub", welcome, [b"kernel.iopub_welcome"])
        return more

    def _take(self, sock: zmq.Socket[bytes]) -> tuple[list[list[bytes]], bool]:
        """Up to a batch of waiting messages, and whether more wait behind them."""
        batch: list[list[bytes]] = []
        with self._lock:
            if self._sockets.closed:
                return batch, False
            while has_input(sock):
                if len(batch) == RECV_BATCH:
                    return batch, True
                batch.append(recv_multipart(sock))
        return batch, False

    def _accept(self, channel: Channel, frames: list[bytes]) -> None:
        try:
            identities, msg = self._codec.decode(frames)
        except ProtocolError as err:
            log.warning("dropped a message on %s: %s", channel, err)
            return
        try:
            self.deliver(channel, identities, msg)
        except Exception:
            log.exception("delivering %s on %s failed", msg.get("msg_type"), channel)

    # -- a loop reading its own channel -----------------------------------------------------
    def notice_fd(self, channel: Channel) -> int:
        """The descriptor that turns readable when ``channel`` may have a message (zmq.FD).

        Edge-triggered: after it turns readable, call :meth:`read_here`, which reads until
        nothing is left (a wait on it alone, without reading, may miss a message).
        """
        return notice_fd(self._sockets.by_channel[channel])

    def read_here(self, channel: Channel) -> None:
        """Read and deliver what waits on ``channel``, on the calling thread.

        The I/O thread still reads the channel too (whoever comes first reads, in order;
        see :meth:`lend`), so requests keep arriving while the loop is busy.
        """
        if self.read_and_deliver(channel, self._sockets.by_channel[channel]):
            self._wake()  # a batch was left behind: the I/O thread reads on

    def lend(self, channel: Channel, loop_is_free: Callable[[], bool] | None) -> None:
        """Leave ``channel``'s requests to a loop that reads them with :meth:`read_here`.

        Woken by a request while ``loop_is_free()`` (asked on the I/O thread; it must be
        quick) says that loop waits for work, the I/O thread steps aside instead of racing
        the loop for it: a request read here costs a hand-over to the loop, and the race
        itself costs both threads the lock and the GIL.  If the loop has not read the
        request within a short grace period it is blocked, and the I/O thread reads after
        all, so a subshell's request never waits for it.  ``None`` ends the loan.
        """
        with self._lock:
            if loop_is_free is not None:
                self._lenders[channel] = loop_is_free
                return
            self._lenders.pop(channel, None)
        self._wake()  # the I/O thread may be standing aside for the loop that leaves

    def lender(self, channel: Channel) -> Callable[[], bool] | None:
        """The "am I free?" of the loop that reads ``channel`` itself, if one does."""
        return self._lenders.get(channel)

    async def read_while_free(self, channel: Channel, loop_is_free: Callable[[], bool]) -> None:
        """Read ``channel`` on the calling loop whenever it waits for work (see :meth:`lend`).

        While the loop is free it reads a request itself and the I/O thread steps aside;
        while it has a request in hand, the I/O thread reads on (both under the lock, so
        order holds).  Until cancelled.
        """
        fd = self.notice_fd(channel)
        if sniffio.current_async_library() == "trio":
            import trio

            with self._lent(channel, loop_is_free):
                while True:
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        self.read_here(channel)
                    except Exception:  # as asyncio does for a reader: log it, keep reading
                        log.exception("reading %s on the loop failed", channel)
        else:
            import asyncio

            loop = asyncio.get_running_loop()
            # Before the loan: a loop without readers (Windows' proactor) leaves the channel
            # to the I/O thread, as it was, rather than ending the kernel.
            try:
                loop.add_reader(fd, self.read_here, channel)
            except NotImplementedError:
                log.debug("this event loop cannot watch %s; the I/O thread reads it", channel)
                return
            try:
                with self._lent(channel, loop_is_free):
                    await anyio.sleep_forever()
            finally:
                loop.remove_reader(fd)

    @contextlib.contextmanager
    def _lent(self, channel: Channel, loop_is_free: Callable[[], bool]) -> Generator[None]:
        self.lend(channel, loop_is_free)
        try:
            yield
        finally:
            self.lend(channel, None)
