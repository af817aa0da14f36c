"""Callers: a thread with a running event loop, and a thread-safe way to run work on it.

The kernel has at least two: the main thread's (shell) and the control thread's.  A caller
works the same whatever its backend (asyncio or trio), so nothing above it needs to know.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Literal, Self

import anyio
import sniffio

from .interrupt import block_sigint_in_this_thread

__all__ = ["Backend", "Caller"]

Backend = Literal["asyncio", "trio"]
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
        if backend == "trio":
            import trio

            token = trio.lowlevel.current_trio_token()

            def schedule(fn: Callable[..., object], *args: Any) -> None:
                token.run_sync_soon(_guarded, "trio", fn, args)

            self._schedule = schedule
        else:
            import asyncio

            loop = asyncio.get_running_loop()

            def schedule(fn: Callable[..., object], *args: Any) -> None:
                loop.call_soon_threadsafe(_guarded, "asyncio", fn, args)

            self._schedule = schedule

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

    # -- scheduling -------------------------------------------------------------------------
    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on this caller's thread soon.  Safe from any thread."""
        self._schedule(fn, *args)

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
            self.call_soon(self._stop_here)

    def _stop_here(self) -> None:
        self._stopped.set()
        self._task_group.cancel_scope.cancel()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def __repr__(self) -> str:
        return f"<Caller {self.name} {self.backend} on {self.thread.name}>"


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
        return await self._task_group.__aexit__(*exc)  # type: ignore[arg-type]

    def __enter__(self) -> Self:  # pragma: no cover - guards against a missing "async"
        raise TypeError("use 'async with Caller.open()'")
