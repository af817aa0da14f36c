"""Never deaf: a read-only request answered elsewhere when its lane's loop is blocked.

The requests that only read (:data:`ASKS`: kernel_info, comm_info, is_complete, history,
complete, inspect, connect, usage) are handled on their lane's loop, as everything else,
while that loop is free.  But a cell may block the loop (``time.sleep``, a long numpy call,
``input()``, a CPU loop).  So when such a request arrives while its lane may be blocked, the
router asks :meth:`Responder.answer_if_late`, on the delivering thread (the transport's):

- the lane's thread is inside a cell's code right now: the loop cannot take the request up
  before that code returns, so it is answered at once, from a timer on the transport's
  thread: there for :data:`INSTANT` requests (no hand-over, which costs a switch interval
  while a cell holds the GIL), else on the *responder* thread;
- otherwise a timer on the transport's thread gives the loop :data:`ANSWER_ELSEWHERE_AFTER`;
  a request still unclaimed then goes to the responder.

The responder is a thread with a loop of its own (started on first need) that owns no user
state; it answers in the lane's namespace.  Each request is claimed once
(:meth:`.Request.claim`), so it is never answered twice.  Nothing those handlers do mutates
what the blocked cell owns (see docs/concurrency.md).
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..interrupt import interruption_point, thread_frames
from ..shell.interactive import AsyncShell
from ..shell.namespaces import Namespace, set_namespace
from ..toolkit.caller import Caller

if TYPE_CHECKING:
    from ..parent import Request
    from ..settings import Backend
    from ..transport import Transport

__all__ = [
    "ANSWER_ELSEWHERE_AFTER",
    "ASKS",
    "INSTANT",
    "Answer",
    "Responder",
    "answer_in",
    "run_to_end",
]

ASKS = frozenset(
    {
        "kernel_info_request",
        "comm_info_request",
        "is_complete_request",
        "history_request",
        "complete_request",
        "inspect_request",
        "connect_request",
        "usage_request",
    }
)
"""Shell requests that only read: answered elsewhere when their lane's loop is blocked."""

INSTANT = frozenset({"kernel_info_request", "comm_info_request", "connect_request"})
"""Of ASKS, those quick enough (well under a millisecond) to answer on the delivering thread."""

# How long a request of ASKS waits for a lane that may be blocked before the responder
# answers it.  A free loop takes a request up in well under a millisecond.
ANSWER_ELSEWHERE_AFTER = 0.004  # seconds


class Answer(Protocol):
    """Answers one request: busy, reply, idle (:meth:`.Replies.answer`)."""

    def __call__(self, request: Request, *, flush: bool = True) -> Coroutine[Any, Any, None]: ...


class Responder:
    """Answers a blocked lane's read-only requests (see the module's docstring)."""

    def __init__(self, answer: Answer, transport: Transport, backend: Backend) -> None:
        self._answer = answer
        self._transport = transport
        self._backend: Backend = backend
        self._caller: Caller | None = None
        self._lock = threading.Lock()

    def answer_if_late(
        self, request: Request, thread: threading.Thread, namespace: Namespace | None
    ) -> None:
        """Answer ``request`` here or on the responder if the loop of ``thread`` (its lane's,
        whose namespace is ``namespace``) has not taken it up in time."""
        late = functools.partial(self._answer_if_unclaimed, request, namespace)
        if _runs_cell_code(thread.ident):
            if request.msg["msg_type"] in INSTANT and request.claim():
                # As a timer, not inside deliver(), which runs under the transport's lock
                # (answering takes the output streams' locks, which a printing cell holds
                # while it asks for that one: the two threads would wait for each other).
                self._transport.call_later(0.0, functools.partial(self._answer_here, request))
            else:  # to the responder, from a timer too (starting it waits for its thread)
                self._transport.call_later(0.0, late)
            return
        self._transport.call_later(ANSWER_ELSEWHERE_AFTER, late)

    def stop(self) -> Caller | None:
        """Stop the responder's loop (shutdown); returns its caller to join, if it ran."""
        with self._lock:
            caller, self._caller = self._caller, None
        if caller is not None:
            caller.stop()
        return caller

    def _answer_here(self, request: Request) -> None:
        """Answer a claimed request of INSTANT on this thread (its handler never suspends)."""
        run_to_end(contextvars.copy_context(), self._answer(request, flush=False))

    def _answer_if_unclaimed(self, request: Request, namespace: Namespace | None) -> None:
        if request.claim():
            self._get_caller().start_soon(answer_in, self._answer, request, namespace)

    def _get_caller(self) -> Caller:
        with self._lock:
            if self._caller is None:
                self._caller = Caller.start_new(self._backend, "responder")
            return self._caller


_CELL_RUNNER = AsyncShell.run_code.__code__


def _runs_cell_code(ident: int | None) -> bool:
    """Whether the thread ``ident`` is inside a cell's code now (not waiting in its loop).

    ``sys._current_frames`` is CPython's documented way to see another thread's stack.
    """
    frame = thread_frames().get(ident) if ident is not None else None
    while frame is not None:
        if frame.f_code is _CELL_RUNNER:
            return True
        frame = frame.f_back
    return False


async def answer_in(answer: Answer, request: Request, namespace: Namespace | None) -> None:
    """Answer ``request`` in ``namespace`` (on the responder, or a ``# thread`` cell's own)."""
    set_namespace(namespace)
    await answer(request)


@interruption_point
def run_to_end(context: contextvars.Context, coro: Coroutine[Any, Any, None]) -> None:
    """Run a handler's coroutine that never suspends (an instant ask's, a comm message's
    inside process_events()), in ``context``."""
    try:
        context.run(coro.send, None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("a handler suspended where it must run to its end at once")
