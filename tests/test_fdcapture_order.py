"""Fd capture's order rule across threads, in-process and deterministic.

A print on the cell's thread first takes the fd output the pipes hold or another thread has
read but not yet handed on (``peek`` or ``in_flight``: see Order in fdcapture.py).  A flush on
the transport's thread also reads the pipes (``FdCapture.sync``); until it has handed the text
on, that text must count as in flight, or the print goes first: seen as the last 40-64 KiB of
``os.write(1, ...)`` arriving after the ``print`` that followed it (test_fd_output's
fills-both-pipes test, 7 runs in 50).

No descriptor of this process is redirected: the pipe stands in for fd 1 without being put
in its place, so the test reaches into FdCapture's parts.
"""

from __future__ import annotations

import os
import threading
from typing import Any, cast

from async_kernel.shell.fdcapture import FdCapture, _Pipe

WAIT = 10.0  # seconds; every wait is bounded


class HeldStream:
    """Takes fd text as OutStream.append does, but holds the hand-on until released."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.texts: list[str] = []

    def append(self, request: object, s: str) -> None:
        self.reached.set()
        if self.release.wait(WAIT):
            self.texts.append(s)


def test_text_a_flush_has_read_is_in_flight_until_handed_on() -> None:
    stream = HeldStream()
    capture = FdCapture(cast(Any, (stream, stream)), cast(Any, None))  # no events: no start()
    target = os.open(os.devnull, os.O_WRONLY)
    pipe = _Pipe(target, cast(Any, stream))  # a pipe like fd 1's, not dup'ed onto anything
    capture._pipes = [pipe]
    capture._owners.append(cast(Any, object()))  # a cell runs
    os.write(pipe._write, b"written to fd 1")
    flush = threading.Thread(target=capture.sync, kwargs={"force": True})  # transport's flush
    flush.start()
    try:
        assert stream.reached.wait(WAIT), "the flush's thread did not read the pipe"
        # The pipe is empty now and the text not yet handed on: what a print on the cell's
        # thread looks at before it writes (OutStream.write) must send it to wait.
        assert not capture.peek(0, 1)
        assert capture.in_flight
    finally:
        stream.release.set()
        flush.join(WAIT)
        for fd in (target, pipe.read_end, pipe.saved, pipe._write):
            os.close(fd)
        if capture._epoll is not None:
            capture._epoll.close()
    assert not flush.is_alive()
    assert stream.texts == ["written to fd 1"]
    assert not capture.in_flight
