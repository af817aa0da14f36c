"""Whole messages onto and off a ZMQ socket: libzmq called with the GIL held, else pyzmq.

The fast path every message takes.  Where :data:`.libzmq.LIBZMQ` is found (Linux), a message
of ``bytes`` frames goes through it: pyzmq gives the GIL up around every frame, which costs a
switch interval per frame while a cell spins the CPU (see :mod:`.libzmq`).  Otherwise, and for
messages with large or non-``bytes`` frames (zero-copy sends), pyzmq's backend calls are used
directly: ``Socket.send_multipart``/``recv_multipart`` check and dispatch each frame in
Python, several times the cost of these calls.

Going out, a frame below ``ZERO_COPY_SEND_FROM`` is copied by libzmq, which frees its copy
itself once the frame is written.  A larger one is sent from the caller's memory, which
libzmq hands back through pyzmq's garbage thread: a Python thread, so on a loaded machine
released frames wait for the GIL, and output flowing at hundreds of MB/s left that many MiB
waiting (measured: +186 MiB).  A stream's messages (at most ``iostream.MESSAGE_CHARS``
characters, under 1 MiB encoded) are therefore always copied; only a large display or comm
buffer travels without a copy.  Coming in, the threshold is ``ZERO_COPY_FROM``: a received
view is freed by its own finalizer, no thread involved.  Nothing here locks:
the caller holds the transport's lock (:attr:`.binding.Sockets.lock`), whichever thread it
runs on (the I/O thread, a thread sending directly, a loop reading its own channel).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable

import zmq
from zmq.backend import Socket as _BackendSocket

from .libzmq import LAST, LIBZMQ, MORE, ZERO_COPY_FROM
from .wire import Channel

__all__ = [
    "ZERO_COPY_FROM",
    "ZERO_COPY_SEND_FROM",
    "has_input",
    "notice_fd",
    "prepare_zero_copy",
    "recv_multipart",
    "send_multipart",
    "send_or_log",
    "size_of",
]

log = logging.getLogger("async_kernel.transport")

# pyzmq's backend calls, bound once: (socket, frame, flags, copy), (socket, flags, copy,
# track) and (socket, option).  Each is typed for the one way it is called here, which
# pyzmq's stubs cannot say (they choose by a literal `copy`, and an option's value may be
# bytes): hence their assignment ignores.
_Out = bytes | zmq.Frame  # a frame to send: bytes copied, or a Frame sent as it is
_send_frame: Callable[[zmq.Socket[bytes], _Out, int, bool], object] = _BackendSocket.send  # pyright: ignore[reportAssignmentType]
_recv_frame: Callable[[zmq.Socket[bytes], int, bool, bool], zmq.Frame] = _BackendSocket.recv  # pyright: ignore[reportAssignmentType]
_get_option: Callable[[zmq.Socket[bytes], int], int] = _BackendSocket.get  # pyright: ignore[reportAssignmentType]
# Plain ints, as libzmq.MORE and LAST are: an enum's operations cost ~0.5 us each.
_EVENTS = int(zmq.EVENTS)
_FD = int(zmq.FD)
_POLLIN = int(zmq.POLLIN)

ZERO_COPY_SEND_FROM = 1 << 20  # bytes; smaller frames are copied when sent (see the module)


def send_multipart(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """Send one message whole, frame by frame, through libzmq or pyzmq's backend.

    The frames go out from C (``map`` over the send call), so no bytecode runs between them:
    a KeyboardInterrupt, a signal handler or an asynchronous exception cannot strike
    mid-message and leave half of it on the socket.  Every frame is checked first (one that
    is not a buffer raises TypeError before anything is sent).  Non-blocking: our ROUTERs
    drop what they cannot route, and a full iopub raises zmq.Again before any frame is sent
    (see :mod:`.iopub`).  Large frames go out without a copy: libzmq holds the caller's
    buffer until the frame has been written, then releases it.  Their ``zmq.Frame`` wrappers
    are all made before the first frame is sent, since making one runs Python code (pyzmq
    registers the buffer with its garbage thread): made between two sends, it was where an
    asynchronous exception could cut a message in two.
    """
    small_bytes = True
    for frame in frames:
        if type(frame) is not bytes or len(frame) >= ZERO_COPY_SEND_FROM:
            small_bytes = False
            break
    if small_bytes and LIBZMQ is not None:
        LIBZMQ.send(sock.underlying, frames)
        return
    ready = [
        zmq.Frame(frame, copy=False) if size_of([frame]) >= ZERO_COPY_SEND_FROM else frame
        for frame in frames
    ]
    flags = [MORE] * len(ready)
    flags[-1] = LAST
    # Small frames are copied (no Python code either); the Frames are sent as they are.
    deque(map(_send_frame, itertools.repeat(sock), ready, flags, itertools.repeat(True)), 0)


def prepare_zero_copy() -> None:
    """Start now, on the calling thread, what pyzmq's first zero-copy frame starts: the import
    of its garbage collector and that collector's thread.

    Otherwise the first large frame sent starts them, on whichever thread sends it, maybe a
    cell's thread that an interrupt strikes half way through the start: pyzmq's collector is
    then left broken, and every later zero-copy send waits for it for ever.
    """
    zmq.Frame(bytes(ZERO_COPY_SEND_FROM), copy=False)


def recv_multipart(sock: zmq.Socket[bytes]) -> list[bytes]:
    """Read one waiting message whole, through libzmq or pyzmq's backend.

    ``Socket.recv_multipart`` asks the socket for ``zmq.RCVMORE`` after every frame, and
    pyzmq builds an enum to look up each option: a Frame's own ``more`` flag costs nothing
    (4.2 instead of 6.9 µs for a 7-frame request).  A message arrives whole, so no frame
    after the first can be missing.  A large frame (a comm buffer) is handed on as a view of
    libzmq's own memory, not copied: the view keeps the message alive for as long as the
    handler keeps it.
    """
    if LIBZMQ is not None:
        return LIBZMQ.recv(sock.underlying)
    frames: list[bytes] = []
    more = True
    while more:
        frame = _recv_frame(sock, LAST, False, False)
        # Its ignore: a view in a list of bytes, read as bytes are (as a buffer).
        frames.append(frame.bytes if len(frame) < ZERO_COPY_FROM else frame.buffer)  # pyright: ignore[reportArgumentType]
        more = frame.more
    return frames


def send_or_log(sock: zmq.Socket[bytes], channel: Channel, frames: list[bytes]) -> None:
    """Send, and log (not raise) what the socket refuses: the sender is not to blame."""
    try:
        send_multipart(sock, frames)
    except (zmq.ZMQError, TypeError, ValueError) as err:
        log.warning("could not send on %s: %s", channel, err)


def has_input(sock: zmq.Socket[bytes]) -> bool:
    """Whether a message waits; also re-arms the socket's descriptor (reads its commands).

    The descriptor (:func:`notice_fd`) is edge-triggered, and any operation on the socket, a
    send included, may consume the notice of a message that arrived meanwhile: a sender
    looks here after sending, and passes a waiting message on to the I/O thread.
    """
    return bool(_get_option(sock, _EVENTS) & _POLLIN)


def notice_fd(sock: zmq.Socket[bytes]) -> int:
    """The descriptor that turns readable when ``sock`` may have a message (``zmq.FD``)."""
    return _get_option(sock, _FD)


def size_of(frames: list[bytes]) -> int:
    """The bytes of a message's frames (bytes, or buffers such as a memoryview)."""
    return sum(len(f) if type(f) is bytes else memoryview(f).nbytes for f in frames)
