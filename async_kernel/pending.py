"""Pending: the result of work running on another thread or loop, awaited from anywhere.

One object is enough whatever the two sides run: it can be awaited from asyncio or trio, or
waited on synchronously from a plain thread, because completion is an ``aiologic.Event``
(built for exactly that meeting point).  Cancellation goes both ways: :meth:`Pending.cancel`
stops the work wherever it runs, and a waiter that is itself cancelled cancels the work.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Pending", "PendingCancelled"]

T = TypeVar("T")


class PendingCancelled(Exception):
    """The work behind a Pending was cancelled before it produced a result."""


class Pending(Generic[T]):
    """A thread-safe, awaitable, cancellable result of work done elsewhere.

    The side doing the work calls :meth:`set_result`, :meth:`set_exception` or
    :meth:`set_cancelled` once, and may register a canceller with :meth:`set_canceller`.
    """

    __slots__ = ("_canceller", "_done", "_exception", "_lock", "_result", "_wants_cancel")

    def __init__(self) -> None:
        import aiologic  # imported on first use: it costs ~50 ms of kernel start-up

        self._done = aiologic.Event()
        self._lock = aiologic.Lock()  # guards the canceller hand-over; held only briefly
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._canceller: Callable[[], object] | None = None
        self._wants_cancel = False

    # -- the side doing the work -------------------------------------------------------------
    def set_result(self, value: T) -> None:
        if not self._done.is_set():
            self._result = value
            self._done.set()

    def set_exception(self, error: BaseException) -> None:
        if not self._done.is_set():
            self._exception = error
            self._done.set()

    def set_cancelled(self, why: str = "cancelled") -> None:
        self.set_exception(PendingCancelled(why))

    def set_canceller(self, canceller: Callable[[], object] | None) -> None:
        """How to stop the work (thread-safe; called at once if cancel() came first)."""
        with self._lock:
            self._canceller = canceller
            call_now = self._wants_cancel and canceller is not None
        if call_now:
            assert canceller is not None
            canceller()

    @property
    def cancel_requested(self) -> bool:
        return self._wants_cancel

    # -- the side waiting ----------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the work to stop (thread-safe); waiters then see PendingCancelled."""
        with self._lock:
            if self._wants_cancel or self._done.is_set():
                return
            self._wants_cancel = True
            canceller = self._canceller
        if canceller is not None:
            canceller()
        else:
            self.set_cancelled()

    def done(self) -> bool:
        return self._done.is_set()

    def cancelled(self) -> bool:
        return isinstance(self._exception, PendingCancelled)

    def result(self, timeout: float | None = None) -> T:
        """Block this thread until the result is there (never call it on the work's loop)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"no result within {timeout} s")
        return self._outcome()

    def exception(self) -> BaseException | None:
        return self._exception

    async def wait(self) -> T:
        """Await the result from any backend; if the waiter is cancelled, so is the work."""
        try:
            await self._done
        except BaseException:
            if not self._done.is_set():
                self.cancel()
            raise
        return self._outcome()

    def __await__(self) -> Generator[Any, Any, T]:
        return self.wait().__await__()

    def _outcome(self) -> T:
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[return-value]

    def __repr__(self) -> str:
        if not self._done.is_set():
            state = "cancelling" if self._wants_cancel else "pending"
        elif self._exception is not None:
            state = f"error={self._exception!r}"
        else:
            state = f"result={self._result!r}"
        return f"<Pending {state}>"
