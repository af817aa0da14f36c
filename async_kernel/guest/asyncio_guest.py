"""Run asyncio as a *guest* inside a host event loop (Tk, Qt, a test queue).

Why: a GUI toolkit must own the main thread, yet the kernel is asyncio/anyio
code.  This mirrors ``trio.lowlevel.start_guest_run``: a stock
``SelectorEventLoop`` whose callbacks all run on the host thread; only the
blocking ``select(timeout)`` runs on a helper thread.  When ``select`` returns,
one host callback processes the events and runs one loop iteration, then
computes the next timeout from the loop's timers and hands the next ``select``
to the helper (one host callback per iteration, not per event).

Thread-safety: the helper thread only ever calls ``select`` and the host only
iterates while no ``select`` is pending (the two strictly alternate), so loop
internals are never touched concurrently.  Work scheduled by host code
*between* iterations (``call_soon``, ``add_reader`` from a GUI callback) wakes
the pending ``select`` through the loop's self-pipe, so the next ``select`` sees
it; other threads use ``call_soon_threadsafe``, which writes to the same pipe.
Events are re-resolved against the current registrations on the host thread
before they are processed, so a registration changed while ``select`` blocked
is never acted on through a stale key.

Cancelling: ``handle.cancel()`` (thread-safe) cancels the main task; the
``done_callback`` then receives ``Error(GuestRunCancelled())`` unless
``async_fn`` returns anyway.  ``loop.stop()`` inside the guest is ignored: the
run ends when ``async_fn`` does (then remaining tasks are cancelled, async
generators and the default executor are shut down, and the loop is closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import selectors
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple, Unpack

from async_kernel.guest._outcome import GuestRunCancelled, Outcome, error, value

if TYPE_CHECKING:
    from contextvars import Context

    from _typeshed import FileDescriptorLike

__all__ = ["AsyncioGuestRun", "GuestEventLoop", "start_guest_run"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
Events = list[tuple[selectors.SelectorKey, int]]
RunSoon = Callable[[Callable[[], object]], object]

_MAX_SELECT_TIMEOUT = 24 * 3600.0
_MAX_SELECT_FAILURES = 3
# The loop's private helpers are not in typeshed; call them through an untyped alias.
_BASE: Any = asyncio.SelectorEventLoop


class _LoopInternals:
    """Typed access to the private ``BaseEventLoop`` state the driver uses.

    Why: ``_run_once``, ``_ready``, ``_scheduled``, ``_stopping``, ``_thread_id``,
    the async generator hooks and the self-pipe are CPython's (``base_events.py``,
    ``selector_events.py``), not in typeshed; they are read through one ``Any``
    here so the driver stays typed.  (``GuestEventLoop`` reaches the private
    methods it overrides through ``_BASE``.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop: Any = loop

    def set_thread(self, ident: int | None) -> None:
        """Mark the loop as running on thread ``ident`` (``None``: on none)."""
        self._loop._thread_id = ident

    def asyncgen_hooks(self) -> tuple[Callable[[Any], None], Callable[[Any], None]]:
        """The loop's ``(firstiter, finalizer)`` hooks, as ``run_forever`` installs them."""
        loop = self._loop
        return loop._asyncgen_firstiter_hook, loop._asyncgen_finalizer_hook

    def run_once(self) -> None:
        """One loop iteration: select (fed by the handoff), then run what is ready."""
        try:
            self._loop._run_once()
        finally:
            self._loop._stopping = False  # ``stop()`` inside the guest is ignored

    def self_pipe_fd(self) -> int:
        """The write end of the loop's self-pipe: a byte written there wakes ``select``."""
        return self._loop._csock.fileno()

    def has_ready(self) -> bool:
        """True when callbacks are ready or ``stop()`` was asked for."""
        loop = self._loop
        return bool(loop._ready) or bool(loop._stopping)

    def next_deadline(self) -> float | None:
        """The loop time of the earliest timer, ``None`` when there is none."""
        scheduled: list[asyncio.TimerHandle] = self._loop._scheduled
        return scheduled[0].when() if scheduled else None


class _HandoffSelector(selectors.BaseSelector):
    """Delegates to a real selector, but ``select()`` returns events fetched elsewhere.

    Why: ``BaseEventLoop._run_once`` calls ``select()`` itself; feeding it the
    helper thread's events lets us reuse the stock iteration unchanged.
    """

    def __init__(self, real: selectors.BaseSelector) -> None:
        self.real = real
        self._fed: Events = []

    def feed(self, events: Events) -> None:
        """Queue events for the next ``select()``, re-resolved to current keys."""
        fresh: Events = []
        for key, mask in events:
            try:
                current = self.real.get_key(key.fileobj)
            except (KeyError, ValueError):
                continue  # unregistered (or closed) since select returned
            if mask & current.events:
                fresh.append((current, mask & current.events))
        self._fed = fresh

    def select(self, timeout: float | None = None) -> Events:
        events, self._fed = self._fed, []
        return events

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self.real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self.real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self.real.modify(fileobj, events, data)

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self.real.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self.real.get_map()

    def close(self) -> None:
        self.real.close()


class GuestEventLoop(asyncio.SelectorEventLoop):
    """A stock selector loop that wakes its pending ``select`` when work arrives.

    Why: inside an iteration nothing needs waking, but host code running
    between iterations may schedule callbacks or change registrations while
    the helper thread is blocked in ``select``.
    """

    def __init__(self) -> None:
        self.select_pending = False  # before super(): it registers the self-pipe
        self.handoff = _HandoffSelector(selectors.DefaultSelector())
        super().__init__(self.handoff)

    def _wake(self) -> None:
        if self.select_pending:
            _BASE._write_to_self(self)

    def call_soon(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        handle = super().call_soon(callback, *args, context=context)
        self._wake()
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = super().call_at(when, callback, *args, context=context)
        self._wake()
        return handle

    def _add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> Any:
        handle = _BASE._add_reader(self, fd, callback, *args)
        self._wake()
        return handle

    def _add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> Any:
        handle = _BASE._add_writer(self, fd, callback, *args)
        self._wake()
        return handle

    def _remove_reader(self, fd: Any) -> bool:
        removed: bool = _BASE._remove_reader(self, fd)
        self._wake()  # plain select()/poll() would still wait on the old fd
        return removed

    def _remove_writer(self, fd: Any) -> bool:
        removed: bool = _BASE._remove_writer(self, fd)
        self._wake()
        return removed


class _SelectThread:
    """The helper thread: owns the only blocking call, ``select(timeout)``."""

    def __init__(
        self,
        selector: selectors.BaseSelector,
        deliver: Callable[[Events | OSError], None],
        post: RunSoon,
    ) -> None:
        self._selector = selector
        self._deliver = deliver
        self._post = post
        # ``(timeout,)`` asks for one select; ``None`` stops the thread.
        self._requests: queue.SimpleQueue[tuple[float | None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._serve, name="asyncio-guest-select", daemon=True
        )
        self._thread.start()

    def submit(self, timeout: float | None) -> None:
        self._requests.put((timeout,))

    def stop(self) -> None:
        self._requests.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            try:
                result: Events | OSError = self._selector.select(request[0])
            except OSError as exc:
                result = exc
            self._post(partial(self._deliver, result))


class AsyncioGuestRun(Generic[T]):
    """Handle on one asyncio guest run; drives one loop iteration per host callback."""

    def __init__(
        self,
        main: Coroutine[Any, Any, T],
        *,
        run_sync_soon_threadsafe: RunSoon,
        run_sync_soon_not_threadsafe: RunSoon,
        done_callback: Callable[[Outcome[T]], object],
    ) -> None:
        self.loop = GuestEventLoop()
        self._internals = _LoopInternals(self.loop)
        self._post_local = run_sync_soon_not_threadsafe
        self._done_callback = done_callback
        self._selector_thread = _SelectThread(
            self.loop.handoff.real, self._tick, run_sync_soon_threadsafe
        )
        self._result: Outcome[T] | None = None
        self._crash: BaseException | None = None
        self._cancel_requested = False
        self._shutdown_done = False
        self._closed = False
        self._in_tick = False
        self._select_failures = 0
        self._main = self.loop.create_task(main)
        self._main.add_done_callback(self._on_main_done)
        self._wakeup_fd_taken = _wake_on_signals(self._internals)
        run_sync_soon_threadsafe(self._tick)  # the first iteration

    @property
    def done(self) -> bool:
        """True once ``done_callback`` has been called."""
        return self._closed

    def cancel(self) -> None:
        """Cancel the main task. Thread-safe; a no-op once the run has finished."""
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self._cancel_main)

    def _cancel_main(self) -> None:
        if not self._main.done():
            self._cancel_requested = True
            self._main.cancel()

    # -- host-thread driving -------------------------------------------------

    def _tick(self, events: Events | OSError | None = None) -> None:
        """Process ``events`` (``None``: poll now), run one iteration, schedule the next."""
        if self._closed:
            return
        if self._in_tick:  # a nested host loop re-entered us: run after the outer tick
            self._post_local(partial(self._tick, events))
            return
        self._in_tick = True
        try:
            self.loop.select_pending = False
            self._internals.set_thread(threading.get_ident())
            try:
                self._iterate(events)
            except BaseException as exc:
                self._on_crash(exc)
            if self._shutdown_done:
                self._close()
            else:
                self._schedule_next()
        finally:
            self._in_tick = False

    def _iterate(self, events: Events | OSError | None) -> None:
        if isinstance(events, OSError):
            self._select_failures += 1
            if self._select_failures > _MAX_SELECT_FAILURES:
                raise events
            events = []  # retry: a registration probably changed under select()
        elif events is None:
            events = self.loop.handoff.real.select(0)
        else:
            self._select_failures = 0
        self.loop.handoff.feed(events)
        previous_loop = asyncio.events._get_running_loop()
        previous_hooks = sys.get_asyncgen_hooks()
        firstiter, finalizer = self._internals.asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
        asyncio.events._set_running_loop(self.loop)
        try:
            self._internals.run_once()
        finally:
            asyncio.events._set_running_loop(previous_loop)
            sys.set_asyncgen_hooks(*previous_hooks)

    def _schedule_next(self) -> None:
        timeout: float | None = None
        if self._internals.has_ready():
            timeout = 0.0
        elif (deadline := self._internals.next_deadline()) is not None:
            timeout = min(max(0.0, deadline - self.loop.time()), _MAX_SELECT_TIMEOUT)
        if timeout == 0.0:
            self._post_local(self._tick)  # ready work: poll on the host, skip the thread hop
        else:
            self.loop.select_pending = True
            self._selector_thread.submit(timeout)

    def _on_crash(self, exc: BaseException) -> None:
        """A BaseException escaped an iteration (e.g. KeyboardInterrupt in a callback)."""
        if self._result is None and not self._main.done():
            self._crash = exc
            self._main.cancel()  # shut down in order; the outcome will be ``exc``
        else:
            self._result = error(exc)
            self._shutdown_done = True

    # -- completion ------------------------------------------------------------

    def _on_main_done(self, task: asyncio.Task[T]) -> None:
        result: Outcome[T]
        if self._crash is not None:
            result = error(self._crash)
        elif task.cancelled() and self._cancel_requested:
            result = error(GuestRunCancelled("the host cancelled the guest run"))
        else:
            try:
                result = value(task.result())
            except BaseException as exc:
                result = error(exc)
        self._result = result
        self.loop.create_task(self._shutdown()).add_done_callback(self._on_shutdown_done)

    async def _shutdown(self) -> None:
        """What ``asyncio.run`` does after its main coroutine: cancel the rest, clean up."""
        loop = self.loop
        me = asyncio.current_task()
        others = [task for task in asyncio.all_tasks(loop) if task is not me]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        for task in others:
            if not task.cancelled() and (exc := task.exception()) is not None:
                loop.call_exception_handler(
                    {
                        "message": "unhandled exception in a task at guest shutdown",
                        "exception": exc,
                        "task": task,
                    }
                )
        await loop.shutdown_asyncgens()
        await loop.shutdown_default_executor()

    def _on_shutdown_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.loop.call_exception_handler(
                {"message": "guest run shutdown failed", "exception": exc, "task": task}
            )
        self._shutdown_done = True

    def _close(self) -> None:
        self._closed = True
        self._internals.set_thread(None)
        if self._wakeup_fd_taken:
            signal.set_wakeup_fd(-1)
        self._selector_thread.stop()  # idle: no select is pending between iterations
        self.loop.close()
        result = self._result
        if result is None:  # pragma: no cover - defensive
            result = error(RuntimeError("asyncio guest run ended without a result"))
        self._done_callback(result)


def _wake_on_signals(internals: _LoopInternals) -> bool:
    """Let a signal wake the pending ``select`` (as trio's guest mode does); True if set.

    Why: a Python signal handler only runs when the main thread runs Python, and a
    GUI loop may sleep in C indefinitely; writing the signal to the loop's
    self-pipe makes the helper's ``select`` return and the host run an iteration,
    so e.g. SIGINT cancels an awaiting cell at once.  Main thread only, and only
    if nobody (the host toolkit, the user) has claimed the wakeup fd already.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.set_wakeup_fd(internals.self_pipe_fd(), warn_on_full_buffer=False)
    if previous != -1:
        signal.set_wakeup_fd(previous)
        return False
    return True


def start_guest_run(
    async_fn: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
    run_sync_soon_threadsafe: RunSoon,
    done_callback: Callable[[Outcome[T]], object],
    run_sync_soon_not_threadsafe: RunSoon | None = None,
) -> AsyncioGuestRun[T]:
    """Start ``async_fn(*args)`` on a guest asyncio loop driven by the host's callbacks.

    Same contract as ``trio.lowlevel.start_guest_run``; call it on the host
    thread.  Returns a handle whose ``cancel()`` aborts the run.
    """

    async def main() -> T:
        return await async_fn(*args)

    return AsyncioGuestRun(
        main(),
        run_sync_soon_threadsafe=run_sync_soon_threadsafe,
        run_sync_soon_not_threadsafe=run_sync_soon_not_threadsafe or run_sync_soon_threadsafe,
        done_callback=done_callback,
    )
