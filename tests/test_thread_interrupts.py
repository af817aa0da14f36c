"""An interrupt for a cell on another thread (a subshell's, a ``# thread`` cell's) lands in
the user's code, never half way through the kernel's: one that finds the thread in kernel
code is raised once the thread has left it.  In-process, on real threads and frames."""

from __future__ import annotations

import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from async_kernel.async_exceptions import can_raise_in_threads
from async_kernel.cells import Cells
from async_kernel.interrupt import interrupt_cells_on_other_threads
from async_kernel.shell.iostream import OutStream

WAIT = 10.0  # seconds; every wait is bounded

pytestmark = pytest.mark.skipif(
    not can_raise_in_threads(), reason="this interpreter cannot raise in other threads"
)


class Transport:
    """Records the flushes asked for; sends nothing."""

    def __init__(self) -> None:
        self.timers: list[Callable[[], object]] = []

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        self.timers.append(callback)

    def send(self, channel: str, msg: dict[str, Any]) -> None:
        pass


CELLS = Cells()  # stands for the shell's registry of running cells


def runner(block: Callable[[], None]) -> None:
    """Stands for ``run_code`` on a subshell's thread: one block of a cell runs under it."""
    block()


def whole_cell(*blocks: Callable[[], None]) -> None:
    """Stands for ``run_cell_async``: one cell, registered while it runs; its blocks run one
    by one."""
    frame = inspect.currentframe()
    assert frame is not None
    with CELLS.run(frame, None, None):
        for block in blocks:
            runner(block)


def interrupt() -> int:
    """An interrupt_request: every running cell is owed one; those on other threads are
    delivered it (how many)."""
    return interrupt_cells_on_other_threads(CELLS.owe(), runner.__code__)


def _top_code(thread: threading.Thread) -> object:
    assert thread.ident is not None
    frame = sys._current_frames().get(thread.ident)  # pyright: ignore[reportPrivateUsage]
    return None if frame is None else frame.f_code


def _wait_until_in(thread: threading.Thread, code: object) -> None:
    """Until ``thread`` runs ``code`` (waiting in it for the stream's lock: in kernel code),
    bounded."""
    deadline = time.monotonic() + WAIT
    while _top_code(thread) is not code:
        assert time.monotonic() < deadline, f"the cell never waited in {code}"
        time.sleep(0.001)


def interrupt_while_held(
    stream: OutStream,
    thread: threading.Thread,
    code: object,
    while_held: Callable[[], None] | None = None,
) -> None:
    """Start ``thread``; once it waits in ``code`` for ``stream``'s lock (held here: kernel
    code), interrupt (one cell is owed it) and call ``while_held``; then let go of the lock
    and join the thread (bounded)."""
    assert stream._lock.acquire(timeout=WAIT)
    try:
        thread.start()
        _wait_until_in(thread, code)
        assert interrupt() == 1
        if while_held is not None:
            while_held()
    finally:
        stream._lock.release()
    thread.join(WAIT + 1)
    assert not thread.is_alive()


def test_an_interrupt_for_a_thread_in_a_print_lands_as_the_write_ends() -> None:
    """Found waiting in the stream's write (kernel code), the cell is not interrupted there
    but as the write ends, with nothing half done: its text is buffered, a flush scheduled.
    (A cell printing flat out is in that code most of the time: it is stopped at once.)"""
    transport = Transport()
    stream = OutStream("stdout", cast(Any, transport))
    outcome: list[str] = []
    printed = threading.Event()

    def cell() -> None:
        try:
            stream.write("progress\n")  # waits for the stream's lock: in kernel code
        except KeyboardInterrupt:
            outcome.append("interrupted as its write ended")
            return
        printed.set()
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                time.sleep(0.001)  # the user's code
            outcome.append("never interrupted")
        except KeyboardInterrupt:
            outcome.append("interrupted in the user's code")

    def held_back() -> None:
        time.sleep(0.05)  # the interrupt is held back meanwhile
        assert thread.is_alive() and not outcome

    thread = threading.Thread(target=whole_cell, args=(cell,))
    interrupt_while_held(stream, thread, OutStream.write.__code__, held_back)
    assert outcome == ["interrupted as its write ended"]
    assert not printed.is_set()
    # The write was whole: its text is buffered and a flush is scheduled for it.
    assert [parts for _, parts in stream._chunks] == [["progress\n"]]
    assert stream._flush_pending and transport.timers


def test_an_interrupt_for_a_thread_in_the_users_code_lands_at_once() -> None:
    interrupted = threading.Event()
    started = threading.Event()

    def cell() -> None:
        started.set()
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                time.sleep(0.001)
        except KeyboardInterrupt:
            interrupted.set()

    thread = threading.Thread(target=whole_cell, args=(cell,))
    thread.start()
    assert started.wait(WAIT)
    assert interrupt() == 1
    assert interrupted.wait(WAIT)
    thread.join(WAIT)
    assert not thread.is_alive()


def test_no_cell_no_interrupt() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(WAIT,))  # runs no cell
    thread.start()
    try:
        assert interrupt() == 0
    finally:
        stop.set()
        thread.join(WAIT)


def test_a_late_interrupt_does_nothing_to_the_next_cell() -> None:
    """An interrupt held back while a cell was in kernel code is for that cell: if the cell
    ends first, the next cell on the same thread runs on uninterrupted."""
    transport = Transport()
    stream = OutStream("stdout", cast(Any, transport))
    outcome: list[str] = []

    def last_line_prints() -> None:
        stream.write("the cell's last line\n")  # waits for the stream's lock

    def next_cell() -> None:
        try:
            time.sleep(0.3)  # the user's code, well past THREAD_RETRY
            outcome.append("the next cell ran on")
        except KeyboardInterrupt:
            outcome.append("the next cell was interrupted")

    def thread_of_cells() -> None:
        try:
            whole_cell(last_line_prints)
        except KeyboardInterrupt:  # in the cell's frames, as the cell ends: its own
            outcome.append("the first cell's runner")
        whole_cell(next_cell)

    # Let go of the lock, the cell ends at once, likely before the interrupt's look.
    interrupt_while_held(stream, threading.Thread(target=thread_of_cells), OutStream.write.__code__)
    assert "the next cell was interrupted" not in outcome
    assert outcome[-1] == "the next cell ran on"


def test_an_interrupt_held_back_in_one_block_lands_in_the_next_block_of_the_cell() -> None:
    """A cell of two blocks (a flush, then ``while True: pass``) runs each under a runner of
    its own.  An interrupt held back while the first block's flush was in kernel code is for
    the cell, not for that block: it lands in the second block (it was lost once: the
    held-back interrupt waited for the first block's runner, which had ended)."""
    transport = Transport()
    stream = OutStream("stdout", cast(Any, transport))
    stream.write("spinning\n")  # (no cell here: buffered for the cell's flush to send)
    outcome: list[str] = []

    def first_block() -> None:
        stream.flush()  # waits for the stream's lock: in kernel code

    def second_block() -> None:
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                pass  # the user's busy loop
            outcome.append("never interrupted")
        except KeyboardInterrupt:
            outcome.append("interrupted in the second block")

    thread = threading.Thread(target=whole_cell, args=(first_block, second_block))
    interrupt_while_held(stream, thread, OutStream._flush.__code__)
    assert outcome == ["interrupted in the second block"]


def test_an_interrupt_landing_in_a_print_lets_the_whole_line_out() -> None:
    """``print`` is several writes (its items, the separators, the end).  An interrupt that
    comes while the first is in kernel code lands at the end of the line, not after the
    first item: the cell's output is whole ("got value", never a lone "got")."""
    transport = Transport()
    stream = OutStream("stdout", cast(Any, transport))
    outcome: list[str] = []

    def cell() -> None:
        try:
            print("got", "value", file=stream)  # the first write waits for the stream's lock
        except KeyboardInterrupt:
            outcome.append("interrupted at the end of the line")
            return
        outcome.append("never interrupted")

    thread = threading.Thread(target=whole_cell, args=(cell,))
    interrupt_while_held(stream, thread, OutStream.write.__code__)
    assert outcome == ["interrupted at the end of the line"]
    assert "".join(part for _, parts in stream._chunks for part in parts) == "got value\n"
