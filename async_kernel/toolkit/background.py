"""Background work started from a cell: never silent, never fatal.

A task a cell starts (``Caller.start_soon``, ``asyncio.create_task``) may fail long after
the cell ended.  Its traceback is then published as an ``error`` output under the cell that
started it (the request in the task's context, which tasks inherit) and logged; the loop
and the kernel live on.  Tasks are also listed, per cell, for the ``%task`` magic.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from ..parent import own_request, request_context

if TYPE_CHECKING:
    import asyncio

    from ..parent import Request

__all__ = ["BackgroundTask", "guarded", "report_failure", "running_tasks", "watch_asyncio_loop"]

log = logging.getLogger("async_kernel.toolkit.background")


@dataclass(eq=False)
class BackgroundTask:
    """One task started from a cell, while it runs (see ``%task``)."""

    name: str
    thread: str
    request: Request | None
    started: float = field(default_factory=time.monotonic)
    id: int = field(default_factory=itertools.count(1).__next__)
    cancel: Callable[[], object] | None = None

    @property
    def cell(self) -> str:
        """The msg_id of the request that started it ('' if none)."""
        if self.request is None:
            return ""
        return str(self.request.msg["header"].get("msg_id", ""))


_running: dict[int, BackgroundTask] = {}
_lock = threading.Lock()


def running_tasks() -> list[BackgroundTask]:
    """Background tasks still running, oldest first."""
    with _lock:
        return sorted(_running.values(), key=lambda task: task.id)


def _register(name: str, request: Request | None) -> BackgroundTask:
    task = BackgroundTask(name, threading.current_thread().name, request)
    with _lock:
        _running[task.id] = task
    return task


def _unregister(task: BackgroundTask) -> None:
    with _lock:
        _running.pop(task.id, None)


def report_failure(error: BaseException, what: str, request: Request | None = None) -> None:
    """Log ``error`` and show its traceback under ``request``'s cell (the current one by
    default; none for the kernel's own code).  Safe from any thread; never raises."""
    request = request if request is not None else own_request()
    log.error("%s failed", what, exc_info=error)
    if request is None:
        return
    try:
        _publish_error(error, request)
    except Exception:
        log.exception("showing the failure of %s failed", what)


def _publish_error(error: BaseException, request: Request) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from ..interrupt import users_frames

    if not InteractiveShell.initialized():
        return
    shell = InteractiveShell.instance()
    publisher = getattr(shell, "publisher", None)
    if publisher is None:
        return
    # From the user's first frame, as a cell's error is shown: the task runner (``guarded``)
    # and what called it are the kernel's, not the user's program.
    tb = users_frames(error.__traceback__) or error.__traceback__
    stb = shell.InteractiveTB.structured_traceback(type(error), error, tb)
    content = {
        "ename": type(error).__name__,
        "evalue": str(error),
        "traceback": stb,
    }
    with request_context(request):
        publisher.flush_streams()
        publisher.publish("error", content)


def _is_cell(request: Request | None) -> TypeGuard[Request]:
    return request is not None and request.msg["msg_type"] == "execute_request"


def _describe(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


async def guarded(async_fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
    """Run ``async_fn(*args)`` as a background task: an error is shown and logged, not
    raised into the loop (a task group would otherwise end, and the kernel with it)."""
    import anyio

    request = own_request()
    name = _describe(async_fn)
    # A cell's task only: one the kernel starts while it answers another request (a
    # control request: a subshell's delete, a debug session) is not the user's to list or
    # cancel with %task.
    entry = _register(name, request) if _is_cell(request) else None
    try:
        if entry is not None:
            with anyio.CancelScope() as scope:
                entry.cancel = _scope_canceller(scope)
                await async_fn(*args)
        else:
            await async_fn(*args)
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as err:
        report_failure(err, f"background task {name}", request)
    finally:
        if entry is not None:
            _unregister(entry)


def _scope_canceller(scope: Any) -> Callable[[], object]:
    from .loops import threadsafe_runner

    run_soon = threadsafe_runner()
    thread = threading.current_thread()

    def cancel() -> None:
        if threading.current_thread() is thread:
            scope.cancel()
        else:
            run_soon(scope.cancel)

    return cancel


# -- asyncio.create_task ----------------------------------------------------------------------
def watch_asyncio_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Report tasks created on ``loop`` from a cell whose error nobody retrieved.

    A task factory notes each task made in a request's context; once such a task has failed
    and the callbacks woken by its end (an ``await`` of it, ``gather``) had their turn
    without taking its exception, the error is shown under its cell.  The loop keeps any
    factory already set.
    """
    import asyncio

    # Only a loop of asyncio's own (with a task factory set, Pyodide's WebLoop calls a helper
    # that Python 3.14 removed), and one without a factory of its own.
    if not isinstance(loop, asyncio.BaseEventLoop) or loop.get_task_factory() is not None:
        return

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        request = own_request()
        # anyio's task groups take their tasks' errors themselves (Caller.start_soon's
        # are guarded): only bare tasks are watched, and only a cell's.
        if _is_cell(request) and getattr(coro, "cr_code", None) is not _anyio_task_code():
            entry = _register(task.get_name(), request)
            entry.cancel = task.cancel
            task.add_done_callback(lambda done: _task_done(done, entry))
        return task

    loop.set_task_factory(factory)


def _anyio_task_code() -> object:
    """The code of the coroutine anyio wraps its tasks in (anyio 4.14+; an older anyio
    hands the task's own coroutine to the loop, whose errors its task group takes anyway)."""
    global _anyio_code
    if _anyio_code is None:
        try:
            from anyio._core._tasks import TaskHandle
        except ImportError:
            _anyio_code = False
        else:
            # A private method of anyio's, read through an Any view: nothing public names
            # the code its tasks run in.
            handle: Any = TaskHandle
            _anyio_code = handle._run_coro.__code__
    return _anyio_code


_anyio_code: object = None


def _unretrieved(task: asyncio.Task[Any]) -> bool:
    """Whether asyncio would log the task's error as never retrieved: its private flag,
    read through an Any view (nothing public tells without retrieving the error)."""
    view: Any = task
    return bool(view._log_traceback)


def _task_done(task: asyncio.Task[Any], entry: BackgroundTask) -> None:
    _unregister(entry)
    if task.cancelled() or not _unretrieved(task):
        return
    # Whoever awaits the task is woken by a callback scheduled with ours: look again after
    # those have run.
    task.get_loop().call_soon(_check_retrieved, task, entry)


def _check_retrieved(task: asyncio.Task[Any], entry: BackgroundTask) -> None:
    if not _unretrieved(task):
        return
    error = task.exception()  # marks it retrieved: asyncio's own report would repeat ours
    if error is not None:
        report_failure(error, f"task {entry.name}", entry.request)
