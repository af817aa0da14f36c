"""OutStream's bounds, in-process: a starved transport thread neither grows the buffer
without bound nor deadlocks with a writer that flushes itself.

The transport is a stand-in that records what is sent and the timers asked for, and runs
no timer unless the test does: the transport's thread is "starved".
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from async_kernel.async_exceptions import can_raise_in_threads, raise_in_thread
from async_kernel.shell.iostream import (
    FLUSH_INTERVAL,
    MESSAGE_CHARS,
    WRITER_FLUSH_SIZE,
    OutStream,
)

WAIT = 10.0  # seconds; every wait is bounded


class StarvedTransport:
    """Records sends and timers; ``room`` cleared makes a send wait, as a full outbox does."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.timers: list[tuple[float, Callable[[], object]]] = []
        self.room = threading.Event()
        self.room.set()
        self.waiting = threading.Event()

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        self.timers.append((delay, callback))

    def send(self, channel: str, msg: dict[str, Any]) -> None:
        assert channel == "iopub"
        if not self.room.is_set():
            self.waiting.set()
            assert self.room.wait(WAIT), "no room made"
        self.sent.append(msg["content"]["text"])


def test_a_writer_whose_timers_never_run_flushes_itself() -> None:
    transport = StarvedTransport()
    stream = OutStream("stdout", cast(Any, transport))
    line = "x" * 1023 + "\n"
    largest = 0
    for _ in range(4 * WRITER_FLUSH_SIZE // len(line)):
        stream.write(line)
        largest = max(largest, stream._size)
    assert largest < WRITER_FLUSH_SIZE + len(line)
    assert len(transport.sent) >= 3  # sent by the writer itself: no timer ran
    stream.flush()
    assert "".join(transport.sent) == line * (4 * WRITER_FLUSH_SIZE // len(line))


def test_no_stream_message_is_larger_than_message_chars() -> None:
    """One huge write, and a buffer the writer flushes itself, go out in messages of at most
    MESSAGE_CHARS characters (what a stalled client's queue holds is counted in messages), in
    order, nothing lost, cut after a line's end where there is one; a small write is one
    message."""
    transport = StarvedTransport()
    stream = OutStream("stdout", cast(Any, transport))
    huge = "".join(chr(32 + i % 90) for i in range(3 * MESSAGE_CHARS + 7))
    stream.write(huge)
    stream.flush()
    assert [len(t) for t in transport.sent] == [MESSAGE_CHARS] * 3 + [7]
    assert "".join(transport.sent) == huge
    transport.sent.clear()
    line = "\x01" * 1023 + "\n"  # 6 bytes of JSON a character: still under 1 MiB a message
    for _ in range(2 * WRITER_FLUSH_SIZE // len(line)):
        stream.write(line)
    stream.flush()
    assert max(len(t) for t in transport.sent) <= MESSAGE_CHARS
    assert all(t.endswith("\n") for t in transport.sent), "a line cut across two messages"
    assert "".join(transport.sent) == line * (2 * WRITER_FLUSH_SIZE // len(line))
    transport.sent.clear()
    stream.write("small\n")
    stream.flush()
    assert transport.sent == ["small\n"]


def test_the_scheduled_flush_never_waits_for_a_writer_waiting_for_room() -> None:
    transport = StarvedTransport()
    stream = OutStream("stdout", cast(Any, transport))
    stream.write("first\n")
    transport.room.clear()  # the outbox is full: a send waits for the transport's thread
    writer = threading.Thread(target=stream.flush)  # holds the stream's lock while it waits
    writer.start()
    try:
        assert transport.waiting.wait(WAIT)
        timers_before = len(transport.timers)
        # The transport's thread runs its scheduled flush: it must come back (to make room),
        # not wait for the lock, and must try again later.
        timed = threading.Thread(target=stream._flush_from_timer)
        timed.start()
        timed.join(WAIT)
        assert not timed.is_alive(), "the scheduled flush waited for the writer: deadlock"
        assert len(transport.timers) == timers_before + 1
        assert transport.timers[-1][0] == FLUSH_INTERVAL
    finally:
        transport.room.set()
        writer.join(WAIT)
    assert not writer.is_alive()
    assert transport.sent == ["first\n"]


def test_an_interrupt_sent_while_waiting_for_the_lock_does_not_keep_it() -> None:
    """A cell's thread waits for the stream's lock (another thread is sending) and is sent
    an asynchronous KeyboardInterrupt (an interrupt of a subshell cell, a cancelled
    to_thread call): wherever it strikes, the lock is free afterwards."""
    if not can_raise_in_threads():
        pytest.skip("this interpreter cannot raise in other threads")
    transport = StarvedTransport()
    stream = OutStream("stdout", cast(Any, transport))
    stream.write("first\n")
    transport.room.clear()
    holder = threading.Thread(target=stream.flush)  # takes the lock, waits for room
    holder.start()
    assert transport.waiting.wait(WAIT)
    outcome: list[str] = []

    def cell() -> None:
        try:
            stream.flush()  # waits for the holder's lock (the holder is sending)
            outcome.append("flushed")
        except KeyboardInterrupt:
            outcome.append("interrupted")

    waiter = threading.Thread(target=cell)
    waiter.start()
    deadline = time.monotonic() + WAIT
    while not _waits_for_the_lock(waiter):
        assert time.monotonic() < deadline, "the cell's thread never waited for the lock"
        time.sleep(0.001)
    raise_in_thread(_ident(waiter), KeyboardInterrupt)
    transport.room.set()
    holder.join(WAIT)
    waiter.join(WAIT)
    assert not waiter.is_alive() and outcome, "the cell's thread did not finish"
    # Without `with`, the exception struck between the acquire and its `try`: never released.
    assert stream._lock.acquire(timeout=WAIT), "the interrupted thread kept the lock"
    stream._lock.release()
    stream.write("second\n")
    stream.flush()
    assert "".join(transport.sent) == "first\nsecond\n"


def _ident(thread: threading.Thread) -> int:
    assert thread.ident is not None
    return thread.ident


def _waits_for_the_lock(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(_ident(thread))  # pyright: ignore[reportPrivateUsage]
    return frame is not None and frame.f_code is OutStream._flush.__code__


_TIMED_FLUSH_BEHIND_THE_FD_READER = r"""
import os, sys, threading, time
from async_kernel.shell.fdcapture import FdCapture
from async_kernel.shell.iostream import OutStream

room = threading.Event()  # the outbox has room: only the transport's thread makes it
class Transport:
    full = False
    def call_later(self, delay, callback): pass
    def send(self, channel, msg):
        if self.full:
            assert room.wait(30), "no room made"
class Events:
    def register(self, *args): pass
    def unregister(self, *args): pass
transport = Transport()
out, err = OutStream("stdout", transport), OutStream("stderr", transport)
capture = FdCapture((out, err), Events())
capture.start()
report = os.fdopen(os.dup(capture._pipes[1].saved), "w", buffering=1)  # the real stderr
capture._owners.append(object())  # a cell runs: fd output goes to its stream
transport.full = True
out.write("x")
writer = threading.Thread(target=out.flush, daemon=True)  # holds out's lock, waits for room
writer.start()
time.sleep(0.2)
os.write(1, b"from a C library\n")  # the reader takes it, then waits for out's lock
deadline = time.monotonic() + 10
while not capture.in_flight:
    assert time.monotonic() < deadline, "the reader never took the fd output"
    time.sleep(0.001)
def transport_thread():
    err._flush_from_timer()  # its timer: must not wait for the reader
    room.set()  # then it makes room
io = threading.Thread(target=transport_thread, daemon=True)
io.start()
io.join(10)
print("stuck" if io.is_alive() else "free", file=report)
os._exit(0)
"""


def test_the_scheduled_flush_never_waits_for_the_fd_reader() -> None:
    """A writer holds stdout's lock and waits for room in the outbox; the fd capture's reader
    holds the capture's lock and waits for stdout's lock: the transport's timed flush of
    stderr must not wait for the capture's lock, or none of the three ever goes on (the
    kernel would be deaf for good while its heartbeat still answers).  In a child process:
    capture replaces fds 1 and 2."""
    done = subprocess.run(
        [sys.executable, "-c", _TIMED_FLUSH_BEHIND_THE_FD_READER],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr.strip().splitlines()[-1:] == ["free"], done.stderr[-2000:]
