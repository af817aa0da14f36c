"""The kernel's ZMQ sockets, each owned by one I/O thread.

Every socket (shell, control, stdin, iopub) is created, read, written and closed by a single
thread: other threads hand it outgoing messages through a deque and wake it through a pipe.
That is the rule whose breach made peers lose replies (a raw send from a second thread eats
a poller's edge-triggered wake-up).  The heartbeat is a C-level ``zmq.proxy`` echo in its own
thread, so it answers while Python is busy in a cell.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import zmq
from zmq.backend import Socket as _BackendSocket

from ..connection import Channel, ConnectionInfo
from ..interrupt import block_sigint_in_this_thread
from ..wire import Codec, Message, ProtocolError, new_message
from .curve import ZapHandler, curve_keys, make_curve_server

__all__ = ["ZmqTransport"]

log = logging.getLogger("async_kernel.transport")

_IO_CHANNELS: tuple[Channel, ...] = ("shell", "control", "stdin", "iopub")
_SOCKET_TYPES: dict[Channel, int] = {
    "shell": zmq.ROUTER,
    "control": zmq.ROUTER,
    "stdin": zmq.ROUTER,
    "iopub": zmq.XPUB,
}
_RECV_BATCH = 64  # messages read from one socket per wake-up, so no channel starves another
_ZERO_COPY_FROM = 64 * 1024  # bytes; below this, copying a frame is cheaper than tracking it


_send_frame = _BackendSocket.send


def _send_multipart(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """Send one message, frame by frame, through pyzmq's backend.

    ``Socket.send_multipart`` validates and dispatches every frame in Python: five times the
    cost of these calls for a kernel message, paid by the thread that sends everything.
    Large frames go without a copy.  Every frame is checked before the first is sent (a
    frame that is not a buffer raises TypeError), so a bad one never leaves half a message.
    """
    copy = True
    for frame in frames:
        size = len(frame) if type(frame) is bytes else memoryview(frame).nbytes
        if size >= _ZERO_COPY_FROM:
            copy = False
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        _send_frame(sock, frame, zmq.SNDMORE if i < last else 0, copy=copy)


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


class ZmqTransport:
    """Binds the sockets of a connection file and moves frames on one I/O thread."""

    def __init__(
        self,
        info: ConnectionInfo,
        codec: Codec,
        deliver: Callable[[Channel, list[bytes], Message], None],
    ) -> None:
        self.info = info
        self.codec = codec
        self._deliver = deliver
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._hb_context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sockets: dict[Channel, zmq.Socket[bytes]] = {}
        self._outbox: deque[tuple[Channel, list[bytes]]] = deque()
        self._timers: list[tuple[float, int, Callable[[], object]]] = []
        self._timer_seq = 0
        # Re-entrant: a finalizer that prints can run inside send() on the same thread.
        self._lock = threading.RLock()
        # Counts of messages queued and sent, for wait_sent(); `_sent` shares the outbox lock.
        self._queued_count = 0
        self._sent_count = 0
        self._sent = threading.Condition(self._lock)
        self._send_waiters = 0
        self._wake_pending = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._running = False
        self._io_thread = threading.Thread(target=self._run, name="async-kernel-io", daemon=True)
        self._hb_thread = threading.Thread(
            target=self._heartbeat, name="async-kernel-heartbeat", daemon=True
        )
        self._bind_all()

    # -- set-up -----------------------------------------------------------------------------
    def _bind_all(self) -> None:
        keys = curve_keys(self.info.extra)
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
                sock.sndhwm = 0
            _bind(sock, self.info, channel)
            self._sockets[channel] = sock
        hb = self._hb_context.socket(zmq.ROUTER)
        hb.linger = 0
        if keys:
            make_curve_server(hb, keys)
        _bind(hb, self.info, "hb")
        self._hb_socket = hb

    def start(self) -> None:
        self._running = True
        self._hb_thread.start()
        self._io_thread.start()

    # -- thread-safe API --------------------------------------------------------------------
    def send(self, channel: Channel, msg: Message, identities: list[bytes] | None = None) -> None:
        if channel == "iopub" and identities is None:
            identities = [b"kernel." + msg["msg_type"].encode()]
        frames = self.codec.encode(msg, identities)
        with self._lock:
            self._outbox.append((channel, frames))
            self._queued_count += 1
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    def wait_sent(self, timeout: float) -> bool:
        """Block until what is queued now has been sent, for at most ``timeout`` seconds.

        Called before work that holds the GIL for long (a completion): replies already made
        go out first instead of waiting for the interpreter's switch interval, again and again.
        """
        if threading.current_thread() is self._io_thread or not self._running:
            return False
        with self._lock:
            target = self._queued_count
            self._send_waiters += 1
            try:
                return self._sent.wait_for(lambda: self._sent_count >= target, timeout)
            finally:
                self._send_waiters -= 1

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        with self._lock:
            self._timer_seq += 1
            heapq.heappush(self._timers, (time.monotonic() + delay, self._timer_seq, callback))
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    def close(self) -> None:
        """Flush the outbox, close every socket and join the threads (bounded)."""
        if self._running:
            self._running = False
            self._wake()
            if threading.current_thread() is not self._io_thread:
                self._io_thread.join(timeout=5)
        self._stop_heartbeat()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- I/O thread -------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        block_sigint_in_this_thread()
        poller = zmq.Poller()
        by_socket: dict[zmq.Socket[bytes], Channel] = {}
        for channel, sock in self._sockets.items():
            poller.register(sock, zmq.POLLIN)
            by_socket[sock] = channel
        poller.register(self._wake_r, zmq.POLLIN)
        if self._zap is not None:
            poller.register(self._zap.socket, zmq.POLLIN)
        try:
            while self._running:
                timeout = self._poll_timeout()
                for item, _ in poller.poll(timeout):
                    if item == self._wake_r:
                        self._drain_wake_pipe()
                    elif self._zap is not None and item is self._zap.socket:
                        self._zap.handle()
                    else:
                        self._receive(item, by_socket[item])  # type: ignore[arg-type,index]
                self._fire_timers()
                self._send_outbox()
            self._fire_timers(everything=True)
            self._send_outbox()
        except Exception:
            # A kernel that cannot talk is worse than a dead one: the manager sees a dead
            # kernel and can restart it, where a deaf one would hang every client.
            log.critical("the I/O thread failed; the kernel exits", exc_info=True)
            os._exit(70)
        finally:
            for sock in self._sockets.values():
                sock.close(linger=1000)
            if self._zap is not None:
                self._zap.close()
            self._context.term()

    def _poll_timeout(self) -> int | None:
        with self._lock:
            if self._outbox:
                return 0
            if not self._timers:
                return None
            delay = self._timers[0][0] - time.monotonic()
        return max(0, int(delay * 1000 + 0.999))

    def _drain_wake_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass
        with self._lock:
            self._wake_pending = False

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

    def _send_outbox(self) -> None:
        while True:
            with self._lock:
                if not self._outbox:
                    return
                batch = list(self._outbox)
                self._outbox.clear()
            for channel, frames in batch:
                try:
                    _send_multipart(self._sockets[channel], frames)
                except (zmq.ZMQError, TypeError, ValueError) as err:
                    log.warning("could not send on %s: %s", channel, err)
            with self._lock:
                self._sent_count += len(batch)
                if self._send_waiters:
                    self._sent.notify_all()

    def _receive(self, sock: zmq.Socket[bytes], channel: Channel) -> None:
        for _ in range(_RECV_BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if channel == "iopub":
                self._on_subscription(frames)
                continue
            try:
                identities, msg = self.codec.decode(frames)
            except ProtocolError as err:
                log.warning("dropped a message on %s: %s", channel, err)
                continue
            try:
                self._deliver(channel, identities, msg)
            except Exception:
                log.exception("delivering %s on %s failed", msg.get("msg_type"), channel)

    def _on_subscription(self, frames: list[bytes]) -> None:
        event = frames[0] if frames else b""
        if event[:1] == b"\x01":
            topic = event[1:].decode("utf-8", "replace")
            welcome = new_message("iopub_welcome", {"subscription": topic})
            frames = self.codec.encode(welcome, [b"kernel.iopub_welcome"])
            self._sockets["iopub"].send_multipart(frames)

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
