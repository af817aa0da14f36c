"""OutStream's bounds, in-process: a starved transport thread neither grows the buffer
without bound nor deadlocks with a writer that flushes itself.

The transport is a stand-in that records what is sent and the timers asked for, and runs
no timer unless the test does: the transport's thread is "starved".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

from async_kernel.shell.iostream import FLUSH_INTERVAL, WRITER_FLUSH_SIZE, OutStream

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
