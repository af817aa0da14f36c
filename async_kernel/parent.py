"""Which request a piece of output belongs to.

The parent is kept in a ContextVar, never on the kernel object: concurrent handlers would
otherwise stamp each other's output (ipykernel #1414).  Tasks inherit it by copying the
context; threads do not, so a thread remembers the parent of whoever started it.

Code with no request in its context (a thread, or a kernel task started outside any request)
writes to, in this order: the cell that started its thread while that cell runs (concurrent
cells do not take each other's output); else the cell started last of those running (a pool
or queue worker an earlier cell started, serving the cell now running: clients keep only
output whose parent is the cell they run); else the cell that started its thread, finished;
else the cell started last, finished (a library's own thread is never sent parentless).
"""

from __future__ import annotations

import _thread
import contextvars
import threading
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Request",
    "current_request",
    "install_thread_inheritance",
    "own_request",
    "request_context",
    "running_cell",
]


def _no_identities() -> list[bytes]:
    return []


@dataclass(frozen=True, slots=True)
class Request:
    """The message being handled, where it came from, and what the client allows.

    A request is handled once: whoever handles it first claims it (:meth:`claim`).  Its lane's
    loop usually does; a request that loop has not taken up soon enough (the loop is
    blocked) may be claimed by the router's responder thread instead (see :mod:`.router`).
    """

    msg: dict[str, Any]  # a transport.wire.Message (this module sits below the transport)
    channel: str = "shell"
    identities: list[bytes] = field(default_factory=_no_identities)
    seq: int = 0  # arrival order among the kernel's requests (the router numbers them)
    _claim: _thread.LockType = field(
        default_factory=_thread.allocate_lock, compare=False, repr=False
    )

    def claim(self) -> bool:
        """Take this request for handling; False if someone already has (any thread)."""
        return self._claim.acquire(False)

    @property
    def claimed(self) -> bool:
        """Whether someone has taken this request for handling."""
        return self._claim.locked()

    @property
    def allow_stdin(self) -> bool:
        return bool(self.msg["content"].get("allow_stdin", False))


# Unset (``_UNSET``) in a context no request set; None where one was set to none on purpose
# (a task whose messages belong to no request).
_current: ContextVar[Request | None] = ContextVar("async_kernel_request")
_UNSET: Any = object()
_THREAD_ATTR = "_async_kernel_request"
# The cells running now, in the order they started, and the cell started last.  Changed under
# the lock by the threads cells run on; read without it (each name is replaced as a whole).
_cells_lock = threading.Lock()
_running: tuple[Request, ...] = ()
_latest: Request | None = None


def current_request() -> Request | None:
    """The request of this task; without one, the cell its output belongs to (see above)."""
    request = _current.get(_UNSET)
    if request is not _UNSET:
        return request
    started = _started_by()
    running = _running
    if started is not None and any(cell is started for cell in running):
        return started
    if running:
        return running[-1]
    return started if started is not None else _latest


def own_request() -> Request | None:
    """The request this code runs for: its context's, or that of the code that started its
    thread; None for code no request started (the kernel's own tasks and threads), which
    must not be counted as a cell's (its tasks listed, its failures shown under a cell)."""
    request = _current.get(_UNSET)
    return _started_by() if request is _UNSET else request


def _started_by() -> Request | None:
    """The request of the code that started this thread (None: no request started it)."""
    return getattr(threading.current_thread(), _THREAD_ATTR, None)


@contextmanager
def running_cell(request: Request) -> Generator[None]:
    """Count ``request`` (an execute_request) among the running cells while in this block."""
    global _running, _latest
    with _cells_lock:
        _running = (*_running, request)
        _latest = request
    try:
        yield
    finally:
        with _cells_lock:
            _running = tuple(cell for cell in _running if cell is not request)


@contextmanager
def request_context(request: Request) -> Generator[Request]:
    token = _current.set(request)
    try:
        yield request
    finally:
        _current.reset(token)


def set_request(request: Request | None) -> None:
    """Make ``request`` current for the rest of this context (a task's own context)."""
    _current.set(request)


_installed = False


def install_thread_inheritance() -> None:
    """Let a thread started by a cell send its output to that cell (see above)."""
    global _installed
    if _installed:
        return
    _installed = True
    original_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        # The starter's own request only: a thread that code with none started belongs to
        # no cell (it follows the running cells instead).
        setattr(self, _THREAD_ATTR, own_request())
        original_start(self)

    threading.Thread.start = start

    # A pool's worker thread outlives the cell that started it: each submitted call must
    # carry the request of the code that submitted it instead.
    original_submit = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    ThreadPoolExecutor.submit = submit
