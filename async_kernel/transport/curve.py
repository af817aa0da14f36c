"""CurveZMQ encryption, the way jupyter_client's ``transport_encryption`` provisions it.

jupyter_client (8.10+) writes one keypair, ``curve_publickey``/``curve_secretkey`` (Z85), into
the connection file of a kernel whose spec lists ``"curve"`` in ``supported_encryption``.  The
kernel's sockets are CURVE servers with that keypair; clients use the same keypair as their
own, except the heartbeat, which makes a throwaway one.

Knowing the server's public key is enough to finish a CURVE handshake, so a ZAP handler also
requires the client to present the connection file's public key on the message channels: a
peer without the file (hence without the secret key) cannot even connect.  The heartbeat
lives in its own context without ZAP, so any CURVE client may ping it (it only echoes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils import z85

__all__ = ["CurveKeys", "HandshakeMonitor", "ZapHandler", "curve_keys", "make_curve_server"]

log = logging.getLogger("async_kernel.transport")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"async-kernel"


@dataclass(frozen=True)
class CurveKeys:
    public: bytes  # Z85, 40 bytes
    secret: bytes


def curve_keys(extra: dict[str, Any]) -> CurveKeys | None:
    """The keypair from a connection file's extra fields, or None when encryption is off."""
    public, secret = extra.get("curve_publickey"), extra.get("curve_secretkey")
    if not public or not secret:
        return None
    if not zmq.has("curve"):
        raise RuntimeError("the connection file asks for CurveZMQ, but libzmq lacks CURVE")
    as_bytes = [k.encode("ascii") if isinstance(k, str) else bytes(k) for k in (public, secret)]
    return CurveKeys(*as_bytes)


def make_curve_server(sock: zmq.Socket[bytes], keys: CurveKeys) -> None:
    """Must be called before ``bind``."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
    sock.zap_domain = ZAP_DOMAIN


class ZapHandler:
    """Answers libzmq's ZAP requests: only the connection file's own public key gets in.

    Its REP socket belongs to the transport's I/O thread like every other socket; it is
    bound first, so no handshake can happen before it is there.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], keys: CurveKeys) -> None:
        self._allowed = z85.decode(keys.public)
        self.socket: zmq.Socket[bytes] = context.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(ZAP_ENDPOINT)
        self.refused = 0

    def handle(self) -> None:
        """Answer every pending request (I/O thread only)."""
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.socket.send_multipart(self._answer(request))

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism, *credentials = request
        if mechanism == b"CURVE" and credentials[:1] == [self._allowed]:
            return [version, request_id, b"200", b"OK", b"client", b""]
        self.refused += 1
        log.warning(
            "refused a %s connection from %s: not the connection file's key",
            mechanism.decode("ascii", "replace"),
            address.decode("ascii", "replace") or "?",
        )
        return [version, request_id, b"400", b"unknown client key", b"", b""]

    def close(self) -> None:
        self.socket.close(linger=0)


_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class HandshakeMonitor:
    """Logs the peers that fail a socket's CURVE handshake (a plain-text client, say).

    Such a peer never reaches the ZAP handler: the greeting itself fails.  Only a socket
    monitor sees it.  Its sockets are read by the transport's I/O thread, like ZAP's.
    """

    def __init__(self, sockets: Iterable[tuple[str, zmq.Socket[bytes]]]) -> None:
        named = list(sockets)
        self._watched = [sock for _, sock in named]
        self.sockets: dict[zmq.Socket[bytes], str] = {
            sock.get_monitor_socket(_HANDSHAKE_FAILED): channel for channel, sock in named
        }

    def handle(self, monitor: zmq.Socket[bytes]) -> None:
        """Log every event waiting on ``monitor`` (I/O thread)."""
        from zmq.utils.monitor import recv_monitor_message

        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            log.warning(
                "refused a peer on %s (%s): its encryption handshake failed (%s); a client "
                "needs the connection file's keys",
                self.sockets[monitor],
                event.get("endpoint", b"").decode("utf-8", "replace"),
                zmq.Event(event["event"]).name,
            )

    def close(self) -> None:
        for sock in self._watched:
            sock.disable_monitor()
        for monitor in self.sockets:
            monitor.close(linger=0)
