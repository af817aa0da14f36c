"""``input()`` and ``getpass()`` over the stdin channel.

The request goes to the client that sent the execute_request; the reply comes back on the
transport's thread and wakes the waiting code.  ``input()`` does not stop the world: while
it waits on the main thread, the comm messages that wait for the main loop run right there
(as :func:`.router.process_events` lets them), and the router answers the shell's read-only
requests elsewhere.  The wait is a :class:`.Latch` wait, so an interrupt ends it with
KeyboardInterrupt within a slice, even one that arrives just as the wait begins.
"""

from __future__ import annotations

import builtins
import getpass
import logging
import threading
from typing import TYPE_CHECKING, Any

from IPython.core.error import StdinNotImplementedError

from ..interrupt import Latch, cell_facing
from ..parent import current_request
from ..transport.wire import Message, new_message

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..transport import Transport

__all__ = ["StdinBridge"]

log = logging.getLogger("async_kernel")


class _Pending:
    def __init__(self, parent_id: str) -> None:
        self.parent_id = parent_id
        self.answered = False
        self.wakeup = Latch()
        self.value = ""


class StdinBridge:
    """Asks the client for a line of input and waits for its input_reply."""

    def __init__(
        self,
        transport: Transport,
        flush_output: Callable[[], None],
        wait_here: Callable[[Latch], None] | None = None,
    ) -> None:
        self._transport = transport
        self._flush_output = flush_output
        # How to wait for a reply on this thread: one slice of letting comm messages
        # through until the latch is set (the router's, on the main thread).
        self._wait_here = wait_here
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []

    def install(self) -> None:
        builtins.input = self.input
        getpass.getpass = self.getpass

    @cell_facing
    def input(self, prompt: object = "") -> str:
        return self.ask(str(prompt), password=False)

    @cell_facing
    def getpass(self, prompt: str = "Password: ", stream: Any = None) -> str:
        return self.ask(prompt, password=True)

    def ask(self, prompt: str, *, password: bool) -> str:
        request = current_request()
        if request is None or not request.allow_stdin:
            raise StdinNotImplementedError(
                "input() was called, but this frontend does not support input requests "
                "(the execute_request did not set allow_stdin)."
            )
        self._flush_output()  # the prompt's preceding output must arrive first
        msg = new_message("input_request", {"prompt": prompt, "password": password}, request.msg)
        pending = _Pending(msg["msg_id"])
        try:  # listed inside: an asynchronous exception must not leave a stale question
            with self._lock:
                self._pending.append(pending)
            self._transport.send("stdin", msg, request.identities)
            while not pending.answered:
                if self._wait_here is not None:
                    self._wait_here(pending.wakeup)
                else:
                    pending.wakeup.wait_for_cell()
        finally:
            with self._lock:
                if pending in self._pending:
                    self._pending.remove(pending)
        return pending.value

    def on_reply(self, msg: Message) -> None:
        """Accept an input_reply (any thread); only ``content.value`` is required."""
        value = msg["content"].get("value", "")
        parent_id = msg.get("parent_header", {}).get("msg_id")
        with self._lock:
            if not self._pending:
                return
            if parent_id:
                # A reply to an input() that has ended (interrupted just as it was answered)
                # must not answer another client's: ignore it.
                pending = next((p for p in self._pending if p.parent_id == parent_id), None)
                if pending is None:
                    log.info("ignored an input_reply for an input() that has ended")
                    return
            else:  # clients may leave parent_header empty: the oldest question
                pending = self._pending[0]
            self._pending.remove(pending)
        pending.value = value if isinstance(value, str) else str(value)
        pending.answered = True
        pending.wakeup.set()
