"""Raw pyzmq peers for tests that must send what jupyter_client never would."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import zmq


class RawPeers:
    """Sockets on one context, all closed (never left to the garbage collector) at exit."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        key = info["key"]
        self.key: bytes = key if isinstance(key, bytes) else key.encode()
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sockets: list[zmq.Socket[Any]] = []

    def socket(self, kind: int) -> zmq.Socket[Any]:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        self.sockets.append(sock)
        return sock

    def connect(self, channel: str, sock: zmq.Socket[Any] | None = None) -> zmq.Socket[Any]:
        if sock is None:
            sock = self.socket(zmq.SUB if channel == "iopub" else zmq.DEALER)
        if channel == "iopub":
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(f"tcp://{self.info['ip']}:{self.info[channel + '_port']}")
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        self.ctx.term()


@contextmanager
def raw_peers(info: dict[str, Any]) -> Iterator[RawPeers]:
    peers = RawPeers(info)
    try:
        yield peers
    finally:
        peers.close()


def header(msg_type: str) -> dict[str, Any]:
    return {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "session": "raw",
        "username": "raw",
        "date": "2024-01-01T00:00:00Z",
        "version": "5.5",
    }


def signed_frames(key: bytes, msg_type: str, content: Any) -> tuple[str, list[bytes]]:
    """(msg_id, frames) of a correctly signed message, whatever ``content`` is."""
    head = header(msg_type)
    parts = [json.dumps(x).encode() for x in (head, {}, {}, content)]
    sig = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest().encode()
    return head["msg_id"], [b"<IDS|MSG>", sig, *parts]


def parse(frames: list[bytes]) -> dict[str, Any]:
    i = frames.index(b"<IDS|MSG>")
    header_, parent, _, content = (json.loads(f) for f in frames[i + 2 : i + 6])
    return {"header": header_, "parent_header": parent, "content": content}


def recv_for(sock: zmq.Socket[Any], msg_id: str, timeout: float) -> dict[str, Any] | None:
    """The next message on ``sock`` whose parent is ``msg_id``, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not sock.poll(int(left * 1000) + 1):
            continue
        msg = parse(sock.recv_multipart())
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg
    return None


def wait_idle(sock: zmq.Socket[Any], msg_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = recv_for(sock, msg_id, left)
        if msg is not None and msg["content"].get("execution_state") == "idle":
            return
    raise AssertionError(f"no idle status for {msg_id}")
