"""Stopping a plain function on a worker thread: an exception raised in it from outside.

A plain (sync) function that :meth:`Caller.to_thread` runs has no cancel scope; the only way
to stop it from another thread is CPython's ``PyThreadState_SetAsyncExc``, which makes that
thread raise an exception at its next check between bytecodes.  :class:`StoppableCall` sends
it only while the thread is inside that call's function, and never lets it land in the
pool's own code once the function has returned; the reasoning is in its docstring.
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["CancelledInThread", "StoppableCall", "can_stop_threads"]


class CancelledInThread(BaseException):
    """Raised inside a plain function on a worker thread whose Pending was cancelled.

    A BaseException, as KeyboardInterrupt is, so that ``except Exception`` in the function
    does not swallow it; ``finally`` blocks and ``with`` exits run as usual.
    """


_AsyncExcApi = tuple[Callable[[int, type[BaseException]], int], Callable[[int], int]]


def _async_exc_api() -> _AsyncExcApi:
    """``raise_in(ident, exc_type)`` and ``withdraw(ident)`` over PyThreadState_SetAsyncExc.

    Our own prototypes (PYFUNCTYPE: the GIL stays held, as the call needs), so that the
    shared ``ctypes.pythonapi`` function object keeps whatever argtypes others gave it.
    """
    import ctypes

    name = ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
    set_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(name)
    clear = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(name)

    def raise_in(ident: int, exc_type: type[BaseException]) -> int:
        return int(set_exc(ident, exc_type))

    def withdraw(ident: int) -> int:
        return int(clear(ident, None))  # NULL: forget an exception not raised yet

    return raise_in, withdraw


_api: list[_AsyncExcApi | None] = []  # filled on first use: [the API, or None if missing]
_api_lock = threading.Lock()


def _get_api() -> _AsyncExcApi | None:
    with _api_lock:
        if not _api:
            try:
                _api.append(_async_exc_api())
            except (ImportError, AttributeError, OSError):  # no ctypes, or not CPython
                _api.append(None)
        return _api[0]


class _RedeliverSwallowedStops:
    """``sys.unraisablehook`` while stops are sent: a :class:`CancelledInThread` that landed
    where Python swallows exceptions is sent again; anything else goes to the hook before.

    CPython raises an asynchronous exception at the thread's next check between bytecodes,
    whatever Python code that is, and some code runs "on the side" of the function: a
    ``__del__`` method, a weakref or gc callback (a garbage collection can start at any
    allocation).  An exception leaving such code is not propagated but reported as
    unraisable and dropped, so the stop would be lost and the function run on.  This hook
    runs on that thread, at once: if the thread's call is still open, a short-lived thread
    sends the stop again (not this one: the exception would land in the hook itself),
    under the call's lock as :meth:`StoppableCall.stop` does.  The report itself is
    dropped: the exception was ours, not the program's error.
    """

    __slots__ = ("_previous",)

    def __init__(self, previous: Callable[[Any], object]) -> None:
        self._previous = previous

    def __call__(self, unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, CancelledInThread):
            self._previous(unraisable)
            return
        call = _open_calls.get(threading.get_ident())
        if call is not None:
            _thread.start_new_thread(call._stop_again, ())  # pyright: ignore[reportPrivateUsage]


_open_calls: dict[int, StoppableCall] = {}  # thread ident -> the call open on that thread


def _watch_for_swallowed_stops() -> None:
    """Make :class:`_RedeliverSwallowedStops` the unraisable hook (again, if replaced)."""
    with _api_lock:
        if not isinstance(sys.unraisablehook, _RedeliverSwallowedStops):
            sys.unraisablehook = _RedeliverSwallowedStops(sys.unraisablehook)


def can_stop_threads() -> bool:
    """Whether this interpreter lets a thread's Python code be stopped from outside."""
    return _get_api() is not None


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
    * An exception raised in code whose exceptions Python swallows (a ``__del__``, a gc
      callback) is sent again while the call is open: see :class:`_RedeliverSwallowedStops`.

    What cannot be stopped: code that does not return to the interpreter (a C call such as
    ``time.sleep(60)``, a blocking read, a long numpy operation) sees the exception only
    when it comes back to Python bytecode; code that catches BaseException and goes on
    ignores it.  As with KeyboardInterrupt, the exception can arrive between any two
    bytecodes of the function, including in library code it calls; ``with`` blocks and
    ``finally`` clauses still run.  Another party raising its own asynchronous exception
    in the same thread at the same moment (the kernel's interrupt of a threaded cell) may
    replace ours, or be withdrawn with it.
    """

    __slots__ = ("_ident", "_lock", "_running", "_sent", "_stopped")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident = 0
        self._running = False
        self._sent = False
        self._stopped = False  # stop() was called: the function should not start

    def stop(self) -> bool:
        """Interrupt the function if it is running now (thread-safe); True if sent."""
        api = _get_api()  # first use imports ctypes: not under the lock
        if api is not None:
            _watch_for_swallowed_stops()
        with self._lock:
            self._stopped = True
            if api is None or not self._running or self._sent:
                return False
            if self._ident == threading.get_ident():
                return False
            self._sent = api[0](self._ident, CancelledInThread) == 1
            return self._sent

    def _stop_again(self) -> None:
        """Send the stop again: the last one was swallowed (on a thread of its own)."""
        api = _get_api()
        with self._lock:
            if api is not None and self._running and self._sent:
                api[0](self._ident, CancelledInThread)

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
            api = _get_api()
            if api is not None:
                api[1](self._ident)
