"""Pending: the result of work running on another thread or loop, awaited from anywhere.

One object is enough whatever the two sides run: it can be awaited from asyncio or trio, or
waited on synchronously from a plain thread, because completion is an ``aiologic.Event``
(built for exactly that meeting point).  Cancellation goes both ways: :meth:`Pending.cancel`
stops the work wherever it runs, and a waiter that is itself cancelled cancels the work
(unless it waits with ``shield=True``).

Beside the class: :func:`current_pending` (the Pending the running function serves).  Many
Pendings at once (``as_completed``, ``wait``, ``PendingGroup``) are in ``groups``.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Generator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload

if TYPE_CHECKING:
    import aiologic

__all__ = ["Pending", "PendingCancelled", "current_pending"]

T = TypeVar("T")

log = logging.getLogger("async_kernel.toolkit.pending")

_current_pending: ContextVar[Pending[Any] | None] = ContextVar(
    "async_kernel_current_pending", default=None
)


class _Group(Protocol):
    """What a new Pending uses of the group it joins (``groups.PendingGroup``, which
    imports this module)."""

    def add(self, pending: Pending[Any]) -> object: ...


#: The PendingGroup whose block the code runs in (a new Pending joins it).
current_group: ContextVar[_Group | None] = ContextVar("async_kernel_pending_group", default=None)


def current_pending() -> Pending[Any] | None:
    """The Pending whose work is running in this context (None outside any).

    Set for functions run by :meth:`Caller.call_soon`, :meth:`Caller.call_later`,
    :meth:`Caller.queue_call` and :meth:`Caller.to_thread`; the function may read its
    ``metadata`` or check ``cancel_requested``.
    """
    return _current_pending.get()


def enter_work(pending: Pending[Any]) -> None:
    """Called by the side doing the work, in the work's own (copied) context."""
    _current_pending.set(pending)
    current_group.set(None)  # work started inside a group does not add to it by itself


def to_await(result: object) -> bool:
    """Whether a function's result is work to await (a Pending returned is a value)."""
    return inspect.isawaitable(result) and not isinstance(result, Pending)


class PendingCancelled(Exception):
    """The work behind a Pending was cancelled before it produced a result."""


class Pending(Generic[T]):
    """A thread-safe, awaitable, cancellable result of work done elsewhere.

    The side doing the work calls :meth:`set_result`, :meth:`set_exception` or
    :meth:`set_cancelled` once, and may register a canceller with :meth:`set_canceller`.
    The side waiting uses ``await pending`` (asyncio or trio), :meth:`wait` (with a timeout,
    or shielded), :meth:`result` (blocking, from a plain thread), :meth:`add_done_callback`
    and :meth:`cancel`.  ``metadata`` is a free-form dict for either side.

    A Pending created inside a :class:`PendingGroup` block joins that group.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_canceller",
        "_done",
        "_exception",
        "_finished",
        "_lock",
        "_metadata",
        "_result",
        "_wants_cancel",
    )

    def __init__(self, metadata: dict[str, Any] | None = None) -> None:
        import aiologic  # imported on first use: it costs ~50 ms of kernel start-up

        self._done: aiologic.Event = aiologic.Event()
        self._lock = threading.Lock()  # guards completion and the canceller; held briefly
        self._result: tuple[T] | None = None  # (the result,) once set_result was called
        self._exception: BaseException | None = None
        self._finished = False
        self._canceller: Callable[[], object] | None = None
        self._wants_cancel = False
        self._callbacks: list[Callable[[Pending[T]], object]] | None = []
        self._metadata = metadata
        group = current_group.get()
        if group is not None:
            group.add(self)

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form information about the work (a name, a progress count...)."""
        if self._metadata is None:
            self._metadata = {}
        return self._metadata

    # -- the side doing the work -------------------------------------------------------------
    def _finish(self, result: tuple[T] | None, error: BaseException | None) -> bool:
        with self._lock:
            if self._finished:
                return False
            self._finished = True
            self._result = result
            self._exception = error
            callbacks, self._callbacks = self._callbacks, None
            self._canceller = None
        self._done.set()
        for callback in callbacks or ():
            self._call(callback)
        return True

    def _call(self, callback: Callable[[Pending[T]], object]) -> None:
        try:
            callback(self)
        except Exception:
            log.exception("done callback %r of %r failed", callback, self)

    def set_result(self, value: T) -> bool:
        """Complete with ``value``; False if the Pending was done already."""
        return self._finish((value,), None)

    def set_exception(self, error: BaseException) -> bool:
        """Complete with ``error``; False if the Pending was done already."""
        return self._finish(None, error)

    def set_cancelled(self, why: str = "cancelled") -> bool:
        """Complete as cancelled (waiters see :class:`PendingCancelled`)."""
        return self._finish(None, PendingCancelled(why))

    def set_canceller(self, canceller: Callable[[], object] | None) -> None:
        """How to stop the work (thread-safe; called at once if cancel() came first)."""
        with self._lock:
            if self._finished:
                return
            self._canceller = canceller
            call_now = self._wants_cancel and canceller is not None
        if call_now:
            assert canceller is not None
            canceller()

    @property
    def cancel_requested(self) -> bool:
        """Whether :meth:`cancel` was called (the work may still be finishing)."""
        return self._wants_cancel

    # -- the side waiting ----------------------------------------------------------------------
    def cancel(self, why: str = "cancelled") -> bool:
        """Ask the work to stop (thread-safe); waiters then see PendingCancelled.

        Work with a canceller (a task on a caller's loop, an async function on a worker
        thread) is cancelled where it runs and the Pending completes when it has stopped.
        A plain function on a :meth:`Caller.to_thread` worker gets ``CancelledInThread``
        raised in it at its next Python bytecode, and the Pending completes as cancelled
        at once (a call into C stops only when it returns to Python).  Other work (a
        plain function running as a loop's callback) is not interrupted: the Pending
        completes as cancelled at once and the function's result is dropped.  Returns
        False if the Pending was done already.
        """
        with self._lock:
            if self._wants_cancel or self._finished:
                return False
            self._wants_cancel = True
            canceller = self._canceller
        if canceller is not None:
            canceller()
        else:
            self.set_cancelled(why)
        return True

    def add_done_callback(self, callback: Callable[[Pending[T]], object]) -> None:
        """Call ``callback(pending)`` once it is done, on the thread that completes it
        (at once, here, if it is done already).  A failing callback is logged."""
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.append(callback)
                return
        self._call(callback)

    def remove_done_callback(self, callback: Callable[[Pending[T]], object]) -> bool:
        """Forget ``callback``; True if it was registered and not yet called."""
        with self._lock:
            if self._callbacks is not None and callback in self._callbacks:
                self._callbacks.remove(callback)
                return True
        return False

    def done(self) -> bool:
        """Whether it has completed (with a result, an error, or cancelled)."""
        return self._done.is_set()

    def cancelled(self) -> bool:
        """Whether it completed as cancelled."""
        return self._done.is_set() and isinstance(self._exception, PendingCancelled)

    def result(self, timeout: float | None = None) -> T:
        """Block this thread until the result is there; TimeoutError after ``timeout``.

        Never call it on the loop doing the work: that loop would wait for itself.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"no result within {timeout} s")
        return self._outcome()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error it completed with (None for a result), blocking like :meth:`result`."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"no result within {timeout} s")
        return self._exception

    @overload
    async def wait(
        self, timeout: float | None = None, *, shield: bool = False, result: Literal[True] = True
    ) -> T: ...
    @overload
    async def wait(
        self, timeout: float | None = None, *, shield: bool = False, result: Literal[False]
    ) -> None: ...
    async def wait(
        self, timeout: float | None = None, *, shield: bool = False, result: bool = True
    ) -> T | None:
        """Await completion from any backend.

        Returns the result (raising the work's error) unless ``result=False`` (then None
        and no error).  After ``timeout`` seconds raises TimeoutError.  If the waiter is
        cancelled or times out, the work is cancelled too, unless ``shield`` is true.
        """
        if not self._done.is_set():
            try:
                if timeout is None:
                    await self._done
                else:
                    import anyio

                    with anyio.move_on_after(timeout):
                        await self._done
                    if not self._done.is_set():
                        raise TimeoutError(f"no result within {timeout} s")
            except BaseException:
                if not shield and not self._done.is_set():
                    self.cancel()
                raise
        if not result:
            return None
        return self._outcome()

    def __await__(self) -> Generator[Any, Any, T]:
        return self.wait().__await__()

    def _outcome(self) -> T:
        if self._exception is not None:
            raise self._exception
        assert self._result is not None  # done without an error: set_result was called
        return self._result[0]

    def __repr__(self) -> str:
        if not self._done.is_set():
            state = "cancelling" if self._wants_cancel else "pending"
        elif self._exception is not None:
            state = f"error={self._exception!r}"
        else:
            state = f"result={self._result[0] if self._result is not None else None!r}"
        name = "" if not self._metadata else f" {self._metadata.get('name', '')}".rstrip()
        return f"<Pending{name} {state}>"
