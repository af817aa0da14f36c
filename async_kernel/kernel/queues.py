"""An ordered queue of requests, drained by one task on the loop that owns it.

Requests are put from any thread (the transport's) and handled one at a time in arrival
order.  Order matters beyond executes: a comm_open must be handled before the comm_msg that
follows it, and trio runs a batch of new tasks in no fixed order, so "a task per message"
would not keep it.

Every request is claimed before it is handled (:meth:`.Request.claim`), so a request that
someone else took meanwhile (the router's responder, or :func:`.router.process_events` on a
blocked main thread) is skipped, not handled twice.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

log = logging.getLogger("async_kernel")

if TYPE_CHECKING:
    from ..interrupt import Latch
    from ..parent import Request
    from ..toolkit.caller import Caller

__all__ = ["RequestQueue"]


class RequestQueue:
    """FIFO of requests with a single consumer task; ``put`` is safe from any thread."""

    def __init__(
        self,
        caller: Caller,
        handle: Callable[[Request], Awaitable[None]],
        *,
        gate: Callable[[Request], Awaitable[None]] | None = None,
    ) -> None:
        self._caller = caller
        self._handle = handle
        # Awaited for the first request before it is taken: the request stays in the queue
        # meanwhile, where a blocked cell's take_one still finds it.
        self._gate = gate
        self._queue: deque[Request] = deque()
        # The request taken off the queue and being handled (set before it leaves the
        # queue: a signal handler looking at the two between bytecodes never misses it).
        self.current: Request | None = None
        self._wakeup: anyio.Event | None = None
        self._idle = False
        # Set while a thread that cannot run the consumer (a blocked cell) waits to take
        # requests itself (take_one): put() wakes it.
        self.waiter: Latch | None = None

    def start(self) -> None:
        self._caller.start_soon(self._run)

    def put(self, request: Request) -> None:
        # Append first, then look at the flags: a consumer sets its flag before it looks
        # at the queue, so one of the two always sees the other's write.
        self._queue.append(request)
        if self._idle:
            if self._caller.in_loop():  # the loop read the request itself (the shell reader)
                self._wake()
            else:
                self._caller.schedule(self._wake)
        waiter = self.waiter
        if waiter is not None:
            waiter.set()

    def take_all(self) -> list[Request]:
        """Remove and return (claimed) everything still waiting that nobody has taken."""
        taken: list[Request] = []
        while self._queue:
            request = self._queue.popleft()
            if request.claim():
                taken.append(request)
        return taken

    def waiting(self) -> list[Request]:
        """What waits in the queue now (any thread: a copy taken in one step, nothing
        removed; a request in it may be claimed meanwhile by whoever takes it)."""
        return list(self._queue.copy())

    def first_seq(self) -> int | None:
        """The arrival number of the first request waiting, if any."""
        queue = self._queue
        return queue[0].seq if queue else None

    def take_one(self, before: int | None = None) -> Request | None:
        """Remove and return (claimed) the first request nobody has taken, if any (and if
        it arrived before request number ``before``)."""
        while self._queue:
            if before is not None and self._queue[0].seq >= before:
                return None
            request = self._queue.popleft()
            if request.claim():
                return request
        return None

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _run(self) -> None:
        queue = self._queue
        while True:
            while queue:
                if self._gate is not None:
                    head = queue[0]
                    await self._gate(head)
                    if not queue or queue[0] is not head:
                        continue  # taken meanwhile (take_one): the next one passes the gate
                self.current = request = queue[0]
                queue.popleft()
                try:
                    if not request.claim():
                        continue
                    await self._handle(request)
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException:  # a stray KeyboardInterrupt must not end the queue
                    log.exception("handling %s failed", request.msg.get("msg_type"))
                finally:
                    self.current = None
            self._wakeup = anyio.Event()
            self._idle = True
            if not queue:
                await self._wakeup.wait()
            self._idle = False
