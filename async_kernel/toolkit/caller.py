"""Callers: a thread with a running event loop, and a thread-safe way to run work on it.

The kernel has at least two: the main thread's (shell) and the control thread's.  A caller
works the same whatever its backend (asyncio or trio), so nothing above it needs to know.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Self, TypeVar, overload

import anyio
import sniffio

from ..interrupt import block_sigint_in_this_thread
from ..settings import Backend
from .background import guarded, watch_asyncio_loop
from .pending import Pending, PendingCancelled, _enter_work

__all__ = ["Backend", "Caller", "Pending", "PendingCancelled"]

T = TypeVar("T")

log = logging.getLogger("async_kernel.toolkit.caller")


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

    Find or start one by name with :meth:`get` (``Caller.get("io", "trio")``), bind one to
    the running loop with ``async with Caller.open() as caller``, or start a thread with its
    own loop with :meth:`start_new`.  Every method that schedules work is safe from any
    thread and any backend, and returns a :class:`Pending`.
    """

    _by_thread: ClassVar[dict[int, Caller]] = {}
    _by_name: ClassVar[dict[str, Caller]] = {}
    _registry_lock: ClassVar[threading.RLock] = threading.RLock()
    _create_lock: ClassVar[threading.Lock] = threading.Lock()  # one get() creates at a time
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
        self._queues: dict[Callable[..., Any], Pending[None]] = {}  # fn -> its last turn
        self._queue_lock = threading.Lock()
        self._ended = threading.Event()
        self._end_pending: Pending[None] | None = None
        self._own_thread = False
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

    # -- creation and lookup -----------------------------------------------------------------
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
                    caller._own_thread = True
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
                    box[0]._mark_ended()

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
            with cls._create_lock:
                found = cls._by_name.get(name)
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
        with cls._registry_lock:
            callers = list(dict.fromkeys(cls._by_thread.values()))
        return [caller for caller in callers if not caller.stopped]

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
            if _to_await(result):
                result = await result
            return result

        return self.call_soon(later)

    def queue_call(self, fn: Callable[..., Any], *args: Any) -> Pending[Any]:
        """Like :meth:`call_soon`, but calls of the same ``fn`` on this caller run one at a
        time, in the order they were queued (each waits for the one before it to end,
        however it ended).  Cancelling a queued call drops it; the rest run on.
        """
        # Each call has a turn, over once the call has ended *and* the turn before it is
        # over: a call cancelled while it waits does not let the next one overtake.
        turn: Pending[None] = Pending()
        with self._queue_lock:
            previous = self._queues.get(fn)
            pending = self.call_soon(_after, previous, fn, args)
            self._queues[fn] = turn

        def release(_: Pending[Any]) -> None:
            if previous is None:
                turn.set_result(None)
            else:
                previous.add_done_callback(lambda _: turn.set_result(None))

        turn.add_done_callback(lambda done: self._queue_done(fn, done))
        pending.add_done_callback(release)
        return pending

    def _queue_done(self, fn: Callable[..., Any], done: Pending[None]) -> None:
        with self._queue_lock:
            if self._queues.get(fn) is done:
                del self._queues[fn]

    def to_thread(self, fn: Callable[..., Any], *args: Any) -> Pending[Any]:
        """Run ``fn(*args)`` on a worker thread of a shared, bounded pool (reused threads,
        at most :attr:`thread_limit` at once; more calls wait their turn).

        An async function (or one returning an awaitable) runs on the worker's own event
        loop of this caller's backend, and cancelling the Pending cancels it there.  A
        plain function cannot be stopped from outside: cancelling only drops its result.
        It runs in a copy of the calling context (its prints go to the calling cell).
        """
        pending: Pending[Any] = Pending()
        _POOL.submit((pending, fn, args, contextvars.copy_context(), self.backend))
        return pending

    def _run(self, pending: Pending[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        # The copied context may come from a loop of the other backend: forget its name.
        sniffio.current_async_library_cvar.set(None)
        _enter_work(pending)
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
        if _to_await(result):
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
        ended = self._ended_pending()
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):  # a loop that has ended is stopped already
                self._schedule(self._stop_here)
        return ended

    def _ended_pending(self) -> Pending[None]:
        with self._queue_lock:
            if self._end_pending is None:
                self._end_pending = Pending()
            pending = self._end_pending
        if self._ended.is_set():
            if self._own_thread and threading.current_thread() is not self.thread:
                self.thread.join()  # its loop has ended: the thread is on its last lines
            pending.set_result(None)
        return pending

    def _mark_ended(self) -> None:
        """The loop has ended (called on its thread, last thing)."""
        self._ended.set()
        with self._queue_lock:
            pending = self._end_pending
        if pending is None:
            return
        if self._own_thread:  # done once the thread itself has ended
            thread = self.thread
            threading.Thread(
                target=lambda: (thread.join(), pending.set_result(None)),
                name="async-kernel-join",
                daemon=True,
            ).start()
        else:
            pending.set_result(None)

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
        with self._queue_lock:
            return {_name_of(fn): 1 for fn in self._queues}

    def __repr__(self) -> str:
        return f"<Caller {self.name} {self.backend} on {self.thread.name}>"


def _to_await(result: object) -> bool:
    """Whether a function's result is work to await (a Pending returned is a value)."""
    return inspect.isawaitable(result) and not isinstance(result, Pending)


def _name_of(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


def _backend_here() -> Backend:
    """The backend of the calling thread's caller or loop, else asyncio."""
    caller = Caller.of_thread(threading.get_ident())
    if caller is not None:
        return caller.backend
    try:
        return "trio" if sniffio.current_async_library() == "trio" else "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return "asyncio"


async def _after(
    previous: Pending[Any] | None, fn: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    """A queue_call: wait for the turn before it to be over, then call."""
    if previous is not None and not previous.done():
        await previous.wait(shield=True, result=False)
    result = fn(*args)
    if _to_await(result):
        result = await result
    return result


# -- the worker pool behind to_thread ----------------------------------------------------------
_Job = tuple[Pending[Any], Callable[..., Any], tuple[Any, ...], contextvars.Context, Backend]
_IDLE_SECONDS = 30.0  # an idle worker thread ends after this long


class _WorkerPool:
    """Threads that run to_thread jobs, started on demand, reused, and ended when idle.

    Counts under one lock: a job is handed to an idle worker (which waits on the queue), to
    a new worker (as its first job), or left in the backlog for the next worker to finish.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.workers = 0
        self.idle = 0
        self.backlog = 0

    def submit(self, job: _Job) -> None:
        with self._lock:
            start = False
            if self.idle:
                self.idle -= 1
            elif self.workers < max(1, Caller.thread_limit):
                self.workers += 1
                start = True
            else:
                self.backlog += 1
        if start:
            threading.Thread(
                target=self._work, args=(job,), name="async-kernel-worker", daemon=True
            ).start()
        else:
            self._jobs.put(job)

    def _work(self, job: _Job | None) -> None:
        block_sigint_in_this_thread()
        setattr(threading.current_thread(), _THREAD_REQUEST_ATTR, None)  # jobs carry their own
        loops = _WorkerLoops()
        try:
            while True:
                if job is not None:
                    _run_job(job, loops)
                    job = None
                with self._lock:
                    if self.backlog:
                        self.backlog -= 1
                        take_now = True
                    else:
                        self.idle += 1
                        take_now = False
                if take_now:
                    job = self._jobs.get()
                    continue
                try:
                    job = self._jobs.get(timeout=_IDLE_SECONDS)
                except queue.Empty:
                    with self._lock:
                        if self.idle:
                            self.idle -= 1
                            self.workers -= 1
                            return
                    job = self._jobs.get()  # a job was handed to this worker meanwhile
        finally:
            loops.close()


_THREAD_REQUEST_ATTR = "_async_kernel_request"  # parent.py's inherited-request attribute
_POOL = _WorkerPool()


class _WorkerLoops:
    """A worker thread's event loops for async jobs: asyncio's kept, trio's per job."""

    def __init__(self) -> None:
        self._runner: Any = None

    def run(self, backend: Backend, pending: Pending[Any], awaitable: Awaitable[Any]) -> Any:
        if backend == "trio":
            import trio

            return trio.run(_cancellable, pending, awaitable)
        import asyncio

        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(
            _cancellable(pending, awaitable), context=contextvars.copy_context()
        )

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


async def _cancellable(pending: Pending[Any], awaitable: Awaitable[Any]) -> Any:
    from .pending import _threadsafe_runner

    run_soon = _threadsafe_runner()

    def cancel() -> None:
        with contextlib.suppress(Exception):  # the run has ended
            run_soon(scope.cancel)

    with anyio.CancelScope() as scope:
        pending.set_canceller(cancel)
        try:
            return await awaitable
        finally:
            pending.set_canceller(None)
    raise PendingCancelled("cancelled")


def _run_job(job: _Job, loops: _WorkerLoops) -> None:
    pending, fn, args, context, backend = job
    if pending.done():  # cancelled while it waited
        return
    context.run(_job_in_context, pending, fn, args, backend, loops)


def _job_in_context(
    pending: Pending[Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    backend: Backend,
    loops: _WorkerLoops,
) -> None:
    sniffio.current_async_library_cvar.set(None)
    _enter_work(pending)
    try:
        result = fn(*args)
        if _to_await(result):
            result = loops.run(backend, pending, result)
    except BaseException as err:
        pending.set_exception(err)
    else:
        pending.set_result(result)


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
        if backend == "asyncio":
            import asyncio

            watch_asyncio_loop(asyncio.get_running_loop())
        with Caller._registry_lock:
            Caller._by_thread[threading.get_ident()] = caller
            Caller._by_name[self._name] = caller
        self._caller = caller
        return caller

    async def __aexit__(self, *exc: object) -> bool | None:
        assert self._task_group is not None and self._caller is not None
        caller = self._caller
        with Caller._registry_lock:
            if Caller._by_thread.get(threading.get_ident()) is caller:
                del Caller._by_thread[threading.get_ident()]
            if Caller._by_name.get(self._name) is caller:
                del Caller._by_name[self._name]
        caller._closed = True
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(*exc)  # type: ignore[arg-type]
        finally:
            caller._cancel_outstanding()
            if not caller._own_thread:
                caller._mark_ended()

    def __enter__(self) -> Self:  # pragma: no cover - guards against a missing "async"
        raise TypeError("use 'async with Caller.open()'")
