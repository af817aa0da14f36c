"""The heartbeat: every ping echoed back, whatever Python is doing.

Threads: the socket is bound on the thread that makes the transport; then a thread of its
own, ``async-kernel-heartbeat``, runs ``zmq.proxy`` on it, in C without the GIL, so pings are
answered while a cell holds the interpreter.  The socket lives in a context of its own,
without ZAP: any CURVE client may ping it (it only echoes), and terminating that context is
what ends the proxy.
"""

from __future__ import annotations

import threading

import zmq

from ..interrupt import block_sigint_in_this_thread
from .binding import bind
from .connection import ConnectionInfo
from .curve import CurveKeys, make_curve_server

__all__ = ["Heartbeat"]


class Heartbeat:
    """A ROUTER bound to the connection file's ``hb_port`` that echoes every message."""

    def __init__(self, info: ConnectionInfo, keys: CurveKeys | None) -> None:
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.linger = 0
        if keys:
            make_curve_server(self._socket, keys)
        bind(self._socket, info, "hb")
        self._thread = threading.Thread(
            target=self._echo, name="async-kernel-heartbeat", daemon=True
        )
        self._stop_lock = threading.Lock()
        self._stopped = False  # under the stop lock

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the echo (bounded wait) and release the socket, started or not.

        Once, from any thread: a second caller waits for the first's term.  Two terms of one
        context at once both wait for libzmq's "done"; the one that gets it frees the
        context, and the other, still polling its freed descriptor, aborts the process.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            if not self._thread.is_alive():
                self._socket.close(linger=0)
            self._context.term()
            if self._thread.ident is not None:  # started (one never started cannot be joined)
                self._thread.join(timeout=2)

    def _echo(self) -> None:
        block_sigint_in_this_thread()
        try:
            zmq.proxy(self._socket, self._socket)
        except zmq.ContextTerminated:
            pass
        finally:
            self._socket.close(linger=0)
