"""A transport without sockets: messages arrive as dicts and leave through a callback.

For hosts that move messages themselves (Jupyterlite and Pyodide, an embedding application,
tests).  It starts no thread and imports neither pyzmq nor jupyter_client: everything runs on
the loop of the thread that serves the kernel.  Outgoing messages are handed to the host's
callback on that loop's thread, whichever thread produced them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import anyio

from ..toolkit.caller import Caller
from .base import Deliver, Transport
from .connection import ConnectionInfo
from .wire import Channel, Message, ProtocolError, assemble, dumps, loads

__all__ = ["CallbackTransport", "OnMessage", "message_from_host", "message_to_host"]

log = logging.getLogger("async_kernel.transport")

OnMessage = Callable[[Channel, Message], object]
"""The host's callback: (channel, message) for every outgoing message."""

_RECEIVING: tuple[Channel, ...] = ("shell", "control", "stdin")  # iopub only sends


def message_to_host(channel: Channel, msg: Message) -> Message:
    """A JSON-ready copy of ``msg`` (dates as ISO strings) with its channel and buffers."""
    return {
        "channel": channel,
        "header": loads(dumps(msg["header"])),
        "msg_id": msg["msg_id"],
        "msg_type": msg["msg_type"],
        "parent_header": loads(dumps(msg.get("parent_header") or {})),
        "metadata": loads(dumps(msg.get("metadata") or {})),
        "content": loads(dumps(msg.get("content") or {})),
        "buffers": list(msg.get("buffers") or []),
    }


def message_from_host(
    data: Message | str | bytes, channel: str | None = None
) -> tuple[Channel, Message]:
    """Check and normalise a message from the host (a dict or its JSON text)."""
    raw = _json_object(
        loads(data.encode() if isinstance(data, str) else data)
        if isinstance(data, str | bytes)
        else data
    )
    if raw is None:
        raise ProtocolError("a message must be a JSON object")
    wanted = channel or raw.get("channel") or "shell"
    chosen: Channel | None = next((name for name in _RECEIVING if name == wanted), None)
    if chosen is None:
        raise ProtocolError(f"cannot receive on channel {wanted!r}")
    header = _json_object(raw.get("header"))
    if header is None or not all(isinstance(header.get(k), str) for k in ("msg_id", "msg_type")):
        raise ProtocolError("header with string msg_id and msg_type required")
    content = _json_object(raw.get("content", {}))
    if content is None:
        raise ProtocolError("content is not a JSON object")
    msg = assemble(
        header,
        raw.get("parent_header"),
        raw.get("metadata"),
        content,
        list(raw.get("buffers") or []),
    )
    return chosen, msg


def _json_object(value: object) -> dict[str, Any] | None:
    """``value`` as a JSON object (the host's dicts have string keys); None if not a dict."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else None


class CallbackTransport(Transport):
    """Implements :class:`~.base.Transport` on the loop of the thread that serves the kernel.

    The host hands incoming messages to :meth:`receive` (those that come before the kernel
    has started are kept until it has) and gets outgoing ones through its callback.
    """

    info: ConnectionInfo | None = None  # no connection file: the host moves the messages

    def __init__(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self._caller: Caller | None = None  # the serving loop's, once started
        self._deliver: Deliver | None = None
        self._waiting: list[tuple[Channel, Message]] = []
        self._closed = False

    def start(self, deliver: Deliver) -> None:
        self._caller = Caller.current()  # start() is called on the serving loop
        self._deliver = deliver
        waiting, self._waiting = self._waiting, []
        for channel, msg in waiting:
            self._hand_in(channel, msg)

    def receive(self, msg: Message | str | bytes, channel: str | None = None) -> None:
        """Accept one message from the host: a dict or its JSON text (see
        :func:`message_from_host`); raises ProtocolError for one that is malformed."""
        chosen, checked = message_from_host(msg, channel)
        if self._deliver is None:
            self._waiting.append((chosen, checked))
        else:
            self._hand_in(chosen, checked)

    def _hand_in(self, channel: Channel, msg: Message) -> None:
        assert self._deliver is not None
        try:
            self._deliver(channel, [], msg)
        except Exception:
            log.exception("delivering %s failed", msg["msg_type"])

    def send(self, channel: Channel, msg: Message, identities: list[bytes] | None = None) -> None:
        caller = self._caller
        if caller is None or threading.current_thread() is caller.thread:
            self._hand_over(channel, msg)
        else:
            caller.schedule(self._hand_over, channel, msg)

    def _hand_over(self, channel: Channel, msg: Message) -> None:
        if self._closed:
            log.debug("dropped %s after close", msg["msg_type"])
            return
        try:
            self._on_message(channel, message_to_host(channel, msg))
        except Exception:
            log.exception("the host's callback failed on %s", msg["msg_type"])

    def wait_sent(self, timeout: float) -> bool:
        return True  # handed to the host as they are sent: nothing waits

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        async def later() -> None:
            await anyio.sleep(delay)
            callback()

        assert self._caller is not None, "call_later() before start()"
        self._caller.start_soon(later)

    async def read_while_free(self, channel: Channel, loop_is_free: Callable[[], bool]) -> None:
        return  # the host delivers every message itself

    def close(self) -> None:
        self._closed = True
