"""A Debug Adapter Protocol client: talks to debugpy's adapter over TCP from the control loop.

DAP messages are JSON bodies behind a ``Content-Length`` header.  Every request we forward
gets our own sequence number (we also send requests of our own, such as the
``configurationDone`` that completes an attach); the response is given back with the
frontend's number.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

__all__ = ["DapClient", "DapMessage", "dap_response"]

DapMessage = dict[str, Any]


def dap_response(
    request: DapMessage, body: dict[str, Any] | None = None, *, message: str | None = None
) -> DapMessage:
    """The response to ``request``: a success with ``body``, or a failure saying ``message``."""
    response: DapMessage = {
        "type": "response",
        "seq": 0,
        "request_seq": request.get("seq", 0),
        "success": message is None,
        "command": request.get("command", ""),
        "body": body or {},
    }
    if message is not None:
        response["message"] = message
    return response


log = logging.getLogger("async_kernel.debugger")

RESPONSE_TIMEOUT = 30.0  # seconds; debugpy answers in milliseconds unless it is wedged


class _Pending:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.response: DapMessage | None = None


class DapClient:
    """One connection to the adapter; ``on_event`` receives each DAP event (control loop)."""

    def __init__(self, on_event: Callable[[DapMessage], None]) -> None:
        self._on_event = on_event
        self._stream: anyio.abc.SocketStream | None = None
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        # Requests overlap (an attach waits for its response while our configurationDone
        # goes out): one write at a time, or the stream refuses the second
        # (BusyResourceError).
        self._writing = anyio.Lock()
        self.initialized = anyio.Event()
        self.attached = False  # this connection's session has attached (one attach each)

    @property
    def connected(self) -> bool:
        return self._stream is not None

    async def connect(self, host: str, port: int) -> None:
        with anyio.fail_after(RESPONSE_TIMEOUT):
            self._stream = await anyio.connect_tcp(host, port)
        self.initialized = anyio.Event()
        self.attached = False

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()
        for pending in self._pending.values():
            pending.done.set()
        self._pending.clear()

    async def request(self, message: DapMessage) -> DapMessage:
        """Send a request and wait (bounded) for its response, renumbered as it came."""
        stream = self._stream
        if stream is None:
            raise RuntimeError("the debugger is not connected")
        their_seq = message.get("seq", 0)
        self._seq += 1
        ours = self._seq
        pending = self._pending[ours] = _Pending()
        body = json.dumps({**message, "seq": ours}).encode("utf-8")
        try:
            async with self._writing:
                await stream.send(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            with anyio.fail_after(RESPONSE_TIMEOUT):
                await pending.done.wait()
        finally:
            self._pending.pop(ours, None)
        if pending.response is None:
            raise RuntimeError("the debugger connection closed")
        return {**pending.response, "request_seq": their_seq}

    async def read_forever(self) -> None:
        """Read messages until the adapter closes the connection."""
        buffer = b""
        stream = self._stream
        try:
            while stream is not None:
                while True:
                    message, buffer = _split_one(buffer)
                    if message is None:
                        break
                    self._dispatch(message)
                buffer += await stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            if self._stream is stream:
                await self.close()

    def _dispatch(self, message: DapMessage) -> None:
        kind = message.get("type")
        if kind == "response":
            pending = self._pending.get(message.get("request_seq", -1))
            if pending is not None:
                pending.response = message
                pending.done.set()
        elif kind == "event":
            if message.get("event") == "initialized":
                self.initialized.set()
            try:
                self._on_event(message)
            except Exception:
                log.exception("handling DAP event %s failed", message.get("event"))


def _split_one(buffer: bytes) -> tuple[DapMessage | None, bytes]:
    """The first whole message in ``buffer`` (or None) and the bytes after it."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None, buffer
    length = 0
    for line in buffer[:end].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    start = end + 4
    if len(buffer) < start + length:
        return None, buffer
    return json.loads(buffer[start : start + length]), buffer[start + length :]
