"""Which request a piece of output belongs to.

The parent is kept in a ContextVar, never on the kernel object: concurrent handlers would
otherwise stamp each other's output (ipykernel #1414).  Tasks inherit it by copying the
context; threads do not, so a thread remembers the parent of whoever started it.
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

__all__ = ["Request", "current_request", "install_thread_inheritance", "request_context"]


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


_current: ContextVar[Request | None] = ContextVar("async_kernel_request", default=None)
_THREAD_ATTR = "_async_kernel_request"


def current_request() -> Request | None:
    """The request of this task, or of the code that started this thread."""
    request = _current.get()
    if request is None:
        request = getattr(threading.current_thread(), _THREAD_ATTR, None)
    return request


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
    """Let a thread started by a cell send its output to that cell, even after it ends."""
    global _installed
    if _installed:
        return
    _installed = True
    original_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        setattr(self, _THREAD_ATTR, current_request())
        original_start(self)

    threading.Thread.start = start

    # A pool's worker thread outlives the cell that started it: each submitted call must
    # carry the request of the code that submitted it instead.
    original_submit = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    ThreadPoolExecutor.submit = submit
