"""The kernel's ZMQ sockets: read by the I/O thread, written by whichever thread can.

Every socket operation, by any thread, happens under one lock; that is what makes sharing
the sockets between threads safe.  While the I/O thread waits for input, a thread with a
message sends it itself: a cell's reply then pays no hand-over to another thread and no
GIL hand-back, which is most of a round trip's overhead.  While the I/O thread is busy (a
burst of requests, timers), others queue their messages for it, so a burst is not slowed by
every frame's GIL release handing the interpreter back and forth.  Order holds either way:
a message is sent directly only when nothing is queued.  A loop may also read a request
channel itself (:meth:`ZmqTransport.read_here`); each reader delivers its batch under the
lock, so requests keep their order.  While that loop is free, the I/O thread steps aside for
its requests (:meth:`ZmqTransport.lend`) instead of racing it for each one.

The I/O thread waits on each socket's notification descriptor (``zmq.FD``) and reads while
``zmq.EVENTS`` says a message is there.  That descriptor is edge-triggered: any operation
on the socket, a send included, may consume the notice of a message that arrived
meanwhile.  Peers lost replies to exactly this (a send from a second thread ate the
poller's wake-up).  Here every direct send is followed by a look at ``zmq.EVENTS`` under
the same lock, and a waiting message wakes the I/O thread through its socket pair.

The heartbeat is a C-level ``zmq.proxy`` echo in its own thread, so it answers while Python
is busy in a cell.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import os
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from pathlib import Path

import anyio
import sniffio
import zmq
from zmq.backend import Socket as _BackendSocket

from ..interrupt import Latch, block_sigint_in_this_thread
from .base import Deliver, Transport
from .connection import ConnectionInfo
from .curve import HandshakeMonitor, ZapHandler, curve_keys, make_curve_server
from .wire import Channel, Codec, Message, ProtocolError, new_message

__all__ = ["ZmqTransport"]

log = logging.getLogger("async_kernel.transport")

_IO_CHANNELS: tuple[Channel, ...] = ("shell", "control", "stdin", "iopub")
_SOCKET_TYPES: dict[Channel, int] = {
    "shell": zmq.ROUTER,
    "control": zmq.ROUTER,
    "stdin": zmq.ROUTER,
    "iopub": zmq.XPUB,
}
_RECV_BATCH = 64  # messages read from one socket per turn, so no channel starves another
_SEND_BATCH = 256  # queued messages sent per turn of the I/O thread
# Queued messages beyond which a sender waits: a thread printing flat out is slowed to the
# pace of the network instead of queueing without bound.
_OUTBOX_LIMIT = 10_000
# How long the I/O thread leaves a request on a lent channel to its free loop before it reads
# the request itself: only a loop blocked outside any request makes a request wait this long.
_LOAN_GRACE = 0.005  # seconds
_ZERO_COPY_FROM = 64 * 1024  # bytes; below this, copying a frame is cheaper than tracking it
# Output for a client that does not read is bounded (see ZmqTransport._hold_iopub): iopub
# queues up to IOPUB_HWM messages per subscriber (beyond what the network and the client's
# own queue hold), then output waits in a backlog of at most IOPUB_BACKLOG bytes for up to
# IOPUB_STALL seconds; after that the messages are dropped for that client (counted and
# logged) until it reads again.  A print flood's messages are ~0.25-1 MiB (see iostream).
IOPUB_HWM = 32
IOPUB_BACKLOG = 16 * 1024 * 1024  # bytes
IOPUB_STALL = 1.0  # seconds without progress
_IOPUB_RETRY = 0.002  # seconds between attempts while a backlog waits
_DROP_LOG_EVERY = 10.0  # seconds

# pyzmq's backend calls, bound once: (socket, frame, flags, copy), (socket, flags, copy,
# track) and (socket, option).
_send_frame: Callable[[zmq.Socket[bytes], bytes, int, bool], object] = _BackendSocket.send  # pyright: ignore[reportAssignmentType]
_recv_frame: Callable[[zmq.Socket[bytes], int, bool, bool], zmq.Frame] = _BackendSocket.recv  # pyright: ignore[reportAssignmentType]
_get_option: Callable[[zmq.Socket[bytes], int], int] = _BackendSocket.get  # pyright: ignore[reportAssignmentType]
# Plain ints: pyzmq's constants are enums, and `&` on one builds a new enum (~0.5 µs) on a
# path taken several times per request.
_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_LAST = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def _send_multipart(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """Send one message whole, frame by frame, through pyzmq's backend.

    ``Socket.send_multipart`` validates and dispatches every frame in Python: five times the
    cost of these calls.  The frames go out from C (``map`` over the Cython ``send``), so no
    bytecode runs between them: a KeyboardInterrupt, a signal handler or an asynchronous
    exception cannot strike mid-message and leave half of it on the socket.  Every frame is
    checked first (one that is not a buffer raises TypeError before anything is sent).
    Non-blocking: our ROUTERs drop what they cannot route, and a full iopub raises zmq.Again
    before any frame is sent (see ``ZmqTransport._put``).  Large frames go out without a copy:
    libzmq holds the caller's buffer until the frame has been written, then releases it.
    """
    copy = True
    for frame in frames:
        size = len(frame) if type(frame) is bytes else memoryview(frame).nbytes
        if size >= _ZERO_COPY_FROM:
            copy = False
    flags = [_MORE] * len(frames)
    flags[-1] = _LAST
    deque(map(_send_frame, itertools.repeat(sock), frames, flags, itertools.repeat(copy)), 0)


def _recv_multipart(sock: zmq.Socket[bytes]) -> list[bytes]:
    """Read one waiting message whole, through pyzmq's backend.

    ``Socket.recv_multipart`` asks the socket for ``zmq.RCVMORE`` after every frame, and
    pyzmq builds an enum to look up each option: a Frame's own ``more`` flag costs nothing
    (4.2 instead of 6.9 µs for a 7-frame request).  A message arrives whole, so no frame
    after the first can be missing.
    """
    frames: list[bytes] = []
    more = True
    while more:
        frame = _recv_frame(sock, _LAST, False, False)
        # A large frame (a comm buffer) is handed on as a view of libzmq's own memory, not
        # copied: the view keeps the message alive for as long as the handler keeps it.
        frames.append(frame.bytes if len(frame) < _ZERO_COPY_FROM else frame.buffer)  # pyright: ignore[reportArgumentType]
        more = frame.more
    return frames


class _IopubDrops:
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


def _send_or_log(sock: zmq.Socket[bytes], channel: Channel, frames: list[bytes]) -> None:
    try:
        _send_multipart(sock, frames)
    except (zmq.ZMQError, TypeError, ValueError) as err:
        log.warning("could not send on %s: %s", channel, err)


def _send_lossy(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """Send on iopub past a full subscriber: it alone misses the message."""
    sock.setsockopt(zmq.XPUB_NODROP, 0)
    try:
        _send_or_log(sock, "iopub", frames)
    finally:
        sock.setsockopt(zmq.XPUB_NODROP, 1)


def _size(frames: list[bytes]) -> int:
    return sum(len(f) if type(f) is bytes else memoryview(f).nbytes for f in frames)


def _yield_cpu() -> None:
    """Let a thread just woken on this CPU run now (see ``ZmqTransport.wait_sent``)."""
    if sys.platform == "linux":  # the scheduler whose wake-up placement was measured
        os.sched_yield()


def _has_input(sock: zmq.Socket[bytes]) -> bool:
    """Whether a message waits; also re-arms the socket's descriptor (reads its commands)."""
    return bool(_get_option(sock, _EVENTS) & _POLLIN)


class _SteppedAside:
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
        self._until[index] = (time.monotonic() + _LOAN_GRACE, fd)

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


def _bind(sock: zmq.Socket[bytes], info: ConnectionInfo, channel: Channel) -> None:
    if info.transport == "tcp":
        if info.port(channel) == 0:
            info.set_port(channel, sock.bind_to_random_port(f"tcp://{info.ip}"))
        else:
            sock.bind(info.url(channel))
        return
    if info.port(channel) == 0:
        port = 1
        while Path(f"{info.ip}-{port}").exists():
            port += 1
        info.set_port(channel, port)
    sock.bind(info.url(channel))


def _not_started(channel: Channel, identities: list[bytes], msg: Message) -> None:
    raise RuntimeError("the transport delivered a message before it was started")


class ZmqTransport(Transport):
    """Binds the sockets of a connection file; sends from any thread, reads on one."""

    def __init__(self, info: ConnectionInfo, codec: Codec) -> None:
        self.info = info
        self._info = info  # the same, typed as never None
        self.codec = codec
        self._deliver: Deliver = _not_started
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._hb_context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sockets: dict[Channel, zmq.Socket[bytes]] = {}
        self._timers: list[tuple[float, int, Callable[[], object]]] = []
        self._timer_seq = 0
        # Guards every socket and the timers.  Re-entrant: a finalizer that prints can run
        # inside send() on the same thread.
        self._lock = threading.RLock()
        self._closed = False
        # True while the I/O thread waits in select() and leaves the sockets to senders.
        self._io_waiting = True
        self._outbox: deque[tuple[Channel, list[bytes]]] = deque()
        # Counts of messages queued and sent, for wait_sent(); `_sent` shares the lock.
        self._queued_count = 0
        self._sent_count = 0
        self._sent = threading.Condition(self._lock)
        self._send_waiters = 0
        self._room = Latch()  # set when the I/O thread has drained part of a full queue
        self._wake_pending = False
        # A socket pair, not a pipe: select() takes only sockets on Windows.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Channels a loop reads itself (see lend()), each with that loop's "am I free?".
        self._lenders: dict[Channel, Callable[[], bool]] = {}
        # iopub messages full subscribers held back, and the drops (see _put).
        self._iopub_backlog: deque[list[bytes]] = deque()
        self._iopub_backlog_bytes = 0
        self._iopub_progress = 0.0
        self.iopub_drops = _IopubDrops()
        self._running = False
        self._io_thread = threading.Thread(target=self._run, name="async-kernel-io", daemon=True)
        self._hb_thread = threading.Thread(
            target=self._heartbeat, name="async-kernel-heartbeat", daemon=True
        )
        self._bind_all()

    # -- set-up -----------------------------------------------------------------------------
    def _bind_all(self) -> None:
        keys = curve_keys(self._info.extra)
        self._zap = ZapHandler(self._context, keys) if keys else None
        for channel in _IO_CHANNELS:
            sock = self._context.socket(_SOCKET_TYPES[channel])
            sock.linger = 1000
            if keys:
                make_curve_server(sock, keys)
            if channel == "iopub":
                # Every subscription, even a repeated one, is passed up so each new client
                # gets its iopub_welcome.
                sock.setsockopt(zmq.XPUB_VERBOSE, 1)
                # Bounded: a client that stops reading must not grow the kernel without
                # limit.  NODROP makes a full queue refuse the message, so it can wait for a
                # slow client and be counted when dropped, instead of vanishing (see _put).
                sock.sndhwm = IOPUB_HWM
                sock.setsockopt(zmq.XPUB_NODROP, 1)
            else:
                # A client that reconnects with the identity of a connection the kernel
                # still holds (a server's new websocket for the same session) takes it
                # over and gets the replies, instead of being ignored.
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            _bind(sock, self._info, channel)
            self._sockets[channel] = sock
        self._handshakes = HandshakeMonitor(self._sockets.items()) if keys else None
        hb = self._hb_context.socket(zmq.ROUTER)
        hb.linger = 0
        if keys:
            make_curve_server(hb, keys)
        _bind(hb, self._info, "hb")
        self._hb_socket = hb

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        with self._lock:
            self._running = True
            self._io_waiting = False  # until the thread first waits, sends queue for it
        self._hb_thread.start()
        self._io_thread.start()

    # -- thread-safe API --------------------------------------------------------------------
    def send(self, channel: Channel, msg: Message, identities: list[bytes] | None = None) -> None:
        """Send ``msg`` from this thread, or queue it while the I/O thread is busy.

        Safe from any thread; never blocks on the network.
        """
        if channel == "iopub" and identities is None:
            identities = [b"kernel." + msg["msg_type"].encode()]
        frames = self.codec.encode(msg, identities)
        while True:
            with self._lock:
                if self._closed:
                    log.debug("dropped %s on %s: the transport is closed", msg["msg_type"], channel)
                    return
                if not self._io_waiting or self._outbox:
                    if len(self._outbox) < _OUTBOX_LIMIT or not self._may_wait_for_room():
                        self._outbox.append((channel, frames))
                        self._queued_count += 1
                        return
                else:
                    sock = self._sockets[channel]
                    held = self._put(channel, frames)
                    # The send may have read the notice of an incoming message: pass it on.
                    missed = _has_input(sock)
                    break
            # The queue is full: wait for the I/O thread to drain it, outside the lock and
            # on a raw lock (a Latch), so that an interrupt striking this wait (a subshell
            # cell's, raised asynchronously) leaves no lock or condition half updated.
            self._room.wait(0.1)
        if missed or held:  # a held message is retried by the I/O thread
            self._wake()

    def _may_wait_for_room(self) -> bool:
        """Whether a sender finding the queue full waits (lock held): not the I/O thread
        itself (only it drains the queue), nor once the transport is stopping."""
        return self._running and threading.current_thread() is not self._io_thread

    def wait_sent(self, timeout: float) -> bool:
        """Block until what is queued now has been sent, for at most ``timeout`` seconds.

        Called before work that holds the GIL and the CPU for long (a completion): replies
        queued during a burst go out first instead of waiting for the interpreter's switch
        interval.  Then the CPU is yielded: the scheduler wakes libzmq's I/O thread, which
        writes the sent replies to the network, on the CPU of the thread that sent them, and
        left there it would wait for that thread's time slice to end (~4 ms on a 2-vCPU VM).
        """
        if threading.current_thread() is self._io_thread or not self._running:
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

    def notice_fd(self, channel: Channel) -> int:
        """The descriptor that turns readable when ``channel`` may have a message (zmq.FD).

        Edge-triggered: after it turns readable, call :meth:`read_here`, which reads until
        nothing is left (a wait on it alone, without reading, may miss a message).
        """
        return _get_option(self._sockets[channel], zmq.FD)

    def read_here(self, channel: Channel) -> None:
        """Read and deliver what waits on ``channel``, on the calling thread.

        For a loop that would otherwise be woken by the I/O thread for each request: reading
        the request itself saves that hand-over.  The I/O thread still reads the channel
        too (whoever comes first reads, in order; see :meth:`lend`), so requests keep
        arriving while the loop is busy.
        """
        if self._read_and_deliver(channel, self._sockets[channel]):
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

    async def read_while_free(self, channel: Channel, loop_is_free: Callable[[], bool]) -> None:
        """Read ``channel`` on the calling loop whenever it waits for work (see :meth:`lend`).

        The I/O thread reads every socket, and waking it and then the loop costs a hand-over
        per request.  While the loop is free it reads a request itself and the I/O thread
        steps aside; while it has a request in hand, the I/O thread reads on (both under the
        lock, so order holds).
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

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        with self._lock:
            self._timer_seq += 1
            heapq.heappush(self._timers, (time.monotonic() + delay, self._timer_seq, callback))
        self._wake()

    def close(self) -> None:
        """Run due timers (queued output), close every socket and join the threads (bounded)."""
        if self._running:
            self._running = False
            self._wake()
            if threading.current_thread() is not self._io_thread:
                self._io_thread.join(timeout=5)
        else:
            self._close_sockets()
        self._stop_heartbeat()
        for end in (self._wake_r, self._wake_w):
            end.close()

    # -- I/O thread -------------------------------------------------------------------------
    def _wake(self) -> None:
        # The byte first, then the flag: an asynchronous exception (a subshell interrupt)
        # landing between the two then costs at most a spare wake-up, where the other order
        # could leave the flag set with no byte written, and every later wake-up skipped.
        with self._lock:
            if self._wake_pending:
                return
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"\0")
            self._wake_pending = True

    def _run(self) -> None:
        block_sigint_in_this_thread()
        readers: list[tuple[zmq.Socket[bytes], Callable[[zmq.Socket[bytes]], bool]]] = [
            (sock, self._read_subscriptions)
            if channel == "iopub"
            else (sock, functools.partial(self._read_and_deliver, channel))
            for channel, sock in self._sockets.items()
        ]
        if self._zap is not None:
            readers.append((self._zap.socket, self._read_zap))
        if self._handshakes is not None:
            readers.extend((monitor, self._read_handshakes) for monitor in self._handshakes.sockets)
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        for index, (sock, _) in enumerate(readers):
            selector.register(_get_option(sock, zmq.FD), selectors.EVENT_READ, index)
        everyone = set(range(len(readers)))
        index_of = {channel: i for i, channel in enumerate(self._sockets)}
        channel_at: dict[int, Channel] = dict(enumerate(self._sockets))
        stepped_aside = _SteppedAside(selector)
        ready = everyone  # look at every socket once before waiting
        try:
            while self._running:
                busy = {i for i in ready if readers[i][1](readers[i][0])}
                self._fire_timers()
                # Our own sends may have read notices too: look at those sockets again.
                busy |= {index_of[channel] for channel in self._send_outbox()}
                with self._lock:
                    backlog = bool(self._outbox)
                    self._io_waiting = True  # senders still queue behind a backlog
                timeout = 0 if busy or backlog else self._poll_timeout()
                if self._iopub_backlog:  # a full client may read at any moment: try again soon
                    timeout = _IOPUB_RETRY if timeout is None else min(timeout, _IOPUB_RETRY)
                events = selector.select(stepped_aside.shorten(timeout))
                with self._lock:
                    self._io_waiting = False
                fired = {key.data for key, _ in events if key.data is not None}
                if len(fired) < len(events):  # a wake-up: a timer, a stop, a notice passed on
                    self._drain_wakes()
                    stepped_aside.end_all()
                    ready = everyone
                    continue
                ready = busy | fired | stepped_aside.end_overdue()
                # Only a notice seen here is left to a loop: one consumed by a read or a
                # send (`busy`, a wake-up) may never reach that loop's own wait.
                for index in fired - busy:
                    channel = channel_at.get(index)
                    loop_is_free = self._lenders.get(channel) if channel else None
                    if loop_is_free is not None and loop_is_free():
                        stepped_aside.begin(index, _get_option(readers[index][0], zmq.FD))
                        ready.discard(index)
            self._fire_timers(everything=True)
            self._send_outbox()
        except Exception:
            # A kernel that cannot talk is worse than a dead one: the manager sees a dead
            # kernel and can restart it, where a deaf one would hang every client.
            log.critical("the I/O thread failed; the kernel exits", exc_info=True)
            os._exit(70)
        finally:
            selector.close()
            self._close_sockets()

    def _close_sockets(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for sock in self._sockets.values():
                sock.close(linger=1000)
            if self._handshakes is not None:
                self._handshakes.close()
            if self._zap is not None:
                self._zap.close()
        self._context.term()

    def _read_and_deliver(self, channel: Channel, sock: zmq.Socket[bytes]) -> bool:
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

    def _take(self, sock: zmq.Socket[bytes]) -> tuple[list[list[bytes]], bool]:
        """Up to a batch of waiting messages, and whether more wait behind them."""
        batch: list[list[bytes]] = []
        with self._lock:
            if self._closed:
                return batch, False
            while _has_input(sock):
                if len(batch) == _RECV_BATCH:
                    return batch, True
                batch.append(_recv_multipart(sock))
        return batch, False

    def _accept(self, channel: Channel, frames: list[bytes]) -> None:
        try:
            identities, msg = self.codec.decode(frames)
        except ProtocolError as err:
            log.warning("dropped a message on %s: %s", channel, err)
            return
        try:
            self._deliver(channel, identities, msg)
        except Exception:
            log.exception("delivering %s on %s failed", msg.get("msg_type"), channel)

    def _read_subscriptions(self, sock: zmq.Socket[bytes]) -> bool:
        """Greet every new iopub subscriber with an iopub_welcome for its topic."""
        batch, more = self._take(sock)
        for frames in batch:
            event = frames[0] if frames else b""
            if event[:1] == b"\x01":
                topic = event[1:].decode("utf-8", "replace")
                welcome = new_message("iopub_welcome", {"subscription": topic})
                self.send("iopub", welcome, [b"kernel.iopub_welcome"])
        return more

    def _read_handshakes(self, sock: zmq.Socket[bytes]) -> bool:
        assert self._handshakes is not None
        self._handshakes.handle(sock)
        return False

    def _read_zap(self, sock: zmq.Socket[bytes]) -> bool:
        assert self._zap is not None
        self._zap.handle()
        return False

    def _poll_timeout(self) -> float | None:
        with self._lock:
            if not self._timers:
                return None
            return max(0.0, self._timers[0][0] - time.monotonic())

    def _drain_wakes(self) -> None:
        # Read, then clear: a wake-up asked for in between finds the flag still set and
        # writes nothing, and its reason is seen by the full look that follows the clear.
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass
        with self._lock:
            self._wake_pending = False

    def _send_outbox(self) -> set[Channel]:
        """Send what was queued while this thread was busy; the channels sent on."""
        with self._lock:
            if self._iopub_backlog:
                self._send_iopub_backlog()
            if not self._outbox:
                return set()
            # A bounded share per turn: reading requests goes on during an output flood.
            batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), _SEND_BATCH))]
            # Under the lock like every socket operation: the main loop may be reading shell.
            for channel, frames in batch:
                self._put(channel, frames)
            self._sent_count += len(batch)
            if self._send_waiters:
                self._sent.notify_all()
            if len(self._outbox) < _OUTBOX_LIMIT:
                self._room.set()
        return {channel for channel, _ in batch}

    # -- iopub's bound (lock held) ----------------------------------------------------------
    def _put(self, channel: Channel, frames: list[bytes]) -> bool:
        """Send one message; True if it was held back (iopub, a client is full)."""
        if channel != "iopub":
            _send_or_log(self._sockets[channel], channel, frames)
            return False
        if self._iopub_backlog or not self._send_iopub(frames):
            self._hold_iopub(frames)
            return True
        return False

    def _send_iopub(self, frames: list[bytes]) -> bool:
        """False if a subscriber's queue is full (nothing was sent)."""
        try:
            _send_multipart(self._sockets["iopub"], frames)
        except zmq.Again:
            return False
        except (zmq.ZMQError, TypeError, ValueError) as err:
            log.warning("could not send on iopub: %s", err)
        self._iopub_progress = time.monotonic()
        return True

    def _hold_iopub(self, frames: list[bytes]) -> None:
        """Queue a message a full subscriber refused; past the budget, drop for it."""
        if not self._iopub_backlog:
            self._iopub_progress = time.monotonic()
        self._iopub_backlog.append(frames)
        self._iopub_backlog_bytes += _size(frames)
        if self._iopub_backlog_bytes > IOPUB_BACKLOG:
            self._send_iopub_backlog()

    def _send_iopub_backlog(self) -> None:
        """Send what full subscribers held back, waiting for them up to the stall or budget.

        Past either, the oldest message goes out to the subscribers with room and the full
        ones miss it (a counted drop); libzmq then skips those until they catch up, so the
        rest of the backlog flows to the others.  A subscriber that reads, however slowly,
        makes progress and is waited for.
        """
        backlog = self._iopub_backlog
        while backlog:
            if not self._send_iopub(backlog[0]):
                stalled = time.monotonic() - self._iopub_progress >= IOPUB_STALL
                if not stalled and self._iopub_backlog_bytes <= IOPUB_BACKLOG:
                    return
                _send_lossy(self._sockets["iopub"], backlog[0])
                self.iopub_drops.dropped()
                self._iopub_progress = time.monotonic()
            self._iopub_backlog_bytes -= _size(backlog.popleft())

    def _fire_timers(self, *, everything: bool = False) -> None:
        now = time.monotonic()
        due: list[Callable[[], object]] = []
        with self._lock:
            while self._timers and (everything or self._timers[0][0] <= now):
                due.append(heapq.heappop(self._timers)[2])
        for callback in due:
            try:
                callback()
            except Exception:
                log.exception("timer callback %r failed", callback)

    def _heartbeat(self) -> None:
        block_sigint_in_this_thread()
        try:
            zmq.proxy(self._hb_socket, self._hb_socket)
        except zmq.ContextTerminated:
            pass
        finally:
            self._hb_socket.close(linger=0)

    def _stop_heartbeat(self) -> None:
        if not self._hb_thread.is_alive():
            self._hb_socket.close(linger=0)
        self._hb_context.term()
        self._hb_thread.join(timeout=2)
