"""Asynchronous exceptions: raised in another thread, and delivered again when swallowed.

CPython lets one thread make another raise an exception (``PyThreadState_SetAsyncExc``),
and a signal handler raises in the main thread; either way the exception comes at the
thread's next check between bytecodes, in whatever Python code that is.  Some Python code
runs "on the side" of the code that was meant: a ``__del__`` method, a weakref or gc
callback (a collection can start at any allocation).  An exception leaving such code is not
propagated: Python reports it as unraisable and drops it.  A kernel's stop or interrupt
landing there would be lost, and the cell would run on.  :func:`redeliver_if_swallowed`
keeps that from happening.

The kernel's two senders use this module: :mod:`async_kernel.interrupt` (KeyboardInterrupt
for cells) and :mod:`async_kernel.toolkit.thread_cancel` (stopping a function on a worker
thread).  It imports nothing of the kernel's.
"""

from __future__ import annotations

import _thread
import contextvars
import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "can_raise_in_threads",
    "raise_in_thread",
    "redeliver_if_swallowed",
    "withdraw_from_thread",
]

_Api = tuple[Callable[[int, type[BaseException]], int], Callable[[int], int]]


def _load_api() -> _Api:
    """``raise_in(ident, exc_type)`` and ``withdraw(ident)`` over PyThreadState_SetAsyncExc.

    Our own prototypes (PYFUNCTYPE: the GIL stays held, as the call needs), so that the
    shared ``ctypes.pythonapi`` function object keeps whatever argtypes others gave it.
    Imported on first use: most kernels never need ctypes here (~0.3 MiB).
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


_api: list[_Api | None] = []  # filled on first use: [the API, or None if missing]
_lock = threading.Lock()


def _get_api() -> _Api | None:
    if _api:  # no lock once loaded: a thread closing a call may get a late exception here
        return _api[0]
    with _lock:
        if not _api:
            try:
                _api.append(_load_api())
            except (ImportError, AttributeError, OSError):  # no ctypes, or not CPython
                _api.append(None)
        return _api[0]


def can_raise_in_threads() -> bool:
    """Whether this interpreter lets one thread raise an exception in another."""
    return _get_api() is not None


def raise_in_thread(ident: int, exc_type: type[BaseException]) -> bool:
    """Have thread ``ident`` raise ``exc_type`` at its next check between bytecodes.

    False if it cannot be sent (no such thread, or no API).  A blocking C call (a sleep, a
    lock's acquire) sees it only once it returns to Python.
    """
    api = _get_api()
    return api is not None and api[0](ident, exc_type) == 1


def withdraw_from_thread(ident: int) -> None:
    """Forget an exception sent to thread ``ident`` and not raised yet (if any)."""
    api = _get_api()
    if api is not None:
        api[1](ident)


class _RedeliverSwallowed:
    """``sys.unraisablehook`` once :func:`redeliver_if_swallowed` has been called.

    It runs on the thread whose side code swallowed the exception, at once.  An exception
    of a registered type is not reported (it was the kernel's, not the program's error):
    the registered ``redeliver`` is called with that thread's ident, on a short-lived
    thread of its own (not on this one: an exception sent now would land in the hook
    itself), in a copy of this thread's context (so it can tell what the exception was
    for: a cell that has ended meanwhile must not pass it to the next).  Anything else
    goes to the hook there was before.
    """

    __slots__ = ("_previous",)

    def __init__(self, previous: Callable[[Any], object]) -> None:
        self._previous = previous

    def __call__(self, unraisable: Any) -> None:
        for exc_type, redeliver in _redelivery.items():
            if isinstance(unraisable.exc_value, exc_type):
                context = contextvars.copy_context()
                ident = threading.get_ident()
                _thread.start_new_thread(context.run, (functools.partial(redeliver, ident),))
                return
        self._previous(unraisable)


_redelivery: dict[type[BaseException], Callable[[int], object]] = {}


def redeliver_if_swallowed(
    exc_type: type[BaseException], redeliver: Callable[[int], object]
) -> None:
    """From now on, an ``exc_type`` swallowed as unraisable is not reported, and
    ``redeliver(ident)`` runs on a new thread to deliver it again to thread ``ident`` (if
    still wanted there: that is for ``redeliver`` to judge).

    Call it whenever such an exception is about to be sent: it puts the hook back should
    something have replaced ``sys.unraisablehook`` since (a test runner does).  Lock-free,
    so that a signal handler may call it: at worst two racing calls wrap the hook twice.
    Should side code take most of a thread's time, the exception delivered again may land
    in it again, and is delivered again: each round lets that code's one run end.
    """
    _redelivery[exc_type] = redeliver
    if not isinstance(sys.unraisablehook, _RedeliverSwallowed):
        sys.unraisablehook = _RedeliverSwallowed(sys.unraisablehook)
