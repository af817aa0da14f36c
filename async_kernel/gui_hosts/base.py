"""Machinery shared by GUI host loops: the call queue, the driver, the active host.

Why: every host does the same dance (start the guest, run the toolkit loop
until the guest is done, cancel the guest if the loop quit early, tear down),
and the kernel later needs to ask which host, Tk root or QApplication is live.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, TypeVarTuple, Unpack

from async_kernel.guest import Backend, Outcome, start_guest_run
from async_kernel.interrupt import sigint_blocked

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["CallQueue", "HostLoop", "HostName", "HostUnavailableError", "active_host", "drive"]

HostName = Literal["plain", "tk", "qt"]
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class HostUnavailableError(RuntimeError):
    """The requested host cannot run here; the message says what to install or set."""


class HostLoop(Protocol):
    """A toolkit event loop that owns the calling (main) thread."""

    @property
    def name(self) -> HostName: ...

    def run_sync_soon_threadsafe(self, fn: Callable[[], object]) -> None: ...
    def mainloop(self) -> None:
        """Run the toolkit loop until ``quit()``."""
        ...

    def quit(self) -> None: ...
    def close(self) -> None:
        """Tear the toolkit down (destroy the Tk root, quit the Qt app)."""
        ...


class CallQueue:
    """Thread-safe FIFO of callables drained on the host thread, one wake per batch.

    Why: toolkits' thread-safe wake-ups are costly (Tk marshals a call to its
    thread, Qt allocates an event), so wakes are coalesced; and a drain runs
    only what was queued when it started, so a busy guest cannot starve the
    toolkit's own events.  ``wake`` must arrange for ``drain()`` to run soon on
    the host thread and may be called from any thread.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._queue: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._wake = wake
        self._wake_pending = False
        self._draining = False

    def put(self, fn: Callable[[], object]) -> None:
        self._queue.put(fn)
        self._ensure_wake()

    def _ensure_wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake()
            except BaseException:
                self._wake_pending = False
                raise

    def drain(self) -> None:
        """Run the callables queued so far (host thread only)."""
        self._wake_pending = False  # before reading: later puts must wake again
        if self._draining:
            return  # a nested toolkit loop inside a callable: the outer drain goes on
        self._draining = True
        try:
            for _ in range(self._queue.qsize()):
                self._queue.get_nowait()()
        finally:
            self._draining = False
            if not self._queue.empty():
                self._ensure_wake()  # a nested drain or an exception left work behind


_active: HostLoop | None = None


def active_host() -> HostLoop | None:
    """The GUI host currently owning this process's main thread, if any."""
    return _active


def drive(
    host: HostLoop,
    backend: Backend,
    async_fn: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
) -> T:
    """Run ``async_fn(*args)`` as a guest of ``host`` and tear the host down after."""
    global _active
    if _active is not None:
        host.close()
        raise RuntimeError(f"the {_active.name!r} host loop is already running")
    results: list[Outcome[T]] = []

    def done(result: Outcome[T]) -> None:
        results.append(result)
        host.quit()

    _active = host
    try:
        with sigint_blocked():  # the guest's I/O thread must leave SIGINT to the main thread
            run = start_guest_run(
                backend,
                async_fn,
                *args,
                run_sync_soon_threadsafe=host.run_sync_soon_threadsafe,
                done_callback=done,
            )
        host.mainloop()
        while not results:  # someone else quit the loop: stop the guest, keep pumping
            run.cancel()
            host.mainloop()
    finally:
        _active = None
        host.close()
    return results[0].unwrap()
