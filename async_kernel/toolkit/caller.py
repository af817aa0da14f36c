"""Callers: a thread with a running event loop, and a thread-safe way to run work on it.

The kernel has at least two: the main thread's (shell) and the control thread's.  A caller
works the same whatever its backend (asyncio or trio), so nothing above it needs to know.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any, ClassVar, TypeVar, overload

import anyio
import sniffio

from ..interrupt import block_sigint_in_this_thread
from ..settings import Backend
from .background import guarded, watch_asyncio_loop
from .call_queues import CallQueues
from .ending import LoopEnd
from .loops import loop_handles, run_fresh
from .pending import Pending, PendingCancelled, enter_work, to_await
from .registry import Registry
from .workers import POOL

__all__ = ["Backend", "Caller", "Pending", "PendingCancelled"]

T = TypeVar("T")

log = logging.getLogger("async_kernel.toolkit.caller")


class Caller:
    """Runs functions and tasks on one thread's event loop, from any thread.

    Find or start one by name with :meth:`get` (``Caller.get("io", "trio")``), bind one to
    the running loop with ``async with Caller.open() as caller``, or start a thread with its
    own loop with :meth:`start_new`.  Every method that schedules work is safe from any
    thread and any backend, and returns a :class:`Pending`.
    """

    _registry: ClassVar[Registry[Caller]] = Registry()
    #: The most worker threads :meth:`to_thread` runs at once (more calls wait in line).
    thread_limit: ClassVar[int] = 40

    def __init__(self, backend: Backend, task_group: anyio.abc.TaskGroup, name: str) -> None:
        self.backend: Backend = backend
        self.name = name
        self.thread = threading.current_thread()
        self._task_group = task_group
        self._stopped = anyio.Event()
        self._closed = False
        self._outstanding: set[Pending[Any]] = set()
        self._queues = CallQueues(self.call_soon)
        self._end = LoopEnd(self.thread)
        self._schedule, self._in_loop = loop_handles(backend)

    # -- creation and lookup -----------------------------------------------------------------
    @classmethod
    def open(cls, name: str = "main") -> contextlib.AbstractAsyncContextManager[Caller]:
        """``async with Caller.open() as caller:`` binds a caller to the running loop."""
        return cls._bound(name)

    @classmethod
    @contextlib.asynccontextmanager
    async def _bound(cls, name: str) -> AsyncGenerator[Caller, None]:
        """The caller of the running loop while the block runs; on leaving it, its tasks
        are cancelled and awaited, then its outstanding calls cancelled and its end marked
        (by the thread's last lines instead, for a caller that owns its thread)."""
        backend: Backend = "trio" if sniffio.current_async_library() == "trio" else "asyncio"
        caller: Caller | None = None
        try:
            async with anyio.create_task_group() as task_group:
                caller = cls(backend, task_group, name)
                if backend == "asyncio":
                    import asyncio

                    watch_asyncio_loop(asyncio.get_running_loop())
                cls._registry.add(caller, name)
                try:
                    yield caller
                finally:
                    cls._registry.remove(caller, name)
                    caller._closed = True
                    task_group.cancel_scope.cancel()
        finally:
            if caller is not None:
                caller._cancel_outstanding()
                if not caller._end.own_thread:
                    caller._end.mark()

    @classmethod
    def start_new(cls, backend: Backend = "asyncio", name: str = "caller") -> Caller:
        """Start a thread running an event loop of ``backend``; returns once it is ready."""
        ready = threading.Event()
        box: list[Caller | BaseException] = []

        async def main() -> None:
            try:
                async with cls.open(name) as caller:
                    caller._end.own_thread = True
                    box.append(caller)
                    ready.set()
                    await caller.wait_stopped()
            except BaseException as err:
                if not box:
                    box.append(err)
                    ready.set()
                raise

        def run() -> None:
            block_sigint_in_this_thread()
            try:
                anyio.run(main, backend=backend)
            except Exception:
                log.exception("caller thread %s ended with an error", name)
            finally:
                if box and isinstance(box[0], Caller):
                    box[0]._end.mark()

        thread = threading.Thread(target=run, name=f"async-kernel-{name}", daemon=True)
        thread.start()
        ready.wait()
        result = box[0]
        if isinstance(result, BaseException):
            raise RuntimeError(f"could not start a {backend} loop") from result
        return result

    @classmethod
    def get(
        cls, name: str | None = None, backend: Backend | None = None, *, create: bool = True
    ) -> Caller:
        """The running caller called ``name``, started (a new thread and loop) if there is
        none and ``create`` is true; without ``name``, the caller of this thread.

        ``backend`` defaults to the calling thread's (else asyncio); a running caller of
        another backend is a ValueError.  Raises LookupError when nothing is found and
        nothing may be created.
        """
        if name is None:
            caller = cls.current()
        else:
            with cls._registry.create_lock:
                found = cls._registry.named(name)
                if found is None or found.stopped:
                    if not create:
                        raise LookupError(f"no caller named {name!r} is running")
                    return cls.start_new(backend or _backend_here(), name)
                caller = found
        if backend is not None and backend != caller.backend:
            raise ValueError(f"{caller!r} runs {caller.backend}, not {backend}")
        return caller

    @classmethod
    def all(cls) -> list[Caller]:
        """Every running caller (the kernel's own ones included), oldest first."""
        return [caller for caller in cls._registry.all() if not caller.stopped]

    @classmethod
    def current(cls) -> Caller:
        """The caller of the current thread; raises LookupError if it has none."""
        caller = cls._registry.of_thread(threading.get_ident())
        if caller is None:
            raise LookupError(f"no caller runs on thread {threading.current_thread().name}")
        return caller

    @classmethod
    def of_thread(cls, ident: int) -> Caller | None:
        """The caller running on the thread ``ident``, if any."""
        return cls._registry.of_thread(ident)

    @classmethod
    def spawn(
        cls,
        async_fn: Callable[..., Awaitable[T]],
        *args: Any,
        backend: Backend = "asyncio",
        name: str = "spawned",
    ) -> Pending[T]:
        """Run ``async_fn(*args)`` on a new thread with its own ``backend`` loop.

        Returns at once; the loop and thread end with the work.  Cancelling the Pending
        cancels the work.  The work runs in a copy of the calling context.
        """
        pending: Pending[T] = Pending()
        context = contextvars.copy_context()

        async def main() -> None:
            async with cls.open(name) as caller:
                inner = caller.call_soon(async_fn, *args)
                pending.set_canceller(inner.cancel)
                try:
                    pending.set_result(await inner)
                except Exception as err:
                    pending.set_exception(err)

        def run() -> None:
            block_sigint_in_this_thread()
            try:
                context.run(run_fresh, main, backend)
            except BaseException as err:
                pending.set_exception(err)

        threading.Thread(target=run, name=f"async-kernel-{name}", daemon=True).start()
        return pending

    # -- scheduling -------------------------------------------------------------------------
    @overload
    def call_soon(self, fn: Callable[..., Awaitable[T]], *args: Any) -> Pending[T]: ...
    @overload
    def call_soon(self, fn: Callable[..., T], *args: Any) -> Pending[T]: ...
    def call_soon(self, fn: Callable[..., Any], *args: Any) -> Pending[Any]:
        """Run ``fn(*args)`` on this caller's thread soon.  Safe from any thread.

        ``fn`` may be a plain function (run as a loop callback) or return an awaitable (run
        as a task of this caller).  It runs in a copy of the calling context, so the parent
        request follows it on both backends.  The returned Pending can be ignored.
        """
        pending: Pending[Any] = Pending()
        if self._closed:
            pending.set_cancelled(f"{self!r} is stopped")
            return pending
        self._outstanding.add(pending)
        context = contextvars.copy_context()
        try:
            self._schedule(context.run, self._run, pending, fn, args)
        except Exception:  # the loop has already ended
            self._outstanding.discard(pending)
            pending.set_cancelled(f"{self!r} is stopped")
        return pending

    def in_loop(self) -> bool:
        """Whether the calling code runs inside this caller's loop, not merely on its thread.

        Such code may touch the loop's objects directly (set an Event) instead of
        scheduling: no wake-up through the loop's self-pipe, no extra turn of the loop.
        """
        return threading.current_thread() is self.thread and self._in_loop()

    def schedule(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on this caller's thread soon, and forget it.

        The kernel's own hot path: no Pending, no context copy, no lock, so it is cheap
        and safe to call from a signal handler.  A failure of ``fn`` is logged.
        """
        self._schedule(fn, *args)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Pending[Any]:
        """Like :meth:`call_soon`, after ``delay`` seconds (cancel the Pending to drop it)."""

        async def later() -> Any:
            await anyio.sleep(delay)
            result = fn(*args)
            if to_await(result):
                result = await result
            return result

        return self.call_soon(later)

    def queue_call(self, fn: Callable[..., Any], *args: Any) -> Pending[Any]:
        """Like :meth:`call_soon`, but calls of the same ``fn`` on this caller run one at a
        time, in the order they were queued (each waits for the one before it to end,
        however it ended).  Cancelling a queued call drops it; the rest run on.
        """
        return self._queues.queue(fn, args)

    def to_thread(self, fn: Callable[..., Any], *args: Any) -> Pending[Any]:
        """Run ``fn(*args)`` on a worker thread of a shared, bounded pool (reused threads,
        at most :attr:`thread_limit` at once; more calls wait their turn).

        An async function (or one returning an awaitable) runs on the worker's own event
        loop of this caller's backend, and cancelling the Pending cancels it there.
        Cancelling a plain function's Pending raises ``CancelledInThread`` (a
        BaseException) in it at its next Python bytecode, and the Pending is cancelled at
        once; a call into C that does not return (``time.sleep(60)``) stops only when it
        does.  It runs in a copy of the calling context (its prints go to the calling cell).
        """
        pending: Pending[Any] = Pending()
        job = (pending, fn, args, contextvars.copy_context(), self.backend)
        POOL.submit(job, Caller.thread_limit)
        return pending

    def _run(self, pending: Pending[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        # The copied context may come from a loop of the other backend: forget its name.
        sniffio.current_async_library_cvar.set(None)
        enter_work(pending)
        if pending.done() or pending.cancel_requested:
            self._outstanding.discard(pending)
            pending.set_cancelled()
            return
        try:
            result = fn(*args)
        except BaseException as err:
            self._outstanding.discard(pending)
            pending.set_exception(err)
            if not isinstance(err, Exception):
                raise
            log.debug("call_soon(%r) failed", fn, exc_info=True)
            return
        if to_await(result):
            self._task_group.start_soon(self._await_into, pending, result)
        else:
            self._outstanding.discard(pending)
            pending.set_result(result)

    async def _await_into(self, pending: Pending[Any], awaitable: Awaitable[Any]) -> None:
        """Await ``awaitable`` as this caller's task, in a scope the Pending can cancel."""
        with anyio.CancelScope() as scope:
            pending.set_canceller(lambda: self._cancel_scope_threadsafe(scope))
            if pending.done():  # cancelled before this task started: do not start the work
                if inspect.iscoroutine(awaitable):
                    awaitable.close()
                self._outstanding.discard(pending)
                return
            try:
                pending.set_result(await awaitable)
            except anyio.get_cancelled_exc_class():
                pending.set_cancelled()
                raise
            except BaseException as err:
                pending.set_exception(err)
                if not isinstance(err, Exception):
                    raise
            finally:
                self._outstanding.discard(pending)
                pending.set_canceller(None)
        if not pending.done():  # cancelled before the first await returned
            pending.set_cancelled()

    def _cancel_scope_threadsafe(self, scope: anyio.CancelScope) -> None:
        if threading.current_thread() is self.thread:
            scope.cancel()
            return
        with contextlib.suppress(Exception):  # a loop that has ended took the scope with it
            self._schedule(scope.cancel)

    def _cancel_outstanding(self) -> None:
        for pending in list(self._outstanding):
            pending.set_cancelled(f"{self!r} stopped")
        self._outstanding.clear()

    def start_soon(self, async_fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start ``async_fn(*args)`` as a task on this caller's loop.  Safe from any thread.

        A background task: if it fails, its traceback is shown under the cell that started
        it and logged; the loop and the kernel go on.  It runs in a copy of the calling
        context.  Use :meth:`call_soon` to get a Pending instead.
        """
        if threading.current_thread() is self.thread:
            self._task_group.start_soon(guarded, async_fn, *args)
        else:
            context = contextvars.copy_context()
            self._schedule(context.run, self._task_group.start_soon, guarded, async_fn, *args)

    # -- ending -----------------------------------------------------------------------------
    def stop(self) -> Pending[None]:
        """Cancel everything running on this caller and end its loop (thread-safe).

        Returns a Pending done once the loop has ended (and its thread, for a caller started
        by :meth:`start_new` or :meth:`get`): ``await caller.stop()`` in async code, or
        ``caller.stop().result(timeout)`` from a plain thread, stops and joins.
        """
        ended = self._end.pending()
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):  # a loop that has ended is stopped already
                self._schedule(self._stop_here)
        return ended

    def _stop_here(self) -> None:
        self._stopped.set()
        self._task_group.cancel_scope.cancel()

    async def wait_stopped(self) -> None:
        """Wait, on this caller's own loop, until :meth:`stop` is called."""
        await self._stopped.wait()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a stopped caller's thread to end; True if it has (never on itself)."""
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called (or the loop has ended)."""
        return self._closed

    # -- introspection ------------------------------------------------------------------------
    def outstanding(self) -> int:
        """How many calls scheduled on this caller have not finished."""
        return len(self._outstanding)

    def queued(self) -> dict[str, int]:
        """Per function name, whether a :meth:`queue_call` line is active (1) on this caller."""
        return dict.fromkeys(self._queues.names(), 1)

    def __repr__(self) -> str:
        return f"<Caller {self.name} {self.backend} on {self.thread.name}>"


def _backend_here() -> Backend:
    """The backend of the calling thread's caller or loop, else asyncio."""
    caller = Caller.of_thread(threading.get_ident())
    if caller is not None:
        return caller.backend
    try:
        return "trio" if sniffio.current_async_library() == "trio" else "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return "asyncio"
