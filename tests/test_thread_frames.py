"""Looking at other threads' stacks (``interrupt.look_at_stacks``) is safe on CPython 3.11.

There, making a frame object for another thread's live frame may start a garbage collection,
whose finalizers may hand the GIL to that thread: a segfault (seen in a kernel answering
kernel_info during a Dask flood on trio) or, inside ``sys._current_frames``, a deadlock
(CPython gh-106883).  The collector is paused for the look.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
from types import FrameType

import pytest

from async_kernel.interrupt import look_at_stacks, thread_runs

PAUSES = sys.version_info < (3, 12)  # from 3.12 a collection runs only between bytecodes


def test_the_collector_is_paused_for_a_look_and_left_as_it_was() -> None:
    def look(frames: dict[int, FrameType]) -> bool:
        assert threading.get_ident() in frames
        return gc.isenabled()

    assert gc.isenabled()
    assert look_at_stacks(look) is not PAUSES
    assert gc.isenabled()
    gc.disable()
    try:
        assert not look_at_stacks(look)
        assert not gc.isenabled(), "a collector the user had turned off was turned on"
    finally:
        gc.enable()


def test_an_exception_in_a_look_leaves_the_collector_on_and_the_lock_free() -> None:
    """A KeyboardInterrupt (an asynchronous exception: a cancelled to_thread call) striking a
    looking thread leaves neither the collector off nor the next look waiting."""

    def interrupted(frames: dict[int, FrameType]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        look_at_stacks(interrupted)
    assert gc.isenabled()
    other = threading.Thread(target=look_at_stacks, args=(len,))
    other.start()
    other.join(10)
    assert not other.is_alive(), "the next look waited for a lock left held"


def test_thread_runs_sees_a_code_on_another_threads_stack() -> None:
    there, leave = threading.Event(), threading.Event()

    def waits_here() -> None:
        there.set()
        leave.wait(10)

    thread = threading.Thread(target=waits_here)
    thread.start()
    try:
        assert there.wait(10)
        assert thread.ident is not None
        assert thread_runs(thread.ident, waits_here.__code__)
        assert not thread_runs(
            thread.ident, test_thread_runs_sees_a_code_on_another_threads_stack.__code__
        )
    finally:
        leave.set()
        thread.join(10)


# Two threads look at every stack, to the bottom, while garbage whose finalizer gives the GIL
# up (a socket send, as a loop's thread-safe wake-up does) is collected.  With bare
# sys._current_frames, 3.11.7 hung in 1 of 2 such runs of 5 s (gh-106883).
LOOKERS = """
import faulthandler, socket, sys, threading, time
from async_kernel.interrupt import look_at_stacks

r, w = socket.socketpair()
w.setblocking(False)
r.setblocking(False)

class Finalized:
    def __init__(self):
        self.me = self  # a cycle: freed by the collector, which runs __del__
    def __del__(self):
        try:
            w.send(b"\\0")  # gives the GIL up
        except BlockingIOError:
            try:
                r.recv(65536)
            except BlockingIOError:
                pass

def look(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(5):
            Finalized()
        look_at_stacks(walk_to_the_bottom)

def walk_to_the_bottom(frames):
    for frame in frames.values():
        while frame is not None:
            frame = frame.f_back

faulthandler.dump_traceback_later(30, exit=True)
lookers = [threading.Thread(target=look, args=(3.0,), daemon=True) for _ in range(2)]
for t in lookers:
    t.start()
for t in lookers:
    t.join()
print("looked")
"""


def test_looking_while_finalizers_switch_threads_neither_hangs_nor_crashes() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOOKERS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "looked"
