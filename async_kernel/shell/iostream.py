"""sys.stdout and sys.stderr as batched iopub ``stream`` messages.

Writes are buffered per parent and flushed by the transport's thread after a short interval,
or at once when the buffer grows large, so 100,000 ``print`` calls become a few dozen
messages, in order, with nothing lost.  The kernel flushes before every idle status.

With fd capture on (:mod:`async_kernel.shell.fdcapture`), what is written to fds 1 and 2 joins the
same buffer; each write and flush first takes in what the descriptors received before it,
so Python-level and fd-level output keep the order in which they were written.

Whole lines.  A ``print`` is several writes (its items, separators, end), and a thread that
waits anywhere in between (a lock another thread holds: on Python 3.13 locks hand themselves
over to a waiter) would let other threads' prints into its line.  So each thread's text
goes into the shared buffer a line at a time: what it writes after its last line's end waits
in a line of its own (per thread) until the end comes.  An unfinished line still goes out:
on the writer's own flush, once it began FLUSH_INTERVAL ago (a ``\r`` progress line shows
live), before fd output (which came after it), and on the kernel's flushes (before idle,
before an input prompt).
"""

from __future__ import annotations

import io
import threading
import time
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..cells import owed_anywhere
from ..interrupt import deliver_owed_interrupt
from ..parent import current_request
from ..transport.wire import new_message

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed import HasFileno

    from ..parent import Request
    from ..transport import Transport


__all__ = ["FdSource", "OutStream"]


class FdSource(Protocol):
    """What a stream needs from the fd capture feeding it (``fdcapture.FdCapture``)."""

    in_flight: bool  # the reader holds data it has not handed on yet
    # The pipes' readiness now, (timeout, max events) -> true if data waits (a poll result).
    peek: Callable[[float, int], object]

    def sync(self, *, force: bool = False) -> None:
        """Hand on what the pipes hold now, before the caller's own output."""
        ...


FLUSH_INTERVAL = 0.05  # seconds a write may wait before it is sent
FLUSH_SIZE = 256 * 1024  # characters buffered before a flush is asked for at once
# Characters buffered beyond which the writing thread flushes itself: when the transport's
# thread is starved (a loaded machine), a cell printing flat out is slowed to the pace of
# sending instead of growing the buffer without bound.
WRITER_FLUSH_SIZE = 4 * FLUSH_SIZE
TIMER_LOCK_WAIT = 0.01  # seconds a scheduled flush waits for a writer (see _flush_from_timer)
# Characters in one stream message at most: under 1 MiB of JSON even when every character is
# escaped (orjson: 6 bytes for a control character; the standard library's fallback, for a
# lone surrogate, 12 for an emoji).  What output nobody reads costs the kernel is counted in
# messages at the socket (iopub's per-subscriber queue): their size is the bound.
MESSAGE_CHARS = 80 * 1024


class OutStream(io.TextIOBase):
    """A text stream that publishes what is written to it on iopub."""

    def __init__(
        self,
        name: Literal["stdout", "stderr"],
        transport: Transport,
        *,
        fallback: HasFileno | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self._transport = transport
        self._fallback = fallback
        self._lock = threading.RLock()
        self._chunks: list[tuple[Request | None, list[str]]] = []
        # Each thread's unfinished line: [request, parts, when it began] (see Whole
        # lines); its characters are counted in _size.
        self._lines: dict[int, list[Any]] = {}
        self._size = 0
        self._flush_pending = False
        self._urgent_pending = False
        self._sending = False  # a flush has taken the buffer and is sending it
        self._capture: FdSource | None = None
        self._peek: Callable[[float, int], object] | None = None

    def attach_capture(self, capture: FdSource | None) -> None:
        """Take fd-level output in before each write and flush (None: stop doing so)."""
        self._capture = capture
        self._peek = None if capture is None else capture.peek

    # io.TextIOBase API
    encoding = "utf-8"

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        """The process's own descriptor: with fd capture on (the default), writes to it reach
        the cell like any other output; with it off they bypass the kernel."""
        if self._fallback is not None:
            return self._fallback.fileno()
        raise io.UnsupportedOperation("fileno")

    def write(self, s: object) -> int:
        if not isinstance(s, str):  # user code may pass anything, as to any text stream
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if not s:
            return 0
        peek, capture = self._peek, self._capture
        # Inlined (a print is two writes; each call saved is ~2% of its cost): fd output
        # the pipes hold, or the reader holds, goes into the buffer before ``s``.  The pipes
        # are looked at before the reader's flag: see Order in fdcapture.py.
        if peek is not None and capture is not None and (peek(0, 1) or capture.in_flight):
            capture.sync(force=True)
        request = current_request()
        size = len(s)
        ident = threading.get_ident()
        end = s.rfind("\n") + 1  # after the last line's end in ``s`` (0: none)
        with self._lock:
            line = self._lines.get(ident)
            if line is not None and line[0] is not request:  # begun for another request
                self._buffer(line[0], line[1])
                del self._lines[ident]
                line = None
            if not end:  # no line ends: the thread's line grows
                if line is None:
                    self._lines[ident] = [request, [s], time.monotonic()]
                else:
                    line[1].append(s)
            else:  # its line ends: into the buffer whole; what follows starts the next
                parts = [s[:end]] if line is None else [*line[1], s[:end]]
                self._buffer(request, parts)
                if end < len(s):
                    self._lines[ident] = [request, [s[end:]], time.monotonic()]
                elif line is not None:
                    del self._lines[ident]
            self._size += size
            if not self._flush_pending:  # _schedule_flush, inlined (the hot path)
                self._transport.call_later(FLUSH_INTERVAL, self._flush_from_timer)
                self._flush_pending = True
            elif self._size >= FLUSH_SIZE and not self._urgent_pending:
                self._transport.call_later(0, self._flush_from_timer)
                self._urgent_pending = True
            behind = self._size >= WRITER_FLUSH_SIZE
        if behind:
            self.flush()
        if owed_anywhere() and s[-1] == "\n":
            # The interrupt owed to this cell lands here, at the end of a line: a print is
            # several writes (its items, separators, end), and is not cut short.
            deliver_owed_interrupt()
        return size

    def append(self, request: Request | None, s: str) -> None:
        """Buffer ``s`` as output of ``request`` (fd capture hands its text in here; the
        same steps as :meth:`write`, without its look at the pipes).  The unfinished lines
        go first: their text was written before."""
        with self._lock:
            self._take_lines(everyone=True)
            self._buffer(request, [s])
            self._size += len(s)
            self._schedule_flush()

    def _buffer(self, request: Request | None, parts: list[str]) -> None:
        """Into the buffer, after what is there (the lock held)."""
        chunks = self._chunks
        if chunks and (last := chunks[-1])[0] is request:
            last[1].extend(parts)
        else:
            chunks.append((request, parts))

    def _take_lines(self, *, everyone: bool, begun_for: float = 0.0) -> None:
        """Move unfinished lines into the buffer (the lock held): every thread's
        (``everyone``), else this thread's and those begun ``begun_for`` ago or more.  Age,
        not quiet: a ``\\r`` progress line rewritten every few milliseconds still shows
        live; a print's writes come microseconds apart."""
        if not self._lines:
            return
        mine = threading.get_ident()
        since = time.monotonic() - begun_for
        for ident, line in list(self._lines.items()):
            if everyone or ident == mine or line[2] <= since:
                self._buffer(line[0], line[1])
                del self._lines[ident]

    def _schedule_flush(self) -> None:
        """Ask the transport's thread for a flush of what was just buffered (lock held).

        Each flag is set after its flush is scheduled: an asynchronous exception striking in
        between (an interrupt sent to a cell's thread) then leaves at worst one flush too
        many, never a flag that says a flush is coming when none is.
        """
        if not self._flush_pending:
            self._transport.call_later(FLUSH_INTERVAL, self._flush_from_timer)
            self._flush_pending = True
        elif self._size >= FLUSH_SIZE and not self._urgent_pending:
            self._transport.call_later(0, self._flush_from_timer)
            self._urgent_pending = True

    def writelines(self, lines: Iterable[object]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Publish everything written so far, in order, each part to its own parent: this
        thread's unfinished line too, not another thread's that it may be printing now."""
        self._flush(wait=True, lines="mine")

    def flush_all(self, *, fds: bool = True) -> None:
        """The kernel's flush (before idle, before an input prompt): every thread's
        unfinished line too; with ``fds``, what fds 1 and 2 got so far first."""
        self._flush(wait=True, sync_fd=fds, lines="all")

    def _flush_from_timer(self) -> None:
        """The scheduled flush, on the transport's thread: it must not wait long for a lock.

        A writer holds the lock for a moment; but the holder may also be a writer flushing
        itself whose send waits for the transport's thread to make room in a full outbox, and
        waiting for it here would be a deadlock.  So the wait is short, and on time-out the
        flush is tried again later: the holder sends what it took, the retry what follows.
        Nor does it take in what fds 1 and 2 got: handing that on takes the capture's lock and
        then a stream's lock without a time limit, which the same writer may hold.  The
        capture's reader hands fd output on itself, and its text schedules its own flush;
        the order of output is kept by the writers, each of which takes fd output in first.
        """
        self._flush(wait=False, sync_fd=False, lines="idle")

    def _flush(
        self, *, wait: bool, lines: Literal["all", "mine", "idle"], sync_fd: bool = True
    ) -> None:
        capture = self._capture
        if capture is not None and sync_fd:
            capture.sync()
        if not self._chunks and not self._sending and not self._lines:
            # Nothing written (the common case: the kernel flushes twice per request).
            # A write that finished before this call is in the list already; one racing
            # with it is sent by the flush its own write scheduled.  A flush on another
            # thread that has taken the list but not sent it all yet (``_sending``, set
            # before the list is taken) is waited for below: what it holds must leave
            # before whatever this caller sends next (the idle status).
            return
        if wait:
            # ``with``, not acquire-then-try: a cell's thread may be sent an asynchronous
            # exception (an interrupt, a cancelled to_thread call) while it waits for the
            # lock, and raised between an ``acquire`` and its ``try`` it would keep the lock
            # taken for ever (every later print on every thread would hang).
            with self._lock:
                self._send_buffered(lines)
        elif self._lock.acquire(timeout=TIMER_LOCK_WAIT):  # the transport's thread: none sent
            try:
                self._send_buffered(lines)
            finally:
                self._lock.release()
        else:
            self._transport.call_later(FLUSH_INTERVAL, self._flush_from_timer)

    def _send_buffered(self, lines: Literal["all", "mine", "idle"]) -> None:
        """Take the buffer and send it, in order, each parent's text in messages of at most
        ``MESSAGE_CHARS``, cut after a line's end where there is one (front ends join
        consecutive stream messages, but a notebook saved without joining them keeps each as
        an output of its own; the lock is held).  ``lines``: which unfinished lines go too
        (a timer's flush: those FLUSH_INTERVAL old; it comes again for the others)."""
        self._sending = True
        try:
            if lines == "idle":
                self._take_lines(everyone=False, begun_for=FLUSH_INTERVAL)
            else:
                self._take_lines(everyone=lines == "all")
            chunks, self._chunks = self._chunks, []
            self._size = sum(len(part) for line in self._lines.values() for part in line[1])
            self._flush_pending = False
            self._urgent_pending = False
            if self._lines:  # unfinished lines left: a flush for them later
                self._schedule_flush()
            for request, parts in chunks:
                parent = request.msg if request is not None else None
                text = "".join(parts)
                start = 0
                while start < len(text):
                    end = start + MESSAGE_CHARS
                    if end < len(text) and (newline := text.rfind("\n", start, end)) >= 0:
                        end = newline + 1
                    content = {"name": self.name, "text": text[start:end]}
                    self._transport.send("iopub", new_message("stream", content, parent))
                    start = end
        finally:
            self._sending = False

    def close(self) -> None:
        """Closing the kernel's stream only flushes it: a cell must not deafen the kernel."""
        self.flush()

    @property
    def closed(self) -> bool:
        return False
