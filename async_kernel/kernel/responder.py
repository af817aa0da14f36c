"""Never deaf: a read-only request answered elsewhere when its lane's loop is blocked.

The requests that only read (:data:`ASKS`: kernel_info, comm_info, is_complete, history,
complete, inspect, connect, usage) are handled on their lane's loop, as everything else,
while that loop is free.  But a cell may block the loop (``time.sleep``, a long numpy call,
``input()``, a CPU loop).  So when such a request arrives while its lane may be blocked, the
router hands it to :meth:`Responder.route`, on the delivering thread (the transport's):

- the lane's thread is inside a cell's code right now, so the loop cannot take the request
  up before that code returns.  The request is claimed and answered at once, from a timer on
  the transport's thread: there if it is instant (:func:`is_instant`: no hand-over, which
  costs a switch interval while a cell holds the GIL), else on the *responder* thread.  The
  lane never sees it.
- otherwise the lane queues it and the loop gets :data:`ANSWER_ELSEWHERE_AFTER` to take it
  up; a request still unclaimed then goes to the responder.

The responder is a thread with a loop of its own (started on first need) that owns no user
state; it answers in the lane's namespace.  Each request is claimed once
(:meth:`.Request.claim`), so it is never answered twice.  Nothing those handlers do mutates
what the blocked cell owns (see docs/concurrency.md).
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..interrupt import interruption_point, thread_runs
from ..shell.interactive import AsyncShell
from ..shell.namespaces import Namespace, set_namespace
from ..toolkit.caller import Caller
from .replies import mark_answered_elsewhere

if TYPE_CHECKING:
    from ..parent import Request
    from ..settings import Backend
    from ..transport import Transport

__all__ = [
    "ANSWER_ELSEWHERE_AFTER",
    "ASKS",
    "INSTANT",
    "INSTANT_CODE_CHARS",
    "Answer",
    "Responder",
    "answer_in",
    "is_instant",
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

# An is_complete_request for code up to this long is instant too: parsing 200 characters
# takes about 0.4 ms, a 13 kB cell 15 ms (too long to hold the transport's thread).
INSTANT_CODE_CHARS = 200


def is_instant(request: Request) -> bool:
    """Whether ``request`` is answered on the delivering thread when its lane is blocked."""
    msg = request.msg
    if msg["msg_type"] == "is_complete_request":
        code = msg["content"].get("code")
        return isinstance(code, str) and len(code) <= INSTANT_CODE_CHARS
    return msg["msg_type"] in INSTANT


# How long a request of ASKS waits for a lane that may be blocked before the responder
# answers it.  A free loop takes a request up in well under a millisecond.
ANSWER_ELSEWHERE_AFTER = 0.004  # seconds
# How long a request that keeps its order (comm_info) waits for its turn on a loop busy with
# something other than a cell (a slow comm handler) before it is answered elsewhere anyway.
IN_ORDER_PATIENCE = 0.5  # seconds


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

    def route(
        self,
        request: Request,
        thread: threading.Thread,
        namespace: Namespace | None,
        queue: Callable[[Request], None],
        *,
        in_order: bool = False,
    ) -> None:
        """A request of ASKS for a lane that may be blocked (its thread ``thread``, its
        namespace ``namespace``): taken at once if that lane is in a cell's code, else put on
        the lane's ``queue`` and answered here if the lane has not taken it up in time.

        ``in_order`` (comm_info, which lists what the comm messages before it opened): taken
        up late only while the lane is in a cell's code; while the loop runs anything else (a
        slow comm handler), the request waits for its turn, up to IN_ORDER_PATIENCE.
        """
        if not self._take_if_blocked(request, thread, namespace):
            queue(request)
            patience = time.monotonic() + IN_ORDER_PATIENCE if in_order else None
            self._answer_if_late(request, namespace, thread, patience)

    def _take_if_blocked(
        self, request: Request, thread: threading.Thread, namespace: Namespace | None
    ) -> bool:
        """If the loop of ``thread`` (``request``'s lane, whose namespace is ``namespace``) is
        inside a cell's code now, claim ``request`` and answer it elsewhere at once: True,
        and the lane never sees it (queueing it would wake that loop for nothing)."""
        if not _runs_cell_code(thread.ident) or not request.claim():
            return False
        # From a timer, not inside deliver(), which runs under the transport's lock
        # (answering takes the output streams' locks, which a printing cell holds while it
        # asks for that one: the two threads would wait for each other).
        if is_instant(request):
            self._transport.call_later(0.0, functools.partial(self._answer_here, request))
        else:  # starting the responder waits for its thread: from a timer too
            answer = functools.partial(self._answer_on_responder, request, namespace)
            self._transport.call_later(0.0, answer)
        return True

    def _answer_if_late(
        self,
        request: Request,
        namespace: Namespace | None,
        thread: threading.Thread,
        patience: float | None,
    ) -> None:
        """Answer ``request`` (queued on the lane of ``thread``) on the responder if the
        lane's loop has not taken it up within :data:`ANSWER_ELSEWHERE_AFTER`; with a
        ``patience`` (a monotonic time), only once that thread is in a cell's code or the
        patience is over (till then, look again)."""
        late = functools.partial(self._answer_if_unclaimed, request, namespace, thread, patience)
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

    def _answer_if_unclaimed(
        self,
        request: Request,
        namespace: Namespace | None,
        thread: threading.Thread,
        patience: float | None,
    ) -> None:
        if request.claimed:
            return
        if (
            patience is not None
            and time.monotonic() < patience
            and not _runs_cell_code(thread.ident)
        ):
            self._answer_if_late(request, namespace, thread, patience)  # its turn is coming
            return
        if request.claim():
            self._answer_on_responder(request, namespace)

    def _answer_on_responder(self, request: Request, namespace: Namespace | None) -> None:
        """Answer a claimed request on the responder's loop."""
        self._get_caller().start_soon(_answer_off_lane, self._answer, request, namespace)

    def _get_caller(self) -> Caller:
        with self._lock:
            if self._caller is None:
                self._caller = Caller.start_new(self._backend, "responder")
            return self._caller


_CELL_RUNNER = AsyncShell.run_code.__code__


def _runs_cell_code(ident: int | None) -> bool:
    """Whether the thread ``ident`` is inside a cell's code now (not waiting in its loop).

    (See :func:`~async_kernel.interrupt.look_at_stacks` for how another thread's stack is
    looked at.)
    """
    return ident is not None and thread_runs(ident, _CELL_RUNNER)


async def answer_in(answer: Answer, request: Request, namespace: Namespace | None) -> None:
    """Answer ``request`` in ``namespace`` (on the responder, or a ``# thread`` cell's own)."""
    set_namespace(namespace)
    await answer(request)


async def _answer_off_lane(answer: Answer, request: Request, namespace: Namespace | None) -> None:
    """Answer ``request`` on the responder, for its blocked lane."""
    mark_answered_elsewhere()
    await answer_in(answer, request, namespace)


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
