"""Answering one request (busy, its handler's reply, idle) and sending what the kernel says.

:class:`Replies` holds the table of handlers (one per message type: :mod:`.handlers`,
:mod:`.subshells` and the debugger register theirs) and the transport.  Any thread may use
it: each lane's loop, control, the responder and ``# thread`` cells answer through it, each
in its own request's context (:mod:`~async_kernel.parent`), so concurrent answers never
stamp each other's messages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..parent import Request, current_request, request_context, set_request
from ..transport.wire import error_content, new_message
from .validation import invalid_content

if TYPE_CHECKING:
    from ..shell.iostream import OutStream
    from ..transport import Transport

__all__ = ["Handler", "Replies", "Reply", "mark_answered_elsewhere"]

log = logging.getLogger("async_kernel")

Reply = dict[str, Any]
Handler = Callable[[Request], Awaitable[Reply | None]]
"""Takes a request, returns its reply's content (None: no reply, or already sent)."""

_SEND_QUEUED_TIMEOUT = 0.005  # seconds a heavy handler waits for replies already made

_elsewhere: ContextVar[bool] = ContextVar("async_kernel_answered_elsewhere", default=False)


def mark_answered_elsewhere() -> None:
    """This task answers a request off its blocked lane (the responder's, see
    :mod:`.responder`).  Its answer then gives the GIL up as rarely as it can, as each time
    costs it a switch interval while a cell spins: no wait for replies queued before it (no
    burst is waiting on a blocked lane), and before idle only what was written through the
    streams is flushed, not fds 1 and 2 (their output belongs to the cell that blocks the
    lane, and looking at the pipes is a system call)."""
    _elsewhere.set(True)


class Replies:
    """The handlers by message type, and the kernel's way out: replies and iopub messages."""

    def __init__(self, transport: Transport, streams: Sequence[OutStream]) -> None:
        self._transport = transport
        self._streams = streams
        self._handlers: dict[str, Handler] = {}
        self._error_fields: dict[str, Callable[[], Reply]] = {}

    # -- the handlers ---------------------------------------------------------------------
    def register(
        self, msg_type: str, handler: Handler, *, error_fields: Callable[[], Reply] | None = None
    ) -> None:
        """Add or replace the handler of ``msg_type``.

        ``error_fields``: what an error reply of this type must carry beyond the error when
        the handler cannot make it (invalid content, a handler that raised): an
        execute_reply always has an ``execution_count``.
        """
        self._handlers[msg_type] = handler
        if error_fields is not None:
            self._error_fields[msg_type] = error_fields

    def handler_for(self, msg_type: str) -> Handler | None:
        return self._handlers.get(msg_type)

    async def answer(self, request: Request, *, flush: bool = True) -> None:
        """Answer one request in its own context: busy, reply, idle.

        ``flush=False`` for a request that prints nothing, answered on the transport's own
        thread: a flush may wait for another thread's flush, which may wait for room in the
        transport's queue, which only that thread makes.
        """
        set_request(request)
        msg_type = request.msg["msg_type"]
        self.publish_status("busy")
        try:
            handler = self._handlers.get(msg_type)
            if handler is None:
                log.warning("unknown message type %r on %s", msg_type, request.channel)
                unknown = f"unknown msg_type {msg_type!r}"
                self.reply(request, error_content("UnknownMessageType", unknown))
                return
            problem = invalid_content(msg_type, request.msg["content"])
            if problem is not None:
                log.warning("invalid %s on %s: %s", msg_type, request.channel, problem)
                self.reply(request, self._error(msg_type, "InvalidRequest", problem))
                return
            try:
                content = await handler(request)
            except Exception as err:
                log.exception("handling %s failed", msg_type)
                self.reply(request, self._error(msg_type, type(err).__name__, str(err)))
                return
            if content is not None:
                self.reply(request, content)
        finally:
            if flush:
                self.flush_streams(fds=not _elsewhere.get())
            self.publish_status("idle")

    def _error(self, msg_type: str, ename: str, evalue: str) -> Reply:
        """The content of an error reply to a ``msg_type`` its handler did not make."""
        fields = self._error_fields.get(msg_type)
        return {**(fields() if fields is not None else {}), **error_content(ename, evalue)}

    def answer_unrun(self, request: Request, content: Reply, *, busy: bool = True) -> None:
        """Answer a request that will never be handled, in its own context.

        ``busy=False`` when the request's handler has already published busy (and will
        publish idle).
        """
        with request_context(request):
            if busy:
                self.publish_status("busy")
            self.reply(request, content)
            if busy:
                self.publish_status("idle")

    # -- sending ----------------------------------------------------------------------------
    def reply(self, request: Request, content: Reply, metadata: Reply | None = None) -> None:
        """Send ``request``'s reply; messages that are not requests (comm_*) get none."""
        if not request.msg["msg_type"].endswith("_request"):
            return
        msg_type = request.msg["msg_type"].removesuffix("_request") + "_reply"
        msg = new_message(msg_type, content, request.msg, metadata=metadata)
        self._transport.send(request.channel, msg, request.identities)  # pyright: ignore[reportArgumentType]  # parent.py keeps the channel a str: Channel is a layer above it

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
    ) -> None:
        """Send on iopub with the current request as parent."""
        request = current_request()
        parent = request.msg if request is not None else None
        msg = new_message(msg_type, content, parent, metadata=metadata, buffers=buffers)
        self._transport.send("iopub", msg)

    def publish_status(self, state: str) -> None:
        self.publish("status", {"execution_state": state})

    def send_queued_first(self) -> None:
        """Let replies already made leave before work that holds the GIL for long.

        A completion keeps the GIL for tens of milliseconds; the transport's thread would get
        it back only at each switch interval, so a kernel_info answered just before it would
        reach the client several milliseconds late.  Not off a blocked lane
        (:func:`mark_answered_elsewhere`).
        """
        if not _elsewhere.get():
            self._transport.wait_sent(_SEND_QUEUED_TIMEOUT)

    def flush_streams(self, *, fds: bool = True) -> None:
        """Send the kernel's own buffered stdout/stderr now (with ``fds``, also what fds 1
        and 2 got so far).

        Ours, not whatever ``sys.stdout`` is: a cell may have replaced it, and our buffer
        must still go out before the output that follows it and before idle.
        """
        for stream in self._streams:
            stream.flush_all(fds=fds)
