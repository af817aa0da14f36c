"""An ordered queue of requests, drained by one task on the loop that owns it.

Requests are put from any thread (the transport's) and handled one at a time in arrival
order.  Order matters beyond executes: a comm_open must be handled before the comm_msg that
follows it, and trio runs a batch of new tasks in no fixed order, so "a task per message"
would not keep it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

log = logging.getLogger("async_kernel")

if TYPE_CHECKING:
    from .caller import Caller
    from .parent import Request

__all__ = ["RequestQueue"]


class RequestQueue:
    """FIFO of requests with a single consumer task; ``put`` is safe from any thread."""

    def __init__(self, caller: Caller, handle: Callable[[Request], Awaitable[None]]) -> None:
        self._caller = caller
        self._handle = handle
        self._queue: deque[Request] = deque()
        self._wakeup: anyio.Event | None = None
        self._idle = False

    def start(self) -> None:
        self._caller.start_soon(self._run)

    def put(self, request: Request) -> None:
        # Append first, then look at the flag: the consumer sets the flag before it looks
        # at the queue, so one of the two always sees the other's write.
        self._queue.append(request)
        if self._idle:
            if self._caller.in_loop():  # the loop read the request itself (the shell reader)
                self._wake()
            else:
                self._caller.schedule(self._wake)

    def take_all(self) -> list[Request]:
        """Remove and return everything still waiting."""
        taken: list[Request] = []
        while self._queue:
            taken.append(self._queue.popleft())
        return taken

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _run(self) -> None:
        queue = self._queue
        while True:
            while queue:
                request = queue.popleft()
                try:
                    await self._handle(request)
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException:  # a stray KeyboardInterrupt must not end the queue
                    log.exception("handling %s failed", request.msg.get("msg_type"))
            self._wakeup = anyio.Event()
            self._idle = True
            if not queue:
                await self._wakeup.wait()
            self._idle = False
