"""A Jupyter kernel that executes nothing: the latency floor for a Python kernel on pyzmq.

It speaks just enough of the messaging protocol (signed wire format, status on IOPub, the
replies a client waits for) that a benchmark can time the transport and message handling a
Python kernel cannot avoid. No IPython, no event loop: one thread polls the sockets, one
echoes heartbeats.

Run: ``python bench/floor_kernel.py -f CONNECTION_FILE``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import zmq

DELIM = b"<IDS|MSG>"
PROTOCOL_VERSION = "5.5"

Msg = dict[str, Any]


class Wire:
    """Packs, signs, verifies and unpacks messages of one kernel session."""

    def __init__(self, key: bytes, scheme: str) -> None:
        if scheme not in ("hmac-sha256", ""):
            raise ValueError(f"unsupported signature scheme {scheme!r}")
        self.key = key
        self.session = os.urandom(16).hex()

    def sign(self, parts: list[bytes]) -> bytes:
        if not self.key:
            return b""
        mac = hmac.new(self.key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part)
        return mac.hexdigest().encode()

    def unpack(self, frames: list[bytes]) -> tuple[list[bytes], Msg] | None:
        """Split routing ids from the message; None if malformed or badly signed."""
        try:
            split = frames.index(DELIM)
        except ValueError:
            return None
        signature, *parts = frames[split + 1 : split + 6]
        if len(parts) != 4 or not hmac.compare_digest(signature, self.sign(parts)):
            return None
        header, parent, metadata, content = (orjson.loads(p) for p in parts)
        msg = {"header": header, "parent_header": parent, "metadata": metadata}
        msg["content"] = content
        return frames[:split], msg

    def pack(self, msg_type: str, content: Msg, parent: Msg) -> list[bytes]:
        header = {
            "msg_id": os.urandom(16).hex(),
            "msg_type": msg_type,
            "username": "floor",
            "session": self.session,
            "date": datetime.now(UTC).isoformat(),
            "version": PROTOCOL_VERSION,
        }
        parts = [orjson.dumps(header), orjson.dumps(parent), b"{}", orjson.dumps(content)]
        return [DELIM, self.sign(parts), *parts]


def heartbeat(ctx: zmq.Context[zmq.Socket[bytes]], address: str) -> None:
    """Echo heartbeat pings forever (runs in a daemon thread with its own socket)."""
    sock = ctx.socket(zmq.REP)
    sock.bind(address)
    while True:
        sock.send(sock.recv())


class FloorKernel:
    """Binds the five channels and answers requests without executing anything."""

    def __init__(self, conn: Msg) -> None:
        self.wire = Wire(conn["key"].encode(), conn.get("signature_scheme", "hmac-sha256"))
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        base = f"{conn['transport']}://{conn['ip']}"
        sep = ":" if conn["transport"] == "tcp" else "-"
        self.shell = self._bind(zmq.ROUTER, f"{base}{sep}{conn['shell_port']}")
        self.control = self._bind(zmq.ROUTER, f"{base}{sep}{conn['control_port']}")
        self.stdin = self._bind(zmq.ROUTER, f"{base}{sep}{conn['stdin_port']}")
        self.iopub = self._bind(zmq.PUB, f"{base}{sep}{conn['iopub_port']}")
        hb_address = f"{base}{sep}{conn['hb_port']}"
        threading.Thread(target=heartbeat, args=(self.ctx, hb_address), daemon=True).start()
        self.execution_count = 0
        self.running = True

    def _bind(self, kind: int, address: str) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(kind)
        sock.linger = 1000
        sock.bind(address)
        return sock

    def run(self) -> None:
        poller = zmq.Poller()
        for sock in (self.control, self.shell, self.stdin):
            poller.register(sock, zmq.POLLIN)
        while self.running:
            ready = dict(poller.poll())
            for sock in (self.control, self.shell):  # control first, as kernels should
                if sock in ready:
                    self._dispatch(sock, sock.recv_multipart())
            if self.stdin in ready:
                self.stdin.recv_multipart()  # never asked for input: drop
        self.ctx.destroy(linger=1000)

    def _dispatch(self, sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        unpacked = self.wire.unpack(frames)
        if unpacked is None:
            print("floor kernel: dropped malformed or badly signed message", file=sys.stderr)
            return
        idents, msg = unpacked
        parent = msg["header"]
        msg_type: str = parent["msg_type"]
        self._publish("status", {"execution_state": "busy"}, parent)
        content = self._handle(msg_type, msg["content"], parent)
        reply_type = msg_type.removesuffix("_request") + "_reply"
        sock.send_multipart([*idents, *self.wire.pack(reply_type, content, parent)])
        self._publish("status", {"execution_state": "idle"}, parent)

    def _handle(self, msg_type: str, content: Msg, parent: Msg) -> Msg:
        if msg_type == "kernel_info_request":
            return kernel_info()
        if msg_type == "execute_request":
            if not content.get("silent", False):
                self.execution_count += 1
            inp = {"code": content.get("code", ""), "execution_count": self.execution_count}
            self._publish("execute_input", inp, parent)
            count = self.execution_count
            return {"status": "ok", "execution_count": count, "user_expressions": {}}
        if msg_type == "comm_info_request":
            return {"status": "ok", "comms": {}}
        if msg_type == "shutdown_request":
            self.running = False
            return {"status": "ok", "restart": bool(content.get("restart", False))}
        return {"status": "error", "ename": "NotImplemented", "evalue": msg_type, "traceback": []}

    def _publish(self, msg_type: str, content: Msg, parent: Msg) -> None:
        topic = f"kernel.{self.wire.session}.{msg_type}".encode()
        self.iopub.send_multipart([topic, *self.wire.pack(msg_type, content, parent)])


def kernel_info() -> Msg:
    return {
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "floor",
        "implementation_version": "0.1",
        "language_info": {
            "name": "python",
            "version": platform.python_version(),
            "mimetype": "text/x-python",
            "file_extension": ".py",
        },
        "banner": "floor kernel: answers requests, executes nothing",
        "help_links": [],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--connection-file", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # nothing runs, so nothing to interrupt
    with open(args.connection_file, "rb") as f:
        conn = orjson.loads(f.read())
    FloorKernel(conn).run()


if __name__ == "__main__":
    main()
