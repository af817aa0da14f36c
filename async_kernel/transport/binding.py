"""The kernel's message sockets: made, bound to the connection file's ports, closed.

:class:`Sockets` holds shell, control, stdin (ROUTERs) and iopub (an XPUB), with CurveZMQ's
helpers when the connection file asks for encryption (:mod:`.curve`): the ZAP handler, bound
before any socket so no handshake happens without it, and the monitor that logs failed
handshakes.  The heartbeat binds its own socket (:mod:`.heartbeat`).

Threads: made and bound on the thread that makes the transport (before IPython is imported,
so early clients are accepted).  After that every operation on these sockets, by any thread,
happens under :attr:`Sockets.lock`; the I/O thread closes them when it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import zmq

from .connection import ConnectionInfo
from .curve import CurveKeys, HandshakeMonitor, ZapHandler, make_curve_server
from .iopub import configure_iopub
from .wire import Channel

__all__ = ["IO_CHANNELS", "SocketReader", "Sockets", "bind"]

IO_CHANNELS: tuple[Channel, ...] = ("shell", "control", "stdin", "iopub")
_SOCKET_TYPES: dict[Channel, int] = {
    "shell": zmq.ROUTER,
    "control": zmq.ROUTER,
    "stdin": zmq.ROUTER,
    "iopub": zmq.XPUB,
}

SocketReader = tuple[zmq.Socket[bytes], Callable[[zmq.Socket[bytes]], bool]]
"""A socket the I/O thread watches, and what reads it (True if more waits behind a batch)."""


def bind(sock: zmq.Socket[bytes], info: ConnectionInfo, channel: Channel) -> None:
    """Bind ``channel``'s port; a port of 0 is chosen here and written into ``info``."""
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


class Sockets:
    """The four message sockets of a connection file, bound; one lock for all of them."""

    def __init__(self, info: ConnectionInfo, keys: CurveKeys | None) -> None:
        # Guards every socket (and the transport's state that goes with them: the outbox,
        # the timers, the wake-up flag).  Re-entrant: a finalizer that prints can run inside
        # a send on the same thread.
        self.lock = threading.RLock()
        self.closed = False  # under the lock
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.zap = ZapHandler(self.context, keys) if keys else None
        self.by_channel: dict[Channel, zmq.Socket[bytes]] = {}
        for channel in IO_CHANNELS:
            sock = self.context.socket(_SOCKET_TYPES[channel])
            sock.linger = 1000
            if keys:
                make_curve_server(sock, keys)
            if channel == "iopub":
                configure_iopub(sock)
            else:
                # A client that reconnects with the identity of a connection the kernel
                # still holds (a server's new websocket for the same session) takes it
                # over and gets the replies, instead of being ignored.
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            bind(sock, info, channel)
            self.by_channel[channel] = sock
        self.handshakes = HandshakeMonitor(self.by_channel.items()) if keys else None

    def security_readers(self) -> list[SocketReader]:
        """CurveZMQ's sockets for the I/O thread to serve: ZAP requests, failed handshakes."""
        readers: list[SocketReader] = []
        if self.zap is not None:
            readers.append((self.zap.socket, self._read_zap))
        if self.handshakes is not None:
            readers.extend((monitor, self._read_handshakes) for monitor in self.handshakes.sockets)
        return readers

    def _read_zap(self, sock: zmq.Socket[bytes]) -> bool:
        assert self.zap is not None
        self.zap.handle()
        return False

    def _read_handshakes(self, sock: zmq.Socket[bytes]) -> bool:
        assert self.handshakes is not None
        self.handshakes.handle(sock)
        return False

    def close(self) -> None:
        """Close every socket (once), then the context."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self.handshakes is not None:  # first: it stops monitoring the open sockets
                self.handshakes.close()
            for sock in self.by_channel.values():
                sock.close(linger=1000)
            if self.zap is not None:
                self.zap.close()
        self.context.term()
