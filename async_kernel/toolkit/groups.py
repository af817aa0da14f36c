"""Many Pendings at once: :func:`as_completed`, :func:`wait` and :class:`PendingGroup`.

``as_completed`` and ``wait`` watch Pendings finish, in the manner of asyncio's functions of
those names, from asyncio, trio or a plain thread.  A ``PendingGroup`` makes the Pendings
created inside its block live and die together: every Pending created there joins it
(:class:`~async_kernel.toolkit.pending.Pending` looks up the group of its context).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar

from .loops import threadsafe_runner
from .pending import Pending, PendingCancelled, current_group

__all__ = ["PendingGroup", "ReturnWhen", "as_completed", "wait"]

T = TypeVar("T")


# -- watching Pendings finish -------------------------------------------------------------------
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
            return any(p.exception() is not None for p in done)
        return False

    if not finished():
        with anyio.move_on_after(timeout):
            async for pending in as_completed([p for p in todo if p not in done]):
                done.add(pending)
                if finished():
                    break
    return done, {p for p in todo if p not in done}


# -- structured groups ------------------------------------------------------------------------
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
        error = pending.exception()  # done: does not block
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

        self._run_soon = threadsafe_runner()
        self._thread = threading.current_thread()
        self._scope = anyio.CancelScope()
        self._scope.__enter__()
        self._token = current_group.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        import anyio

        current_group.reset(self._token)
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
