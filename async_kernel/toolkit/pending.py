"""Pending: the result of work running on another thread or loop, awaited from anywhere.

One object is enough whatever the two sides run: it can be awaited from asyncio or trio, or
waited on synchronously from a plain thread, because completion is an ``aiologic.Event``
(built for exactly that meeting point).  Cancellation goes both ways: :meth:`Pending.cancel`
stops the work wherever it runs, and a waiter that is itself cancelled cancels the work
(unless it waits with ``shield=True``).

Beside the class: :func:`as_completed` and :func:`wait` over many Pendings,
:class:`PendingGroup` (all members cancelled when one fails or the block is left by an
error) and :func:`current_pending` (the Pending the running function serves).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar

if TYPE_CHECKING:
    import aiologic

__all__ = [
    "Pending",
    "PendingCancelled",
    "PendingGroup",
    "as_completed",
    "current_pending",
    "wait",
]

T = TypeVar("T")

log = logging.getLogger("async_kernel.toolkit.pending")

_current_pending: ContextVar[Pending[Any] | None] = ContextVar(
    "async_kernel_current_pending", default=None
)
_current_group: ContextVar[PendingGroup | None] = ContextVar(
    "async_kernel_pending_group", default=None
)


def current_pending() -> Pending[Any] | None:
    """The Pending whose work is running in this context (None outside any).

    Set for functions run by :meth:`Caller.call_soon`, :meth:`Caller.call_later`,
    :meth:`Caller.queue_call` and :meth:`Caller.to_thread`; the function may read its
    ``metadata`` or check ``cancel_requested``.
    """
    return _current_pending.get()


def _enter_work(pending: Pending[Any]) -> None:  # pyright: ignore[reportUnusedFunction]
    """Called by the side doing the work, in the work's own (copied) context."""
    _current_pending.set(pending)
    _current_group.set(None)  # work started inside a group does not add to it by itself


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
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._finished = False
        self._canceller: Callable[[], object] | None = None
        self._wants_cancel = False
        self._callbacks: list[Callable[[Pending[T]], object]] | None = []
        self._metadata = metadata
        group = _current_group.get()
        if group is not None:
            group.add(self)

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form information about the work (a name, a progress count...)."""
        if self._metadata is None:
            self._metadata = {}
        return self._metadata

    # -- the side doing the work -------------------------------------------------------------
    def _finish(self, result: T | None, error: BaseException | None) -> bool:
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
        return self._finish(value, None)

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
        thread) is cancelled where it runs and the Pending completes when it has stopped;
        other work (a plain function already running on a thread) cannot be stopped, so
        the Pending completes as cancelled at once and the function's result is dropped.
        Returns False if the Pending was done already.
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

    async def wait(
        self, timeout: float | None = None, *, shield: bool = False, result: bool = True
    ) -> T:
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
            return None  # type: ignore[return-value]
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
        name = "" if not self._metadata else f" {self._metadata.get('name', '')}".rstrip()
        return f"<Pending{name} {state}>"


# -- many Pendings ----------------------------------------------------------------------------
class as_completed(Generic[T]):  # used like a function, as asyncio's is
    """Iterate over Pendings in the order they complete.

    ``async for p in as_completed(pendings)`` from asyncio or trio code, or
    ``for p in as_completed(pendings)`` from a plain thread.  Each ``p`` is done (read it
    with ``p.result()``, which does not block).  With ``timeout``, TimeoutError is raised
    if the next one takes longer than that.  With ``cancel_remaining=True`` the Pendings
    not yet yielded are cancelled when the iteration ends early: an error, or a ``break``
    out of ``for`` or out of ``async with as_completed(...) as it: async for p in it``
    (a bare ``async for`` cannot tell a ``break``).
    """

    def __init__(
        self,
        pendings: Iterable[Pending[T]],
        *,
        timeout: float | None = None,
        cancel_remaining: bool = False,
    ) -> None:
        import aiologic

        self._pendings = list(dict.fromkeys(pendings))
        self._left = len(self._pendings)
        self._timeout = timeout
        self._cancel_remaining = cancel_remaining
        self._queue: aiologic.SimpleQueue[Pending[T]] = aiologic.SimpleQueue()
        self._empty = aiologic.QueueEmpty  # what a get that timed out raises
        self._yielded: set[int] = set()
        for pending in self._pendings:
            pending.add_done_callback(self._queue.put)

    def _take(self, pending: Pending[T]) -> Pending[T]:
        self._left -= 1
        self._yielded.add(id(pending))
        return pending

    def __iter__(self) -> Iterator[Pending[T]]:
        try:
            while self._left:
                try:
                    pending = self._queue.green_get(timeout=self._timeout)
                except self._empty:
                    raise TimeoutError(f"none completed within {self._timeout} s") from None
                yield self._take(pending)
        finally:
            self._finish()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Pending[T]:
        if not self._left:
            self._finish()
            raise StopAsyncIteration
        try:
            pending = await self._queue.async_get(timeout=self._timeout)
        except self._empty:
            self._finish()
            raise TimeoutError(f"none completed within {self._timeout} s") from None
        except BaseException:
            self._finish()
            raise
        return self._take(pending)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._finish()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._finish()

    async def aclose(self) -> None:
        """End the iteration early (cancels the rest if ``cancel_remaining``)."""
        self._finish()

    def _finish(self) -> None:
        if self._cancel_remaining and self._left:
            for pending in self._pendings:
                if id(pending) not in self._yielded:
                    pending.cancel()
        for pending in self._pendings:
            pending.remove_done_callback(self._queue.put)


ReturnWhen = Literal["FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"]


async def wait(
    pendings: Iterable[Pending[Any]],
    *,
    timeout: float | None = None,
    return_when: ReturnWhen = "ALL_COMPLETED",
) -> tuple[set[Pending[Any]], set[Pending[Any]]]:
    """Wait for Pendings, as :func:`asyncio.wait` does: returns ``(done, not_done)``.

    ``return_when`` is ``"FIRST_COMPLETED"``, ``"FIRST_EXCEPTION"`` (the first that failed
    or was cancelled, else all) or ``"ALL_COMPLETED"``.  A timeout returns what is done by
    then, raising nothing; nothing is cancelled.
    """
    import anyio

    todo = list(dict.fromkeys(pendings))
    done: set[Pending[Any]] = {p for p in todo if p.done()}

    def finished() -> bool:
        if len(done) == len(todo):
            return True
        if return_when == "FIRST_COMPLETED":
            return bool(done)
        if return_when == "FIRST_EXCEPTION":
            return any(p._exception is not None for p in done)
        return False

    if not finished():
        with anyio.move_on_after(timeout):
            async for pending in as_completed([p for p in todo if p not in done]):
                done.add(pending)
                if finished():
                    break
    return done, {p for p in todo if p not in done}


# -- structured groups ------------------------------------------------------------------------
def _threadsafe_runner() -> Callable[[Callable[[], object]], object]:
    """A thread-safe 'run this soon on the calling loop' for the running backend."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()
        return token.run_sync_soon
    import asyncio

    return asyncio.get_running_loop().call_soon_threadsafe


class PendingGroup:
    """``async with PendingGroup() as group:``: Pendings that live and die together.

    Every Pending created inside the block (``caller.call_soon(...)``,
    ``caller.to_thread(...)``, ...; on any thread or backend) joins the group, as does one
    passed to :meth:`add`.  Leaving the block waits for all of them.  When one fails, the
    others and the block's own code are cancelled and the failure is raised from the
    ``async with``; when the block is left by an error (or is cancelled), every member is
    cancelled.  Cancelled members are not failures.
    """

    def __init__(self) -> None:
        self._members: list[Pending[Any]] = []
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._closed = False
        self._token: Any = None
        self._scope: Any = None
        self._run_soon: Callable[[Callable[[], object]], object] | None = None
        self._thread: threading.Thread | None = None

    @property
    def members(self) -> list[Pending[Any]]:
        """The Pendings of this group so far."""
        with self._lock:
            return list(self._members)

    def add(self, pending: Pending[T]) -> Pending[T]:
        """Make ``pending`` a member (thread-safe); returns it."""
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._members.append(pending)
        if closed:
            pending.cancel("the PendingGroup has ended")
        else:
            pending.add_done_callback(self._on_done)
        return pending

    def cancel(self) -> None:
        """Cancel every member and the block's code (thread-safe)."""
        for pending in self.members:
            pending.cancel("cancelled by its PendingGroup")
        self._cancel_block()

    def _on_done(self, pending: Pending[Any]) -> None:
        error = pending._exception
        if error is None or isinstance(error, PendingCancelled):
            return
        with self._lock:
            first = self._failure is None
            if first:
                self._failure = error
        if first:
            self.cancel()

    def _cancel_block(self) -> None:
        scope, run_soon = self._scope, self._run_soon
        if scope is None or run_soon is None or self._closed:
            return
        if threading.current_thread() is self._thread:
            scope.cancel()
        else:
            with contextlib.suppress(Exception):  # the loop has ended
                run_soon(scope.cancel)

    async def __aenter__(self) -> Self:
        import anyio

        self._run_soon = _threadsafe_runner()
        self._thread = threading.current_thread()
        self._scope = anyio.CancelScope()
        self._scope.__enter__()
        self._token = _current_group.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        import anyio

        _current_group.reset(self._token)
        error = exc
        if error is None:
            try:
                while True:
                    running = [p for p in self.members if not p.done()]
                    if not running:
                        break
                    for pending in running:
                        await pending.wait(result=False, shield=True)
            except BaseException as err:  # cancelled: by a failing member, or from outside
                error = err
        if error is not None or self._failure is not None:
            for pending in self.members:
                pending.cancel("cancelled by its PendingGroup")
            with anyio.CancelScope(shield=True):
                for pending in self.members:
                    await pending.wait(result=False, shield=True)
        with self._lock:
            self._closed = True
        if error is None:
            swallowed = bool(self._scope.__exit__(None, None, None))
        else:
            swallowed = bool(self._scope.__exit__(type(error), error, error.__traceback__))
        if self._failure is not None and (error is None or swallowed):
            raise self._failure
        if error is None or swallowed:
            return swallowed
        if error is exc:
            return False
        raise error
