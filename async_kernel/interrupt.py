"""Interrupting cells: KeyboardInterrupt for blocking code, cancellation for awaiting code.

SIGINT always lands on the main thread (our own threads block it).  The handler looks at
the interrupted stack: if a cell's code is on it, the cell is running Python right now and
gets KeyboardInterrupt at once; otherwise the loop is waiting, so the cells that await are
cancelled (and report KeyboardInterrupt themselves).  An interrupt_request simply sends
SIGINT to the main thread, so both interrupt modes share one path and one latency.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from types import CodeType, FrameType

__all__ = [
    "block_sigint_in_this_thread",
    "install_sigint_handler",
    "interrupt_cells_on_other_threads",
    "interrupt_main_thread",
    "sigint_blocked",
]


def block_sigint_in_this_thread() -> None:
    """Keep SIGINT for the main thread; call at the start of every kernel-owned thread."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@contextmanager
def sigint_blocked() -> Generator[None]:
    """Block SIGINT in this thread for the block: threads started inside inherit the block.

    Wrap code that starts threads we do not own (Tk's notifier, Qt's X11 reader, IPython's
    history writer): a process-directed SIGINT could otherwise land on one of them, and a
    main thread asleep in ``time.sleep`` would never be woken to interrupt the cell.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stack_contains(frame: FrameType | None, code: CodeType) -> bool:
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def install_sigint_handler(cell_code: CodeType, cancel_awaiting: Callable[[], object]) -> None:
    """On SIGINT: raise in running cell code (``cell_code`` on the stack), else cancel awaits.

    ``cancel_awaiting`` is called from the signal handler and must only schedule work in a
    thread-safe, reentrant way (a caller's ``call_soon``).
    """

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        if _stack_contains(frame, cell_code):
            raise KeyboardInterrupt
        cancel_awaiting()

    signal.signal(signal.SIGINT, on_sigint)


def interrupt_main_thread() -> None:
    """Deliver SIGINT to the main thread now, waking it from any blocking system call."""
    main = threading.main_thread().ident
    if main is None:  # pragma: no cover - the main thread always has an ident
        return
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(main, signal.SIGINT)
    else:  # Windows: no per-thread signals; raise KeyboardInterrupt in the main thread
        import _thread

        _thread.interrupt_main(signal.SIGINT)


def interrupt_cells_on_other_threads(cell_code: CodeType) -> int:
    """Raise KeyboardInterrupt in every thread but the main one that runs a cell right now.

    Signals reach only the main thread; a subshell's or a ``# thread`` cell's Python code is
    stopped through ``PyThreadState_SetAsyncExc`` instead, which takes effect at its next
    bytecode: a busy loop stops at once, a blocking call (``time.sleep``) returns first.
    Returns how many threads were asked.
    """
    main = threading.main_thread().ident
    asked = 0
    for ident, frame in sys._current_frames().items():  # pyright: ignore[reportPrivateUsage]
        if ident != main and _stack_contains(frame, cell_code):
            import ctypes  # here, not at start-up: most kernels never need it (~0.3 MiB)

            set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
            asked += set_async_exc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
    return asked
