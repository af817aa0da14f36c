"""Interrupting cells: KeyboardInterrupt for blocking code, cancellation for awaiting code.

SIGINT always lands on the main thread (our own threads block it).  The handler looks at
the interrupted stack: if a cell's code is on it, the cell is running Python right now and
gets KeyboardInterrupt; otherwise the loop is waiting, so the cells that await are
cancelled (and report KeyboardInterrupt themselves).  An interrupt_request simply sends
SIGINT to the main thread, so both interrupt modes share one path and one latency.

An interrupt never breaks the kernel's own bookkeeping.  A cell calls kernel code (print
goes through our stream, then our transport), and a KeyboardInterrupt raised between two of
its bytecodes could leave a flag set for ever (a wake-up pending, a flush pending).  So the
handler raises only where the interrupted code is the user's (or a library's it called), or
at one of the kernel's *interruption points*: the waits it does on a cell's behalf (``input()``,
:func:`.process_events`) and the places where it calls back into user code.  Interrupted in
other kernel code, it is raised in the frame that code returns to, at its next line (through
that frame's tracer, as pdb stops in a caller).

Every wait the main thread does on a cell's behalf is a :class:`Latch` wait, in slices: a
signal that arrives just before a blocking C wait begins is otherwise deferred by CPython
until that wait ends, and the cell would look hung.

An interrupt raised in code that runs on the side of a cell (a ``__del__``, a weakref or gc
callback), where Python swallows exceptions, is delivered again
(:mod:`async_kernel.async_exceptions`).
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import gc
import inspect
import os
import signal
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterable
from contextlib import contextmanager
from types import CodeType, FrameType, TracebackType
from typing import Protocol, TypeVar, cast

import anyio

from .async_exceptions import raise_in_thread, redeliver_if_swallowed
from .cells import Cells, RunningCell, Scope, owed_anywhere

__all__ = [
    "DEFER_PATIENCE",
    "Latch",
    "MainThreadCells",
    "WaitInterrupted",
    "block_sigint_in_this_thread",
    "cell_facing",
    "deliver_owed_interrupt",
    "install_sigint_handler",
    "interrupt_cells_on_other_threads",
    "interrupt_main_thread",
    "interrupt_main_thread_surely",
    "interruption_point",
    "lands_safely_in_thread",
    "look_at_stacks",
    "sigint_blocked",
    "thread_runs",
    "users_frames",
]

# The longest a kernel wait on a cell's behalf sleeps without letting a pending signal
# handler run (see the module's docstring).
WAIT_SLICE = 0.05  # seconds
# How long an interrupt deferred out of kernel code waits for that code to return before it
# is delivered again (see _Deferred), and how often at most an interrupt still owed on the
# main thread is looked at again (install_sigint_handler).
REDELIVER_AFTER = 0.05  # seconds
LOOK_AGAIN_MAX = 1.0  # seconds

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_LIBRARY_DIRS = tuple(
    {os.path.join(sysconfig.get_path(name), "") for name in ("stdlib", "platstdlib", "purelib")}
)
_points: set[CodeType] = set()


F = TypeVar("F", bound=Callable[..., object])


def interruption_point(fn: F) -> F:
    """Mark a kernel function where a KeyboardInterrupt may land (a wait on a cell's behalf,
    a call back into user code): the interrupt handler raises there instead of deferring."""
    _points.add(fn.__code__)
    return fn


class Latch:
    """A one-slot wake-up a thread waits on; safe against an interrupt striking the waiter.

    Built on a raw lock: a KeyboardInterrupt raised in a wait leaves nothing half
    updated (``threading.Event`` and ``Condition`` can be left broken that way).  Setting it
    twice before a wait is the same as once.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        """Wake the waiter, or the next wait (any thread, also a signal handler)."""
        with contextlib.suppress(RuntimeError):  # already set
            self._lock.release()

    def wait(self, timeout: float) -> bool:
        """Wait until set (and unset it), at most ``timeout`` seconds; True if it was set.

        For the kernel's own waits (a sender waiting for room in the outbox): not an
        interruption point, so an interrupt that strikes it waits for the kernel code to
        return, as anywhere in kernel code.
        """
        return self._lock.acquire(timeout=timeout)

    @interruption_point
    def wait_for_cell(self, timeout: float | None = None) -> bool:
        """Wait until set (and unset it), at most ``timeout`` seconds; True if it was set.
        Made for a cell (``input()``, ``process_events``): an interruption point, where an
        interrupt raises :class:`WaitInterrupted`, for the kernel function the cell called
        to turn into a KeyboardInterrupt of its own.

        Waits in slices of WAIT_SLICE, so an interrupt is never held up longer than that.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                left = WAIT_SLICE
                if deadline is not None:
                    left = min(WAIT_SLICE, deadline - time.monotonic())
                if left <= 0:
                    return self._lock.acquire(False)
                if self._lock.acquire(timeout=left):
                    return True
        except KeyboardInterrupt:
            raise WaitInterrupted from None


class WaitInterrupted(KeyboardInterrupt):
    """An interrupt that struck a kernel wait made for a cell (``input()``, ``process_events``),
    not user code.  The kernel function the cell called raises a plain KeyboardInterrupt in
    its place (:func:`cell_facing`)."""


def cell_facing(fn: F) -> F:
    """A kernel function a cell calls that waits for it (``input()``, ``process_events``):
    an interrupted wait reaches the cell as a plain KeyboardInterrupt, without the wait's
    exception chained to it (its frames are left out of the traceback: :func:`users_frames`)."""

    @functools.wraps(fn)
    def call(*args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)
        except WaitInterrupted:
            raise KeyboardInterrupt from None

    return cast("F", call)


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


def _innermost_frame_of(code: CodeType, frame: FrameType | None) -> FrameType | None:
    """The innermost frame running ``code`` on the stack from ``frame`` (None: not on it)."""
    while frame is not None:
        if frame.f_code is code:
            return frame
        frame = frame.f_back
    return None


def _is_kernel(code: CodeType) -> bool:
    return code.co_filename.startswith(_PACKAGE_DIR)


def _is_library(code: CodeType) -> bool:
    filename = code.co_filename
    return filename.startswith(_LIBRARY_DIRS) or filename.startswith("<frozen")


def _shows_an_ended_cell(frame: FrameType | None, cell_codes: Collection[CodeType]) -> bool:
    """Whether the interrupted code is IPython showing the error of a cell that has ended.

    That is library code (and the kernel code it calls, which publishes the error) called by
    a cell runner itself (``run_code``'s ``except`` clause calls IPython's
    ``showtraceback``), where a running cell's runner calls the cell.  Interrupted
    there, the formatting of the traceback would stop half way (IPython prints a bare
    ``KeyboardInterrupt`` instead), and the frames of the formatter would join the next
    traceback, whose source files stack_data then parses and keeps.
    """
    callee: FrameType | None = None
    while frame is not None:
        code = frame.f_code
        if code in cell_codes:
            # The runner's callee: the cell (user code), its await (a cell code), or, once
            # the cell has ended, IPython's display of the error (library code).
            if callee is None or _is_kernel(callee.f_code):
                return False
            return _is_library(callee.f_code)
        if not _is_kernel(code) and not _is_library(code):
            return False  # user code: the cell's, or a __repr__ the formatter called
        callee, frame = frame, frame.f_back
    return False


def users_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` with only the frames of the user's code and of the libraries it called, in
    order; without the kernel's frames and the library frames the kernel called (None if
    nothing is left).  Made for an interrupt's traceback: the frames are the same, ``tb``
    itself is left as it is.

    Where an interrupt strikes under (or above) a cell is chance: in the cell runner before
    the cell's code starts, in ``input()``'s wait, in a comm message's handling that wait
    runs (twelve kernel frames and the comm library's), or in whichever kernel frame a
    deferred interrupt is raised.  Those frames say nothing about the user's program, and
    IPython's formatter (stack_data) parses the source file of every frame it is given and
    keeps it for the process's life: each kernel or library file an interrupt first landed
    in kept 0.2-1 MiB of objects (router.py: 1.0), and one interrupt in a comm callback
    under ``input()`` brought five such files at once.
    """
    kept: list[TracebackType] = []
    callers_are_users = True  # the nearest caller that is not a library: the user's code?
    while tb is not None:
        code = tb.tb_frame.f_code
        if _is_kernel(code):
            callers_are_users = False
        elif not _is_library(code):
            callers_are_users = True
            kept.append(tb)
        elif callers_are_users:
            kept.append(tb)
        tb = tb.tb_next
    shown: TracebackType | None = None
    for entry in reversed(kept):
        # None where the instruction has no line (typeshed says int): -1, found again.
        lineno = cast("int | None", entry.tb_lineno)
        shown = TracebackType(
            shown, entry.tb_frame, entry.tb_lasti, -1 if lineno is None else lineno
        )
    return shown


def _lands_safely(frame: FrameType | None, cell_codes: Collection[CodeType]) -> bool:
    """Whether a KeyboardInterrupt may be raised in ``frame`` (the interrupted one).

    Walking down from it: user code (or a cell runner, or an interruption point) says yes;
    other kernel code says no; library code defers to whoever called it.
    """
    while frame is not None:
        code = frame.f_code
        if code in _points or code in cell_codes:
            return True
        if _is_kernel(code):
            return False
        if not _is_library(code):
            return True  # the user's own code (a cell, a module of theirs)
        frame = frame.f_back
    return True


def lands_safely_in_thread(ident: int, runner_codes: Collection[CodeType]) -> bool:
    """Whether an asynchronous exception raised in thread ``ident`` now would land where it
    may (:func:`_lands_safely`): in the user's code or a library it called, under a frame of
    one of ``runner_codes``, and not in the kernel's own code."""
    return look_at_stacks(lambda frames: _lands_safely(frames.get(ident), runner_codes))


def _return_point(frame: FrameType | None, cell_codes: Collection[CodeType]) -> FrameType | None:
    """The frame control returns to once the kernel code running in ``frame`` is done."""
    while frame is not None and not _is_kernel(frame.f_code):  # a library kernel code called
        frame = frame.f_back
    while (
        frame is not None
        and _is_kernel(frame.f_code)
        and frame.f_code not in _points
        and frame.f_code not in cell_codes
    ):
        frame = frame.f_back
    return frame


def _no_tracing(frame: FrameType, event: str, arg: object) -> None:
    return None  # new frames are not traced: the kernel code runs on at full speed


class _Deferred:
    """An interrupt that struck kernel code, waiting for that code to return.

    It is raised in the frame the kernel code returns to, at that frame's next event (the
    frame's own tracer, as pdb stops in a caller), if the cell is still owed it then.
    Should that frame not run again soon (a coroutine that suspends there), the signal is
    delivered again after REDELIVER_AFTER, and judged afresh: by then the cell may be
    awaiting (and is cancelled) or blocking in user code (and gets it there).  Deferred for
    longer than DEFER_PATIENCE (C code that calls kernel code for ever, such as
    ``deque(map(print, count()))``), it is raised wherever it lands: a lost interrupt would
    be worse than a print cut short.
    """

    def __init__(
        self,
        redeliver_later: Callable[[float, Callable[[], object]], object],
        deliver: Callable[[FrameType], None],
    ) -> None:
        self._frame: FrameType | None = None
        self._redeliver_later = redeliver_later
        self._deliver = deliver  # raises in the frame given, if its cell is owed it
        self._since: float | None = None  # when the interrupt deferred now was first

    def arm(self, frame: FrameType) -> None:
        if self._since is None:
            self._since = time.monotonic()
        self._frame = frame
        frame.f_trace = self._fire
        frame.f_trace_lines = True
        sys.settrace(_no_tracing)
        self._redeliver_later(REDELIVER_AFTER, self._redeliver)

    def disarm(self) -> None:
        frame, self._frame = self._frame, None
        if frame is not None:
            frame.f_trace = None
            sys.settrace(None)

    def done(self) -> None:
        """The interrupt deferred was delivered, or is owed no more."""
        self.disarm()
        self._since = None

    def out_of_patience(self) -> bool:
        since = self._since
        return since is not None and time.monotonic() - since >= DEFER_PATIENCE

    def _fire(self, frame: FrameType, event: str, arg: object) -> None:
        __tracebackhide__ = True
        self.done()
        self._deliver(frame)

    def _redeliver(self) -> None:  # on another thread
        if self._frame is not None:
            interrupt_main_thread(again=True)


def _take_current(frame: FrameType | None) -> bool:
    """Deliver the interrupt owed to the cell whose code runs at ``frame``: True if it was
    owed (it no longer is).

    Only where that cell's own code is on the stack: not in a task or callback the cell
    started, which runs in a copy of its context on the same loop (a KeyboardInterrupt
    there would end the loop), nor on a thread it started.
    """
    cell = Cells.current()
    return (
        cell is not None
        and cell.thread == threading.get_ident()
        and _innermost_frame_of(cell.frame.f_code, frame) is cell.frame
        and cell.take()
    )


def deliver_owed_interrupt() -> None:
    """A point in kernel code with nothing half done (an output stream's write that ends a
    line): the interrupt the current cell is owed, if any, is raised here, if the code that
    wrote is the cell's own (a ``print`` in it: not kernel code, such as the report of an
    error a ``__del__`` raised, where it would be swallowed).

    A cell on another thread that prints flat out spends most of its time in the stream's
    code, and the thread delivering its interrupt, which gets the GIL only where that code
    gives it up, would otherwise find it there every time.  One set lookup when nothing is
    owed anywhere.
    """
    __tracebackhide__ = True
    if not owed_anywhere():
        return
    here = inspect.currentframe()
    writer = None if here is None else here.f_back  # the stream's write
    caller = None if writer is None else writer.f_back
    if _lands_safely(caller, _landing_codes) and _take_current(caller):
        raise KeyboardInterrupt


class MainThreadCells(Protocol):
    """What the SIGINT handler asks of the kernel, from the handler (so: set flags and
    schedule work in a thread-safe, reentrant way, no locks, no waits)."""

    def signalled(self, fresh: bool) -> None:
        """A SIGINT arrived: the awaits of the cells owed an interrupt are to be cancelled.
        ``fresh``: a new interrupt (from outside: ``kill -INT``), which every main-thread
        cell, and each cell in hand not started yet, is owed first; else one sent to deliver
        what is owed already."""

    def owed(self) -> bool:
        """Whether a main-thread cell is still owed an interrupt."""
        ...


def install_sigint_handler(
    cell_codes: Collection[CodeType],
    cells: MainThreadCells,
    redeliver_later: Callable[[float, Callable[[], object]], object],
) -> None:
    """On SIGINT: raise in running cell code (one of ``cell_codes`` on the stack), at a safe
    point, if that cell is owed an interrupt (:mod:`async_kernel.cells`); ``cells`` has
    the awaits of the owed cells cancelled, and owes a fresh interrupt first.  Whatever
    stays owed is looked at again REDELIVER_AFTER later, then at doubling intervals.

    ``redeliver_later(delay, fn)`` runs ``fn`` on another thread ``delay`` seconds later
    (thread-safe and reentrant, as everything called from the handler).
    """
    codes = frozenset(cell_codes)
    _landing_codes.update(codes)
    redeliver_if_swallowed(KeyboardInterrupt, _interrupt_again)

    # What stays owed is looked at again after REDELIVER_AFTER, then at doubling intervals
    # up to LOOK_AGAIN_MAX while it still cannot be delivered (a shielded await).
    look_delay = [REDELIVER_AFTER]

    def look_later() -> None:
        delay = look_delay[0]
        look_delay[0] = min(2 * delay, LOOK_AGAIN_MAX)
        redeliver_later(delay, look_again)

    def look_again() -> None:  # on another thread
        if cells.owed():
            interrupt_main_thread(again=True)
        else:
            look_delay[0] = REDELIVER_AFTER

    def deliver_here(frame: FrameType | None) -> None:
        """Raise in ``frame`` if the cell running it is owed an interrupt.  Not in a cell
        runner's own lines (before its ``try``, in its ``except`` clause): the interrupt
        would escape the runner; it waits there for the next look."""
        __tracebackhide__ = True
        if frame is not None and frame.f_code in codes:
            look_later()
            return
        taken = _take_current(frame)
        if cells.owed():  # another cell still is (a cell that ran this one with run_cell)
            look_later()
        if taken:
            raise KeyboardInterrupt

    deferred = _Deferred(redeliver_later, deliver_here)

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        _handled[0] += 1
        fresh = not _sent_again[0]
        _sent_again[0] = False
        if fresh:
            look_delay[0] = REDELIVER_AFTER
        deferred.disarm()  # judged afresh: where is the main thread now?
        cells.signalled(fresh)
        in_a_cell = any(_innermost_frame_of(code, frame) is not None for code in codes)
        if not in_a_cell or _shows_an_ended_cell(frame, codes):
            deferred.done()
            look_later()  # a cell that resumes first (and spins) gets it then
            return
        if (
            _lands_safely(frame, codes)
            # Under a debugger's tracer: at once, as before.  Not under our own deferral's
            # (a handler run nested in this one, while it gave the GIL up, may have armed
            # one): raised here, in kernel code, it cut a print between text and newline.
            or sys.gettrace() not in (None, _no_tracing)
            or deferred.out_of_patience()
        ):
            deferred.done()
            deliver_here(frame)
            return
        resume = _return_point(frame, codes)
        if resume is None:
            deferred.done()
            deliver_here(frame)
            return
        deferred.arm(resume)  # kernel code, mid-update: once it has returned

    signal.signal(signal.SIGINT, on_sigint)
    _kernel_handler[:] = [on_sigint]


_kernel_handler: list[Callable[[int, FrameType | None], None]] = []  # the one installed


_handled = [0]  # how often the SIGINT handler has run (see interrupt_main_thread_surely)
# True while a SIGINT sent again to deliver what is owed is on its way (not a fresh one: see
# MainThreadCells.signalled).
_sent_again = [False]


async def interrupt_main_thread_surely(attempts: int = 40) -> None:
    """Send SIGINT to the main thread, to deliver the interrupt its cells are owed (the
    caller has owed it them: see :mod:`async_kernel.cells`), and again each WAIT_SLICE until
    its handler has run.

    CPython runs a signal's handler at its next check between bytecodes.  A signal that
    lands after the last check before a blocking C call (``time.sleep`` right after a
    ``print``) waits for that call to end: seen under load, a 10 s sleep went uninterrupted.
    Sent again, it interrupts the call.  Gives up after ``attempts`` (a handler that never
    runs: a C call that holds the GIL).  Once the handler has run, it looks after what is
    still owed itself.
    """
    redeliver_if_swallowed(KeyboardInterrupt, _interrupt_again)  # (the hook may be replaced)
    seen = _handled[0]
    interrupt_main_thread(again=True)
    for _ in range(attempts):
        await anyio.sleep(WAIT_SLICE)
        if _handled[0] != seen:
            return
        interrupt_main_thread(again=True)


def interrupt_main_thread(*, again: bool = False) -> None:
    """Deliver SIGINT to the main thread now, waking it from any blocking system call.

    ``again``: to deliver an interrupt the main thread's cells are owed already (see
    :class:`MainThreadCells`); else a fresh interrupt.
    """
    main = threading.main_thread().ident
    if main is None:  # pragma: no cover - the main thread always has an ident
        return
    if again:
        _sent_again[0] = True
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(main, signal.SIGINT)
    else:  # Windows: no per-thread signals; raise KeyboardInterrupt in the main thread
        _thread.interrupt_main(signal.SIGINT)


_PAUSE_GC_TO_LOOK = sys.version_info < (3, 12)
_look_lock = threading.RLock()  # one look at a time; a finalizer's nested look is let in
T = TypeVar("T")


def look_at_stacks(look: Callable[[dict[int, FrameType]], T]) -> T:
    """``look(frames)``, with the frame each thread runs now, by thread ident: all that
    touches another thread's frames (``f_back`` included) happens inside ``look``.

    Through ``sys._current_frames``: CPython's only view of other threads' stacks.  Looking
    makes frame objects for another thread's live frames, and on CPython 3.11 making one may
    start a garbage collection, whose finalizers may give the GIL to that thread, which
    then leaves the frame being made: a dangling pointer (a segfault, caught in a kernel
    answering kernel_info while a cell ran a Dask flood on trio), or, inside
    ``sys._current_frames``, a deadlock (CPython gh-106883).  So on 3.11 the collector is
    paused for the look, one look at a time, as CPython's own later fix does; from 3.12 a
    collection runs only between bytecodes.  A plain function, with the pause inside its
    ``try``: an asynchronous exception striking a looking thread (a cancelled ``to_thread``
    call) leaves neither the collector off nor the lock held.  (A user's ``gc.disable()``
    on another thread in the microseconds of a look is undone by its end: 3.11 only.)
    """
    if not _PAUSE_GC_TO_LOOK:
        return look(sys._current_frames())  # pyright: ignore[reportPrivateUsage]  # no public equivalent
    with _look_lock:
        enabled = gc.isenabled()
        try:
            gc.disable()
            return look(sys._current_frames())  # pyright: ignore[reportPrivateUsage]
        finally:
            if enabled:
                gc.enable()


def thread_runs(ident: int, code: CodeType) -> bool:
    """Whether a frame of ``code`` is on thread ``ident``'s stack now."""
    return look_at_stacks(lambda frames: _innermost_frame_of(code, frames.get(ident)) is not None)


def interrupt_cells_on_other_threads(cells: Iterable[RunningCell], runner_code: CodeType) -> int:
    """Deliver the interrupt owed to each of ``cells`` that runs on a thread other than the
    main one; ``runner_code`` is the code of the frame that runs each block of a cell.

    Signals reach only the main thread; a subshell's or a ``# thread`` cell's Python code is
    stopped through ``PyThreadState_SetAsyncExc`` instead, which takes effect at its next
    bytecode: a busy loop stops at once, a blocking call (``time.sleep``) returns first.  As
    on the main thread, it is raised only where it lands safely (:func:`_lands_safely`): a
    thread in other kernel code (a print half way through the stream's bookkeeping) gets it
    once it has left that code, and a cell that awaits gets it as the cancellation of its
    await, on its own loop (:func:`_deliver_to_thread`).  Returns how many cells were owed.
    """
    _thread_cell_codes.add(runner_code)
    _landing_codes.add(runner_code)
    redeliver_if_swallowed(KeyboardInterrupt, _interrupt_again)
    main = threading.main_thread().ident
    asked = 0
    for cell in cells:
        if cell.thread != main and cell.owes:
            _deliver_to_thread(cell)
            asked += 1
    return asked


_thread_cell_codes: set[CodeType] = set()  # what interrupt_cells_on_other_threads was given
# Every cell runner's code given to this module (the main thread's and the others'): where
# an interrupt may land, for deliver_owed_interrupt.
_landing_codes: set[CodeType] = set()

# How often a thread cell's owed interrupt is looked at again while it cannot be delivered,
# and how long at most it waits for the cell's thread to leave kernel code; after that it is
# raised wherever it lands there.
THREAD_RETRY = 0.005  # seconds
THREAD_PATIENCE = 5.0  # seconds
# The same for the main thread (see _Deferred): the signal comes again every REDELIVER_AFTER.
DEFER_PATIENCE = 1.0  # seconds


def _deliver_to_thread(cell: RunningCell) -> None:
    """Deliver what ``cell`` (on another thread) is owed: at once if its code runs where an
    interrupt lands safely, else from a short-lived thread that looks again every
    THREAD_RETRY seconds until it is delivered, taken by another path (the start of the
    cell's next block, the cancel of its await, the end of a print) or the cell has ended."""
    if _look_at(cell, {}, patience_over=False):
        return
    with _watch_lock:
        if cell in _watchers:  # an earlier interrupt already waits for the same moment
            return
        watcher = threading.Thread(
            target=_watch, args=(cell,), name="async-kernel-interrupt", daemon=True
        )
        _watchers[cell] = watcher
    watcher.start()


def _look_at(cell: RunningCell, asked: dict[int, Scope], *, patience_over: bool) -> bool:
    """One look at ``cell``'s thread: deliver its interrupt if it can be now; True once
    nothing more is to be done.  ``asked``: the awaits whose cancel was asked already."""
    if cell.ended or not cell.owes:
        return True

    def where(frames: dict[int, FrameType]) -> tuple[FrameType | None, bool, bool]:
        frame = frames.get(cell.thread)
        innermost = _innermost_frame_of(cell.frame.f_code, frame)
        in_runner = frame is not None and frame.f_code in _thread_cell_codes
        return (
            innermost,
            in_runner,
            innermost is cell.frame and _lands_safely(frame, _thread_cell_codes),
        )

    innermost, in_runner, lands_safely = look_at_stacks(where)
    if innermost is cell.frame:  # the cell's code, or kernel code it called, runs now
        if in_runner:
            return False  # the runner's own lines (its except clause): not there
        if lands_safely or patience_over:
            # No longer watched, before it is raised: should it be swallowed where it lands
            # (a __del__) and owed again at once, that delivery must find no watcher.
            with _watch_lock:
                _watchers.pop(cell, None)
            if cell.take():
                raise_in_thread(cell.thread, KeyboardInterrupt)
            return True
        return False
    if innermost is not None:  # a cell it runs (run_cell in its code) takes its own first;
        return False  # this one gets it when its own code runs again, or at its next block
    for scope in list(cell.scopes):  # the cell awaits: its loop cancels the await
        if id(scope) not in asked:
            asked[id(scope)] = scope  # (kept alive: its id is not reused meanwhile)
            cell.cancel_await()
    return False


def _watch(cell: RunningCell) -> None:
    """Look at ``cell`` every THREAD_RETRY seconds until nothing more is to be done; after
    THREAD_PATIENCE in kernel code, raise wherever it lands there."""
    block_sigint_in_this_thread()
    try:
        deadline = time.monotonic() + THREAD_PATIENCE
        asked: dict[int, Scope] = {}
        while not _look_at(cell, asked, patience_over=time.monotonic() >= deadline):
            time.sleep(THREAD_RETRY)
    finally:
        with _watch_lock:
            if _watchers.get(cell) is threading.current_thread():
                del _watchers[cell]


_watchers: dict[RunningCell, threading.Thread] = {}  # the thread looking after each cell
_watch_lock = threading.Lock()


def _interrupt_again(ident: int) -> None:
    """Deliver again an interrupt that code run on the side of a cell swallowed (a
    ``__del__``, a gc callback: see :mod:`async_kernel.async_exceptions`); on another
    thread, in a copy of the swallowing thread's context, so the cell it was for is known.

    That cell is owed it again, if it still runs: an interrupt swallowed as a cell ended
    does nothing to the next one.  The main thread gets SIGINT again (while the kernel's
    handler is the one installed); another thread's cell gets it as any interrupt does.
    """
    block_sigint_in_this_thread()
    cell = Cells.current()
    if cell is None or cell.ended:
        return
    cell.owe()
    if ident == threading.main_thread().ident:
        if _kernel_handler and signal.getsignal(signal.SIGINT) is _kernel_handler[0]:
            interrupt_main_thread(again=True)
        return
    _deliver_to_thread(cell)
