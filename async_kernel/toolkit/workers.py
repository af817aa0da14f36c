"""The worker threads behind :meth:`Caller.to_thread`: a shared, bounded, reused pool.

A job is a function, its Pending and the calling context.  A plain function runs on the
worker and is stopped by cancelling its Pending (an exception raised in it, see
:mod:`~async_kernel.toolkit.thread_cancel`); an async function (or one returning an
awaitable) runs on the worker's own loop of the caller's backend, in a cancel scope the
Pending cancels.  Workers start on demand, up to a limit, and end after a while idle.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import sniffio

from ..interrupt import block_sigint_in_this_thread
from ..settings import Backend
from .loops import threadsafe_runner
from .pending import Pending, PendingCancelled, enter_work, to_await
from .thread_cancel import CancelledInThread, StoppableCall

__all__ = ["POOL", "Job", "WorkerPool"]

#: What to run: its Pending, the function and its arguments, the context, the backend.
Job = tuple[Pending[Any], Callable[..., Any], tuple[Any, ...], contextvars.Context, Backend]
_IDLE_SECONDS = 30.0  # an idle worker thread ends after this long
_THREAD_REQUEST_ATTR = "_async_kernel_request"  # parent.py's inherited-request attribute


class WorkerPool:
    """Threads that run to_thread jobs, started on demand, reused, and ended when idle.

    Counts under one lock: a job is handed to an idle worker (which waits on the queue), to
    a new worker (as its first job), or left in the backlog for the next worker to finish.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.workers = 0
        self.idle = 0
        self.backlog = 0

    def submit(self, job: Job, limit: int) -> None:
        """Run ``job`` on a worker; at most ``limit`` workers run at once."""
        with self._lock:
            start = False
            if self.idle:
                self.idle -= 1
            elif self.workers < max(1, limit):
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

    def _work(self, job: Job | None) -> None:
        block_sigint_in_this_thread()
        setattr(threading.current_thread(), _THREAD_REQUEST_ATTR, None)  # jobs carry their own
        loops = _WorkerLoops()
        try:
            while True:
                finish = None if job is None else _run_job(job, loops)
                job = None
                with self._lock:
                    if self.backlog:
                        self.backlog -= 1
                        take_now = True
                    else:
                        self.idle += 1
                        take_now = False
                if finish is not None:
                    # The Pending completes once this worker counts as free: a caller who
                    # calls to_thread again on seeing the result finds it, not a new thread.
                    finish()
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


POOL = WorkerPool()


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
    run_soon = threadsafe_runner()

    def cancel() -> None:
        with contextlib.suppress(Exception):  # the run has ended
            run_soon(scope.cancel)

    with anyio.CancelScope() as scope:
        pending.set_canceller(cancel)
        if pending.done():  # cancelled while the function made its awaitable
            scope.cancel()
        try:
            return await awaitable
        finally:
            pending.set_canceller(None)
    raise PendingCancelled("cancelled")


def _run_job(job: Job, loops: _WorkerLoops) -> Callable[[], object] | None:
    """Run a job; returns how to complete its Pending (None if there is nothing to do)."""
    pending, fn, args, context, backend = job
    if pending.done():  # cancelled while it waited
        return None
    return context.run(_job_in_context, pending, fn, args, backend, loops)


def _job_in_context(
    pending: Pending[Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    backend: Backend,
    loops: _WorkerLoops,
) -> Callable[[], object] | None:
    sniffio.current_async_library_cvar.set(None)
    enter_work(pending)
    call = StoppableCall()

    def stop() -> None:
        # Waiters are released at once, even from a C call that will not return soon;
        # the worker takes its next job once the function has actually stopped.
        call.stop()
        pending.set_cancelled()

    pending.set_canceller(stop)
    try:
        result = call.call(fn, args)
        if to_await(result):
            if pending.done():  # cancelled meanwhile: do not start it
                if inspect.iscoroutine(result):
                    result.close()
                return None
            result = loops.run(backend, pending, result)
    except CancelledInThread:
        return pending.set_cancelled
    except BaseException as err:
        return functools.partial(pending.set_exception, err)
    return functools.partial(pending.set_result, result)
