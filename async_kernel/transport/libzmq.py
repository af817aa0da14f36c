"""libzmq's send and receive called with the GIL held: no hand-back per frame.

pyzmq releases the GIL around every frame it sends or receives.  While a cell spins the CPU,
the spinning thread takes the GIL at each release, and the kernel's thread waits the
interpreter's switch interval (5 ms) to get it back: per *frame*.  Measured on this project's
2-vCPU VM with ``sys.setswitchinterval(0.05)`` and a thread spinning: a 7-frame send through
pyzmq took 351 ms (7 x 50), three of them 1052 ms; the same three through these calls 0.1 ms.
A request and its busy, reply and idle are about 28 frames: the difference between an answer
in one switch interval and in many.  Idle, both ways cost the same (~7-10 us per message).

Only non-blocking calls are made (``ZMQ_DONTWAIT``): libzmq never waits inside them, so
holding the GIL through them costs the other threads nothing.  The library called is the very
copy pyzmq loaded, found in the process's memory map and its version checked, and the sockets
are pyzmq's own, passed by ``Socket.underlying`` (the address pyzmq exposes for other
bindings).  Where that copy cannot be found (not Linux, libzmq linked into pyzmq's extension),
:data:`LIBZMQ` is None and :mod:`.frames` uses pyzmq's calls.

A large received frame (``ZERO_COPY_FROM`` bytes or more) is not copied: it is handed on as a
memoryview of libzmq's message, which is closed when the last view of it is gone.
"""

from __future__ import annotations

import ctypes
import itertools
import sys
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

__all__ = ["LAST", "LIBZMQ", "MORE", "ZERO_COPY_FROM", "Libzmq", "find_pyzmq_libzmq"]

ZERO_COPY_FROM = 64 * 1024  # bytes; below this, copying a frame is cheaper than tracking it

# A frame's flags, as plain ints (pyzmq's constants are enums, and `|` on one builds a new
# enum, ~0.5 us, on a path taken several times per request): non-blocking, more to come or not.
MORE = int(zmq.SNDMORE | zmq.DONTWAIT)
LAST = int(zmq.DONTWAIT)
_EAGAIN = int(zmq.EAGAIN)


class _Msg(ctypes.Structure):
    """libzmq's ``zmq_msg_t``: 64 opaque bytes, 8-aligned."""

    _fields_ = [("_", ctypes.c_uint64 * 8)]


def _error(errno: int) -> zmq.ZMQError:
    return zmq.Again(errno) if errno == _EAGAIN else zmq.ZMQError(errno)


class Libzmq:
    """Whole messages sent and received through libzmq with the GIL held."""

    def __init__(self, lib: ctypes.PyDLL) -> None:
        msg_p = ctypes.POINTER(_Msg)
        self._send: Callable[[int, bytes, int, int], int] = _bind(
            lib.zmq_send,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_int,
        )
        self._errno: Callable[[], int] = _bind(lib.zmq_errno, ctypes.c_int)
        self._msg_init: Callable[[_Msg], int] = _bind(lib.zmq_msg_init, ctypes.c_int, msg_p)
        self._msg_recv: Callable[[_Msg, int, int], int] = _bind(
            lib.zmq_msg_recv, ctypes.c_int, msg_p, ctypes.c_void_p, ctypes.c_int
        )
        self._msg_data: Callable[[_Msg], int] = _bind(lib.zmq_msg_data, ctypes.c_void_p, msg_p)
        self._msg_more: Callable[[_Msg], int] = _bind(lib.zmq_msg_more, ctypes.c_int, msg_p)
        self._msg_close: Callable[[_Msg], int] = _bind(lib.zmq_msg_close, ctypes.c_int, msg_p)
        # One flags list per message length, built once: all but the last frame say "more".
        self._flags: dict[int, list[int]] = {}

    def send(self, handle: int, frames: list[bytes]) -> None:
        """Send one message of ``bytes`` frames on the socket at ``handle``, whole or not at all.

        Only the first frame can be refused (a full iopub: :class:`zmq.Again`); once it is
        taken, libzmq takes the rest.  The frames go out from C (``map`` consumed by
        ``deque``), and the ``finally`` sends what is left of a started message even if an
        asynchronous exception strikes between the first frame and the rest.
        """
        flags = self._flags.get(len(frames))
        if flags is None:
            flags = self._flags[len(frames)] = [MORE] * (len(frames) - 1) + [LAST]
        rest = map(self._send, itertools.repeat(handle), frames, map(len, frames), flags)
        try:
            if next(rest) < 0:
                rest = iter(())  # nothing was sent: send nothing more
                raise _error(self._errno())
        finally:
            deque(rest, 0)

    def recv(self, handle: int) -> list[bytes]:
        """Read the message waiting on the socket at ``handle`` (:class:`zmq.Again` if none).

        A message arrives whole, so no frame after the first can be missing.  Small frames are
        copied into bytes; a large one is a memoryview of libzmq's message (see the module).
        """
        msg = _Msg()
        self._msg_init(msg)
        frames: list[bytes] = []
        try:
            while True:
                size = self._msg_recv(msg, handle, LAST)
                if size < 0:
                    raise _error(self._errno())
                more = self._msg_more(msg)
                if size < ZERO_COPY_FROM:
                    frames.append(ctypes.string_at(self._msg_data(msg), size))
                else:  # the message becomes the view's; a new one for the next frame
                    frames.append(self._view(msg, size))  # pyright: ignore[reportArgumentType]  # a buffer in a list of bytes, read as bytes are
                    msg = _Msg()
                    self._msg_init(msg)
                if not more:
                    return frames
        finally:
            self._msg_close(msg)

    def _view(self, msg: _Msg, size: int) -> memoryview:
        """A byte view of ``msg``'s data that closes ``msg`` once no view needs it."""
        data = (ctypes.c_char * size).from_address(self._msg_data(msg))
        weakref.finalize(data, self._msg_close, msg)
        return memoryview(data).cast("B")


def _bind(fn: Any, restype: Any, *argtypes: Any) -> Any:
    """Declare a libzmq function's C signature (ctypes' attributes are untyped)."""
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


def find_pyzmq_libzmq() -> str | None:
    """The path of the libzmq pyzmq loaded, if this process maps exactly one (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "libzmq" in line}
    except OSError:
        return None
    paths = {p for p in paths if p.startswith("/")}
    return paths.pop() if len(paths) == 1 else None


def _load() -> Libzmq | None:
    path = find_pyzmq_libzmq()
    if path is None:
        return None
    try:
        lib = ctypes.PyDLL(path)  # PyDLL: its calls keep the GIL
        major, minor, patch = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        lib.zmq_version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
        if (major.value, minor.value, patch.value) != zmq.zmq_version_info():
            return None
        return Libzmq(lib)
    except (OSError, AttributeError):
        return None


LIBZMQ: Libzmq | None = _load()
"""The libzmq pyzmq uses, called with the GIL held; None where it cannot be found."""
