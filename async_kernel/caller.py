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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Self, TypeVar, overload

import anyio
import sniffio

from .interrupt import block_sigint_in_this_thread
from .pending import Pending, PendingCancelled
from .settings import Backend

__all__ = ["Backend", "Caller", "Pending", "PendingCancelled"]

T = TypeVar("T")

log = logging.getLogger("async_kernel.caller")


def _guarded(backend: Backend, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
    """Run a scheduled callback; a failure is logged, never allowed to break the loop.

    Callbacks run outside any task, where sniffio (and so anyio) cannot tell the backend;
    naming it in sniffio's thread-local lets a callback start anyio tasks.
    """
    previous = sniffio.thread_local.name
    sniffio.thread_local.name = backend
    try:
        fn(*args)
    except Exception:
        log.exception("callback %r failed", fn)
    finally:
        sniffio.thread_local.name = previous


class Caller:
    """Runs functions and tasks on one thread's event loop, from any thread.

    Create one for the running loop with ``async with Caller.open() as caller`` or start a
    new thread with its own loop with :meth:`start_new`.
    """

    _by_thread: ClassVar[dict[int, Caller]] = {}

    def __init__(self, backend: Backend, task_group: anyio.abc.TaskGroup, name: str) -> None:
        self.backend: Backend = backend
        self.name = name
        self.thread = threading.current_thread()
        self._task_group = task_group
        self._stopped = anyio.Event()
        self._closed = False
        self._outstanding: set[Pending[Any]] = set()
        if backend == "trio":
            import trio

            token = trio.lowlevel.current_trio_token()

            def schedule(fn: Callable[..., object], *args: Any) -> None:
                token.run_sync_soon(_guarded, "trio", fn, args)

            self._schedule = schedule
            self._in_loop = trio.lowlevel.in_trio_run
        else:
            import asyncio

            loop = asyncio.get_running_loop()

            def schedule(fn: Callable[..., object], *args: Any) -> None:
                loop.call_soon_threadsafe(_guarded, "asyncio", fn, args)

            self._schedule = schedule
            self._in_loop = lambda: asyncio._get_running_loop() is loop  # pyright: ignore[reportPrivateUsage]

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def open(cls, name: str = "main") -> _CallerContext:
        """``async with Caller.open() as caller:`` binds a caller to the running loop."""
        return _CallerContext(name)

    @classmethod
    def start_new(cls, backend: Backend = "asyncio", name: str = "caller") -> Caller:
        """Start a thread running an event loop of ``backend``; returns once it is ready."""
        ready = threading.Event()
        box: list[Caller | BaseException] = []

        async def main() -> None:
            try:
                async with cls.open(name) as caller:
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

        thread = threading.Thread(target=run, name=f"async-kernel-{name}", daemon=True)
        thread.start()
        ready.wait()
        result = box[0]
        if isinstance(result, BaseException):
            raise RuntimeError(f"could not start a {backend} loop") from result
        return result

    @classmethod
    def current(cls) -> Caller:
        """The caller of the current thread; raises LookupError if it has none."""
        try:
            return cls._by_thread[threading.get_ident()]
        except KeyError:
            raise LookupError(
                f"no caller runs on thread {threading.current_thread().name}"
            ) from None

    @classmethod
    def of_thread(cls, ident: int) -> Caller | None:
        """The caller running on the thread ``ident``, if any."""
        return cls._by_thread.get(ident)

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
                context.run(_run_fresh, main, backend)
            except BaseException as err:
                pending.set_exception(err)

        threading.Thread(target=run, name=f"async-kernel-{name}", daemon=True).start()
        return pending

    @staticmethod
    def to_thread(fn: Callable[..., T], *args: Any) -> Pending[T]:
        """Run the blocking ``fn(*args)`` on a new worker thread (from any thread).

        A thread cannot be stopped from outside: cancelling only discards the result.
        """
        pending: Pending[T] = Pending()
        context = contextvars.copy_context()

        def run() -> None:
            block_sigint_in_this_thread()
            if pending.done():
                return
            try:
                pending.set_result(context.run(fn, *args))
            except BaseException as err:
                pending.set_exception(err)

        name = f"async-kernel-to_thread-{getattr(fn, '__name__', 'fn')}"
        threading.Thread(target=run, name=name, daemon=True).start()
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
            if inspect.isawaitable(result):
                result = await result
            return result

        return self.call_soon(later)

    def _run(self, pending: Pending[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        # The copied context may come from a loop of the other backend: forget its name.
        sniffio.current_async_library_cvar.set(None)
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
        if inspect.isawaitable(result):
            self._task_group.start_soon(self._await_into, pending, result)
        else:
            self._outstanding.discard(pending)
            pending.set_result(result)

    async def _await_into(self, pending: Pending[Any], awaitable: Awaitable[Any]) -> None:
        """Await ``awaitable`` as this caller's task, in a scope the Pending can cancel."""
        with anyio.CancelScope() as scope:
            pending.set_canceller(lambda: self._cancel_scope_threadsafe(scope))
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
        """Start ``async_fn(*args)`` as a task on this caller's loop.  Safe from any thread."""
        if threading.current_thread() is self.thread:
            self._task_group.start_soon(async_fn, *args)
        else:
            self._schedule(self._task_group.start_soon, async_fn, *args)

    def stop(self) -> None:
        """Cancel everything running on this caller and let its loop end (thread-safe)."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):  # a loop that has ended is stopped already
                self._schedule(self._stop_here)

    def _stop_here(self) -> None:
        self._stopped.set()
        self._task_group.cancel_scope.cancel()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a stopped caller's thread to end; True if it has (never on itself)."""
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def stopped(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<Caller {self.name} {self.backend} on {self.thread.name}>"


def _run_fresh(async_fn: Callable[[], Awaitable[None]], backend: Backend) -> None:
    """anyio.run in a copied context, without the copied backend name sniffio would see."""
    sniffio.current_async_library_cvar.set(None)
    anyio.run(async_fn, backend=backend)


class _CallerContext:
    def __init__(self, name: str) -> None:
        self._name = name
        self._task_group: anyio.abc.TaskGroup | None = None
        self._caller: Caller | None = None

    async def __aenter__(self) -> Caller:
        backend: Backend = "trio" if sniffio.current_async_library() == "trio" else "asyncio"
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        caller = Caller(backend, self._task_group, self._name)
        Caller._by_thread[threading.get_ident()] = caller
        self._caller = caller
        return caller

    async def __aexit__(self, *exc: object) -> bool | None:
        assert self._task_group is not None and self._caller is not None
        Caller._by_thread.pop(threading.get_ident(), None)
        self._caller._closed = True
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(*exc)  # type: ignore[arg-type]
        finally:
            self._caller._cancel_outstanding()

    def __enter__(self) -> Self:  # pragma: no cover - guards against a missing "async"
        raise TypeError("use 'async with Caller.open()'")
