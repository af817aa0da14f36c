"""File descriptors 1 and 2 as the running cell's ``stream`` output.

``os.system``, ``os.write(1, ...)``, a C library's ``printf`` and child processes that
inherit the kernel's descriptors write below ``sys.stdout``.  While capture is on, fds 1 and
2 are pipes; a reader thread reads both (never blocking on one while the other fills) and
hands the text to the kernel's :class:`~async_kernel.shell.iostream.OutStream` of the same name,
stamped with the cell that is running.  What arrives while no cell runs goes where it went
before: the saved copies of the original descriptors, the kernel's terminal.  The kernel's
own logs write there too (``sys.__stdout__``/``sys.__stderr__`` and logging's stream
handlers are pointed at the copies).

Order.  A ``print`` lands in OutStream's buffer at once, while fd output waits in the pipe
until the reader thread has read it, so ``print; os.system; print`` could show the second
print before the command's output.  Every Python-level write (and every flush) therefore
first asks whether the pipes hold data, or the reader holds some it has read but not yet
handed on, and if so takes it first (:meth:`FdCapture.sync`).  The reader reads and hands on
under one lock, so data written before a ``print`` began is always in the buffer before
that print's text; whoever reads marks the data in flight until it is handed on.  The
transport's timed flush does not look at the pipes: it sends what is buffered, and the reader
hands on what it reads (handing on from the transport's thread could wait for a stream's lock
held by a writer that waits for that thread).
The check is libc's ``poll`` with a zero timeout, called with the GIL held (``PyDLL``, as
:mod:`async_kernel.transport.libzmq` does): ~0.3 µs, never blocks.  A look that released the
GIL (``select``'s calls do) let other threads run between the several writes of one
``print``, and prints from threads came out mixed mid-line (``AAAA 7AAAA 3``); the stream's
wake-up of the transport's thread keeps the GIL too (:mod:`async_kernel.clib`).  What still
splits a print is what splits one in any Python: a switch at the interpreter's switch
interval.
Where libc's ``poll`` cannot be bound, the look is ``select``'s epoll or poll.

C's own buffer.  ``printf`` writes into libc's ``stdout`` buffer, which for a pipe is
flushed only when full.  Capture makes that buffer line-buffered, as on a terminal, and
flushes it when a cell ends, so a C line appears where it was printed.

Which cell.  Descriptors belong to the process, not to a cell: fd output goes to the cell
that began most recently among those running (IPython's ``pre_execute``/``post_execute``
events).  A cell's end first takes everything written so far, then lets go.

Limit.  A C extension that writes more than a pipe holds (64 KiB) while holding the GIL
blocks until the reader runs, and the reader needs the GIL: as with any Python reader
(ipykernel's too), such code must release the GIL (ctypes' ``CDLL`` calls do).
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import io
import logging
import os
import select
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from ..clib import libc_function
from ..parent import current_request

if TYPE_CHECKING:
    from collections.abc import Callable

    from IPython.core.events import EventManager

    from ..parent import Request
    from .iostream import OutStream

__all__ = ["FdCapture", "start_fd_capture"]

log = logging.getLogger("async_kernel")

_READ_SIZE = 65536
_MAX_PER_TURN = 1 << 20  # bytes read under the lock before writers get a turn


def start_fd_capture(
    streams: tuple[OutStream, OutStream], events: EventManager, *, enabled: bool
) -> FdCapture | None:
    """Capture fds 1 and 2 into ``streams`` (stdout's, stderr's) if ``enabled``; None when off.

    The kernel turns it off in single-thread mode (the callback interface, Pyodide), where
    the host owns the process and its descriptors, and when its settings say so.  ``events``
    is the shell's: cells' starts and ends tell which cell fd output belongs to.
    """
    if not enabled:
        return None
    if os.name != "posix":  # select.poll on pipes is POSIX-only
        log.info("fd output capture is not available on this platform")
        return None
    capture = FdCapture(streams, events)
    try:
        capture.start()
    except OSError:
        log.warning(
            "fds 1 and 2 cannot be captured; fd output stays on the terminal", exc_info=True
        )
        return None
    return capture


class _Pipe:
    """One captured descriptor: the pipe's read end and the saved original."""

    def __init__(self, fd: int, stream: OutStream) -> None:
        self.fd = fd
        self.stream = stream
        self.saved = os.dup(fd)
        os.set_inheritable(self.saved, False)
        read, write = os.pipe()
        os.set_blocking(read, False)
        self.read_end = read
        self._write = write
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def redirect(self) -> None:
        os.dup2(self._write, self.fd)  # fd stays inheritable: children write to the pipe
        os.close(self._write)

    def restore(self) -> None:
        os.dup2(self.saved, self.fd)


class FdCapture:
    """Fds 1 and 2 redirected into the kernel's two OutStreams (see the module's docs)."""

    def __init__(self, streams: tuple[OutStream, OutStream], events: EventManager) -> None:
        self._streams = streams
        self._events = events
        self._pipes: list[_Pipe] = []
        self._by_read_end: dict[int, _Pipe] = {}
        self._lock = threading.Lock()
        self.in_flight = False  # the reader holds data it has not handed on yet
        self._owners: list[Request] = []  # running cells, oldest first
        # peek(0, 1): is there data in either pipe?  One syscall that never blocks, safe
        # from any thread: libc's poll with the GIL held (see Order in the module's docs);
        # where it cannot be bound, epoll if there is one (~0.15 µs, against ~0.2 for poll).
        use_epoll = _C_POLL is None and hasattr(select, "epoll")
        self._epoll = select.epoll() if use_epoll else None
        self._poll = select.poll()
        self.peek: Callable[[float, int], object] = self._peek_poll
        self._thread: threading.Thread | None = None
        self._running = False
        self._wake_r, self._wake_w = -1, -1
        self._terminal: list[TextIO] = []
        self._replaced: list[tuple[str, Any]] = []
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    # -- start and stop (main thread) --------------------------------------------------------
    def start(self) -> None:
        _flush_c_stdio()
        for original in (sys.__stdout__, sys.__stderr__):  # what is buffered stays there
            with contextlib.suppress(Exception):
                if original is not None:
                    original.flush()
        pipes = [_Pipe(fd, stream) for fd, stream in zip((1, 2), self._streams, strict=True)]
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        for pipe in pipes:
            self._point_terminal_writers_at(pipe)
            pipe.redirect()
            self._poll.register(pipe.read_end, select.POLLIN)
            if self._epoll is not None:
                self._epoll.register(pipe.read_end, select.EPOLLIN)
            self._by_read_end[pipe.read_end] = pipe
        self._pipes = pipes
        if _C_POLL is not None:
            self.peek = _c_peek(_C_POLL, [pipe.read_end for pipe in pipes])
        elif self._epoll is not None:
            self.peek = self._epoll.poll
        _line_buffer_c_stdout()
        for stream in self._streams:
            stream.attach_capture(self)
        self._running = True
        self._thread = threading.Thread(
            target=self._read_loop, name="async-kernel-fd-capture", daemon=True
        )
        self._thread.start()
        self._events.register("pre_execute", self.cell_started)
        self._events.register("post_execute", self.cell_ended)

    def _point_terminal_writers_at(self, pipe: _Pipe) -> None:
        """The kernel's own writers (``sys.__stdout__``/``__stderr__``, log handlers) keep
        writing to the terminal: a text file on the saved copy of the descriptor."""
        name = "__stdout__" if pipe.fd == 1 else "__stderr__"
        old = getattr(sys, name)
        terminal = io.TextIOWrapper(
            io.FileIO(pipe.saved, "w", closefd=False),
            encoding=getattr(old, "encoding", None) or "utf-8",
            errors="backslashreplace",
            line_buffering=True,
        )
        self._terminal.append(terminal)
        self._replaced.append((name, old))
        setattr(sys, name, terminal)
        for handler in _stream_handlers():
            stream = handler.stream
            if stream is old or _fileno(stream) == pipe.fd:
                self._handlers.append((handler, stream))
                handler.setStream(terminal)

    def stop(self) -> None:
        """Take what is left, give fds 1 and 2 back, end the reader (bounded)."""
        if not self._running:
            return
        self._events.unregister("pre_execute", self.cell_started)
        self._events.unregister("post_execute", self.cell_ended)
        _flush_c_stdio()
        self.sync(force=True)
        for stream in self._streams:
            stream.attach_capture(None)
        for pipe in self._pipes:
            pipe.restore()
        self._running = False
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sync(force=True)  # what a writer put in the pipes after the first look
        for handler, stream in self._handlers:
            handler.setStream(stream)
        for name, old in self._replaced:
            setattr(sys, name, old)
        for terminal in self._terminal:
            with contextlib.suppress(Exception):
                terminal.flush()
        for pipe in self._pipes:
            for fd in (pipe.read_end, pipe.saved):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.peek = _nothing_there  # a writer that saw this capture a moment ago
        if self._epoll is not None:
            self._epoll.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- which cell fd output belongs to (IPython events, in the cell's context) ----------------
    def cell_started(self) -> None:
        request = current_request()
        if request is not None:
            with self._lock:
                self._owners.append(request)

    def cell_ended(self) -> None:
        request = current_request()
        _flush_c_stdio()
        self.sync()  # (not forced: one look when the cell wrote nothing to the fds)
        if request is not None:
            with self._lock, contextlib.suppress(ValueError):
                self._owners.remove(request)

    def _peek_poll(self, timeout: float, _: int) -> list[tuple[int, int]]:
        try:
            return self._poll.poll(timeout)
        except RuntimeError:  # another thread is polling it: say yes, look under the lock
            return [(-1, 0)]

    # -- moving data --------------------------------------------------------------------
    def sync(self, *, force: bool = False) -> None:
        """Hand on everything written to fds 1 and 2 so far (called before each Python-level
        write and flush, never on the transport's thread: see Order in the module's docs)."""
        # The pipes first, then the reader's flag: data the reader takes between the two
        # looks is then still seen (as in flight), never missed by both.
        if force or self.peek(0, 1) or self.in_flight:
            with self._lock:
                self._read_available()

    def _read_loop(self) -> None:
        poller = select.poll()
        for pipe in self._pipes:
            poller.register(pipe.read_end, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while self._running:
            try:
                poller.poll()
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            if not self._running:
                break
            with self._lock:
                try:
                    self._read_available()
                except Exception:
                    log.exception("reading captured fd output failed")

    def _read_available(self) -> None:
        """Read both pipes until empty and hand the text on (the lock is held).

        Whichever thread reads (the reader, or a flush's :meth:`sync` on the transport's
        thread) holds the data up as in flight until it is handed on: a writer on another
        thread that finds the pipes empty meanwhile must wait for it, not go first.
        """
        try:  # set inside: an asynchronous exception must not leave it set
            self.in_flight = True
            self._read_pipes()
        finally:
            self.in_flight = False

    def _read_pipes(self) -> None:
        for pipe in self._pipes:
            total = 0
            while total < _MAX_PER_TURN:
                try:
                    data = os.read(pipe.read_end, _READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # closed during stop
                    break
                if not data:
                    break
                total += len(data)
                self._hand_on(pipe, data)

    def _hand_on(self, pipe: _Pipe, data: bytes) -> None:
        owner = self._owners[-1] if self._owners else None
        if owner is None:  # no cell runs: where it went before capture
            text = pipe.decoder.decode(b"", final=True)  # a partial character left behind
            try:
                if text:
                    os.write(pipe.saved, text.encode())
                _write_all(pipe.saved, data)
            except OSError:
                pass
            return
        text = pipe.decoder.decode(data)
        if text:
            pipe.stream.append(owner, text)


def _nothing_there(timeout: float, maxevents: int) -> list[tuple[int, int]]:
    return []


class _PollFd(ctypes.Structure):
    """C's ``struct pollfd``."""

    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


# No argtypes: the arguments are passed as ready ctypes objects (checking them against
# declared types would double the cost of a call).
_C_POLL = libc_function("poll", ctypes.c_int)
# nfds_t: unsigned long on Linux (glibc, musl), unsigned int on macOS and the BSDs.
_NFDS_T = ctypes.c_ulong if sys.platform.startswith("linux") else ctypes.c_uint


def _c_peek(poll: Any, fds: list[int]) -> Callable[[float, int], int]:
    """``peek`` over ``fds`` through libc's ``poll``: the number of descriptors with data (or
    -1 on an error, which sends the caller to look under the lock).  The timeout is always
    zero: a call that held the GIL while it waited would stop every thread."""
    pollfds = (_PollFd * len(fds))(*(_PollFd(fd, select.POLLIN, 0) for fd in fds))
    count = _NFDS_T(len(fds))

    def peek(timeout: float, maxevents: int) -> int:
        return poll(pollfds, count, 0)

    return peek


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _stream_handlers() -> list[logging.StreamHandler[Any]]:
    loggers: list[Any] = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return [
        handler
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
    ]


def _fileno(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except Exception:
        return None


# -- C stdio ---------------------------------------------------------------------------------
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except OSError:  # pragma: no cover - no C library to load
        return None


_LIBC = _libc()


def _flush_c_stdio() -> None:
    """Flush every C stdio stream (``fflush(NULL)``): printf output still in libc's buffer."""
    if _LIBC is not None:
        with contextlib.suppress(Exception):
            _LIBC.fflush(None)


def _line_buffer_c_stdout() -> None:
    """Make C's ``stdout`` line-buffered, as it is on a terminal (glibc, musl, macOS)."""
    if _LIBC is None:
        return
    for symbol in ("stdout", "__stdoutp"):
        try:
            stream = ctypes.c_void_p.in_dll(_LIBC, symbol)
        except ValueError:
            continue
        with contextlib.suppress(Exception):
            _LIBC.setvbuf(stream, None, 1, 0)  # _IOLBF is 1 on glibc, musl and macOS
        return
