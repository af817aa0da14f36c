"""The cells running now, on any thread, and the interrupt each one is owed.

A *cell* here is one execute request's run, from the shell's ``run_cell_async`` to its end:
all its blocks (IPython runs each top-level statement group under a ``run_code`` of its
own) and every ``await`` in them.  An interrupt is **owed** to each cell running when it
came, until it is delivered once, by whichever path gets there first:

* raised in the cell's code: KeyboardInterrupt from the main thread's SIGINT handler, or
  raised in another thread's cell from outside (:mod:`async_kernel.interrupt`);
* the cancellation of the ``await`` the cell is in, on the cell's own loop;
* at the end of a write to the cell's output stream that ends a line (kernel code with
  nothing left half done: ``interrupt.deliver_owed_interrupt``);
* at the start of the cell's next block (an interrupt that came while IPython prepared the
  cell, between two blocks, or while the cell ran kernel code it could not land in).

Taking what is owed is one atomic step (:meth:`RunningCell.take`), so two paths never both
deliver.  A cell that has ended owes nothing: a late delivery never reaches the next cell
on the thread.  A cell whose error is being shown (``ending``) is owed nothing more: a
burst of interrupts is one interrupt per cell.

Any thread may ask and mark; taking and marking are single operations on built-in
containers (atomic under the GIL, and safe in a signal handler: no lock is taken).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

__all__ = ["Cells", "RunningCell", "Scope", "owed_anywhere"]


class Scope(Protocol):
    """What a cell's ``await`` is wrapped in: cancelled to interrupt it (an anyio
    CancelScope; only on the loop that owns it)."""

    def cancel(self) -> None: ...


class RunningCell:
    """One cell while it runs."""

    __slots__ = ("_owed", "ended", "ending", "frame", "schedule", "scopes", "seq", "thread")

    def __init__(
        self,
        frame: FrameType,
        seq: int | None,
        schedule: Callable[[Callable[[], object]], object] | None,
    ) -> None:
        # The frame running the whole cell: on its thread's stack while its code runs, off
        # it while the cell awaits.
        self.frame = frame
        self.seq = seq  # its request's arrival number (None: not run for a request)
        self.thread = threading.get_ident()
        # Runs a callable on the cell's own loop, from any thread (None: no loop to ask).
        self.schedule = schedule
        self.scopes: set[Scope] = set()  # the await the cell is in now (at most one)
        self.ending = False  # its error is being shown: it runs none of its code again
        self.ended = False
        # Owed an interrupt: {True}, else empty.  A set's add and remove are each one
        # atomic operation: owing twice is owing once, and only one taker gets it.
        self._owed: set[bool] = set()

    def owe(self) -> None:
        """An interrupt came for this cell (nothing, once its error is being shown)."""
        if not self.ending and not self.ended:
            _owing.add(self)
            self._owed.add(True)
            if self.ended:  # it ended meanwhile (on its own thread): nothing is owed to it
                self.end()

    def end(self) -> None:
        """The cell has ended: it is owed nothing, now or later."""
        self.ended = True
        self._owed.clear()
        _owing.discard(self)

    @property
    def owes(self) -> bool:
        """Owed an interrupt still to deliver (never once its error is being shown)."""
        return bool(self._owed) and not self.ending

    def take(self) -> bool:
        """Deliver what the cell is owed: True if it was owed an interrupt (it no longer
        is); False if it was not, or another path took it first, or it is ending."""
        if self.ending or self.ended:
            return False
        try:
            self._owed.remove(True)
        except KeyError:
            return False
        _owing.discard(self)
        return True

    def cancel_await(self) -> None:
        """Ask the cell's loop to cancel the await the cell is in, delivering its interrupt
        that way (thread-safe; nothing if it no longer awaits or owes by then)."""
        if self.schedule is None:
            return
        with contextlib.suppress(RuntimeError):  # its loop has ended (so has the cell)
            self.schedule(self.cancel_await_here)

    def cancel_await_here(self) -> None:
        """:meth:`cancel_await`, on the cell's own loop.

        The interrupt stays owed until the cancel surfaces in the cell (the shell's await
        then takes it): a cell whose await had already been woken (trio) runs on to its
        next checkpoint first, and if its code spins meanwhile, the interrupt must still be
        raised there.
        """
        if self.owes:
            for scope in list(self.scopes):
                scope.cancel()


_current: contextvars.ContextVar[RunningCell | None] = contextvars.ContextVar(
    "async_kernel_cell", default=None
)
# The cells owed an interrupt, of every registry: a hint for owed_anywhere (a cell is added
# before it owes, and removed once it has been delivered or has ended).
_owing: set[RunningCell] = set()


def owed_anywhere() -> bool:
    """Whether any cell may be owed an interrupt (cheap: for the kernel's hot paths)."""
    return bool(_owing)


class Cells:
    """The registry of the cells running now (any thread may ask)."""

    def __init__(self) -> None:
        self._running: dict[RunningCell, None] = {}  # in start order
        # Cells owed an interrupt before they started (by arrival number): see owe_seq.
        self._owed_seqs: set[int] = set()

    @contextmanager
    def run(
        self,
        frame: FrameType,
        seq: int | None,
        schedule: Callable[[Callable[[], object]], object] | None,
    ) -> Generator[RunningCell]:
        """Register the cell run by ``frame`` for the block (it is the current cell in its
        context); it starts owed an interrupt if one came for its ``seq`` already."""
        cell = RunningCell(frame, seq, schedule)
        self._running[cell] = None
        if seq is not None and seq in self._owed_seqs:
            self._owed_seqs.discard(seq)
            cell.owe()
        token = _current.set(cell)
        try:
            yield cell
        finally:
            _current.reset(token)
            cell.end()
            self._running.pop(cell, None)

    @staticmethod
    def current() -> RunningCell | None:
        """The cell whose code (or kernel code it called) runs in this context."""
        return _current.get()

    def running(self, thread: int | None = None) -> list[RunningCell]:
        """The cells running now (on ``thread`` only, if given)."""
        cells = list(self._running)
        return cells if thread is None else [c for c in cells if c.thread == thread]

    def started(self, seq: int) -> bool:
        """Whether the cell of request ``seq`` has started (and not ended)."""
        return any(cell.seq == seq for cell in self.running())

    def owe(self, thread: int | None = None) -> list[RunningCell]:
        """An interrupt came: every cell running now (on ``thread``, if given) is owed one;
        returns those cells."""
        cells = self.running(thread)
        for cell in cells:
            cell.owe()
        return [cell for cell in cells if cell.owes]

    def owe_seq(self, seq: int) -> None:
        """An interrupt came for the cell of request ``seq``, which has not started yet (it
        is in hand: being prepared): it starts owed it."""
        self._owed_seqs.add(seq)

    def forget_seq(self, seq: int) -> None:
        """Request ``seq`` has been answered: nothing is owed to its cell any more."""
        self._owed_seqs.discard(seq)

    def owed_on(self, thread: int) -> bool:
        """Whether a cell running on ``thread`` is owed an interrupt."""
        return any(cell.owes for cell in self.running(thread))

    def cancel_owed_awaits(self) -> None:
        """Cancel the await of each cell on this thread that is owed an interrupt (call it
        on the thread's loop, which owns the scopes)."""
        for cell in self.running(threading.get_ident()):
            cell.cancel_await_here()
