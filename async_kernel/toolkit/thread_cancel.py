"""Stopping a plain function on a worker thread: an exception raised in it from outside.

A plain (sync) function that :meth:`Caller.to_thread` runs has no cancel scope; the only way
to stop it from another thread is CPython's ``PyThreadState_SetAsyncExc``, which makes that
thread raise an exception at its next check between bytecodes.  :class:`StoppableCall` sends
it only while the thread is inside that call's function, and never lets it land in the
pool's own code once the function has returned; the reasoning is in its docstring.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..async_exceptions import (
    can_raise_in_threads,
    raise_in_thread,
    redeliver_if_swallowed,
    withdraw_from_thread,
)
from ..interrupt import (
    THREAD_PATIENCE,
    THREAD_RETRY,
    block_sigint_in_this_thread,
    lands_safely_in_thread,
)

__all__ = ["CancelledInThread", "StoppableCall", "can_stop_threads"]


class CancelledInThread(BaseException):
    """Raised inside a plain function on a worker thread whose Pending was cancelled.

    A BaseException, as KeyboardInterrupt is, so that ``except Exception`` in the function
    does not swallow it; ``finally`` blocks and ``with`` exits run as usual.
    """


_open_calls: dict[int, StoppableCall] = {}  # thread ident -> the call open on that thread


def _stop_the_call_in(ident: int) -> None:
    block_sigint_in_this_thread()  # (a short-lived thread: SIGINT is the main thread's)
    call = _open_calls.get(ident)
    if call is not None:
        call._stop_again()  # pyright: ignore[reportPrivateUsage]


def can_stop_threads() -> bool:
    """Whether this interpreter lets a thread's Python code be stopped from outside."""
    return can_raise_in_threads()


class StoppableCall:
    """One call of a plain function on the current thread, which :meth:`stop` (from any
    other thread) interrupts by raising :class:`CancelledInThread` in it.

    The exception may only ever be raised in that function, never in the pool's code before
    or after it, nor in the next job the thread runs.  How that holds:

    * :meth:`stop` sends the exception only under ``_lock`` and only while ``_running`` is
      true, and at most once per call (``_sent``).  ``_running`` turns true in :meth:`call`
      just before the function is called, and false, under the same lock, as soon as it has
      returned or raised.  So the exception can be *sent* only inside that window.
    * CPython raises a sent exception at the thread's next eval-breaker check, which may
      come a little later than the send: inside the function (the aim), or in the few lines
      of :meth:`call` around it.  Those lines are written so that it cannot escape from
      them: the window opens inside a ``try`` whose ``finally`` closes it; closing is
      retried under ``except CancelledInThread`` until it has run whole (it is idempotent,
      and one send means at most one exception).  The closing step, after ``_running`` is
      false (no more sends), withdraws an exception sent but not yet raised
      (``PyThreadState_SetAsyncExc(ident, NULL)``).  Once it has run, nothing is pending
      for the thread and nothing more will be sent: the pool's own code after
      :meth:`call`, and the next job, are never hit.
    * If the exception was raised after the function returned (in the closing lines), it is
      absorbed there and the function's value stands.  If it was raised inside the
      function and escapes it, :meth:`call` lets it propagate: the caller of :meth:`call`
      treats it as "stopped".
    * :meth:`stop` called on the thread itself (the function cancelling its own Pending)
      sends nothing.
    * Nor does the exception land in kernel code the function called (a ``print``, half
      way through the output stream's bookkeeping): found there, the thread is looked at
      again until it has left it (:meth:`_send_when_safe`), as an interrupt for a cell on
      another thread is.
    * An exception raised in code whose exceptions Python swallows (a ``__del__``, a gc
      callback) is sent again while the call is open
      (:func:`~async_kernel.async_exceptions.redeliver_if_swallowed`).

    What cannot be stopped: code that does not return to the interpreter (a C call such as
    ``time.sleep(60)``, a blocking read, a long numpy operation) sees the exception only
    when it comes back to Python bytecode; code that catches BaseException and goes on
    ignores it.  As with KeyboardInterrupt, the exception can arrive between any two
    bytecodes of the function, including in library code it calls; ``with`` blocks and
    ``finally`` clauses still run.  Another party raising its own asynchronous exception
    in the same thread at the same moment (the kernel's interrupt of a threaded cell) may
    replace ours, or be withdrawn with it.
    """

    __slots__ = ("_ident", "_lock", "_running", "_sent", "_stopped", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident = 0
        self._running = False
        self._sent = False
        self._stopped = False  # stop() was called: the function should not start
        self._waiting = False  # a stop waits for the thread to leave kernel code

    def stop(self) -> bool:
        """Interrupt the function if it is running now (thread-safe); True if sent, or to be
        sent once the thread has left the kernel code the function called (a ``print``
        half way through the stream's bookkeeping: see :meth:`_send_when_safe`)."""
        can_stop = can_raise_in_threads()  # first use imports ctypes: not under the lock
        if can_stop:
            redeliver_if_swallowed(CancelledInThread, _stop_the_call_in)
        with self._lock:
            self._stopped = True
            if self._waiting:
                return True  # to be sent, once the thread has left kernel code
            if not can_stop or not self._running or self._sent:
                return False
            if self._ident == threading.get_ident():
                return False
            if lands_safely_in_thread(self._ident, _CALL_CODES):
                self._sent = raise_in_thread(self._ident, CancelledInThread)
                return self._sent
            self._waiting = True
        threading.Thread(
            target=self._send_when_safe, name="async-kernel-stop-call", daemon=True
        ).start()
        return True

    def _send_when_safe(self) -> None:
        """Look again every THREAD_RETRY seconds, and send the stop once the thread has left
        kernel code (or after THREAD_PATIENCE, wherever it lands: a call that cannot be
        stopped would be worse than a bookkeeping step cut short); nothing once the call has
        returned.  The same rule as an interrupt's for a cell on another thread."""
        block_sigint_in_this_thread()
        deadline = time.monotonic() + THREAD_PATIENCE
        while True:
            time.sleep(THREAD_RETRY)
            with self._lock:
                if not self._running:
                    self._waiting = False
                    return
                safe = lands_safely_in_thread(self._ident, _CALL_CODES)
                if safe or time.monotonic() >= deadline:
                    self._waiting = False
                    self._sent = raise_in_thread(self._ident, CancelledInThread)
                    return

    def _stop_again(self) -> None:
        """Send the stop again: the last one was swallowed (called on another thread)."""
        with self._lock:
            if self._running and self._sent:
                raise_in_thread(self._ident, CancelledInThread)

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """``fn(*args)`` on this thread, stoppable by :meth:`stop` while it runs.

        Raises :class:`CancelledInThread` if it was stopped, before it started or inside
        it; otherwise returns or raises as ``fn`` does.
        """
        try:
            self._open()
            return fn(*args)
        finally:
            while True:  # until the window is closed: see the class docstring
                try:
                    self._close()
                    break
                except CancelledInThread:
                    continue

    def _open(self) -> None:
        with self._lock:
            if self._stopped:
                raise CancelledInThread
            self._ident = threading.get_ident()
            self._running = True
            _open_calls[self._ident] = self

    def _close(self) -> None:
        with self._lock:
            self._running = False
            sent = self._sent
            if _open_calls.get(self._ident) is self:
                del _open_calls[self._ident]
        if sent:
            withdraw_from_thread(self._ident)


# Where a stop may land: the user's function, or a library it called, under this frame.
_CALL_CODES = (StoppableCall.call.__code__,)
