"""A live Tk root on its own thread, for kernels whose main thread is not a Tk host.

Why: a plain kernel's main thread runs the async backend, so a ``tkinter.Tk`` made in a
cell is never pumped and its windows freeze.  Tk (unlike Qt) can live on any thread, as
long as every Tk call happens on the thread that created the interpreter, so this module
runs ``mainloop()`` on a dedicated thread and ships functions to it: :meth:`TkThread.call`
returns a :class:`~async_kernel.toolkit.pending.Pending` that a cell can ``await``.

How work reaches the thread: with a threaded Tcl (the norm) a small *waker* thread makes
the one marshalled ``after 0 <drain>`` call per batch, so ``call()`` itself never blocks
(tkinter's marshalled call waits until the Tk thread takes it, which would stall the
kernel's loop while the Tk thread is busy).  With an unthreaded Tcl the Tk thread polls the
queue every ``POLL_MS`` instead.

Why the thread never ends (both measured with Tcl/Tk 8.6): a Tcl thread that exits breaks
every later thread's cross-thread calls (they wait forever), so ``stop()`` only quits the
loop and destroys the root, and the thread parks until :func:`start_tk_thread` gives it a
new root.  And Tcl aborts the process ("Tcl_AsyncDelete: async handler deleted by the wrong
thread") when an interpreter is freed on another thread, as happens when a cell drops the
last widget of a stopped root; so the thread keeps stopped interpreters until nothing else
refers to them and frees them itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack

from async_kernel.gui_hosts.base import active_host
from async_kernel.gui_hosts.tk import POLL_MS, destroy_root, new_root, tcl_is_threaded
from async_kernel.interrupt import block_sigint_in_this_thread
from async_kernel.toolkit.pending import Pending

if TYPE_CHECKING:
    import tkinter
    from collections.abc import Callable

__all__ = ["TkThread", "current_tk_thread", "start_tk_thread"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

START_TIMEOUT = 10.0
REAP_POLL = 0.5  # seconds between checks for the last outside reference to a stopped root

_Job = tuple[Pending[Any], "Callable[..., Any]", tuple[Any, ...], contextvars.Context]

_lock = threading.Lock()
_current: TkThread | None = None  # one per process: its thread lives as long


def start_tk_thread(timeout: float = START_TIMEOUT) -> TkThread:
    """Start the process's Tk thread, or return the one already running.

    Raises ``HostUnavailableError`` when Tk cannot start here (no tkinter, no display) and
    ``RuntimeError`` in a kernel whose host loop is already Tk: use ``tk_root()`` there.
    """
    global _current
    host = active_host()
    if host is not None and host.name == "tk":
        raise RuntimeError(
            "this kernel's main thread already runs Tk (--interface.loop=tk): use "
            "async_kernel.gui_hosts.tk_root() instead of a second Tk interpreter"
        )
    with _lock:
        if _current is None:
            _current = TkThread(_token=_TOKEN)
        if _current.stopped:
            _current.start(timeout)
        return _current


def current_tk_thread() -> TkThread | None:
    """The Tk thread if its loop is running (started and not stopped)."""
    tk_thread = _current
    return tk_thread if tk_thread is not None and not tk_thread.stopped else None


_TOKEN = object()


class TkThread:
    """The process's Tk thread: a withdrawn ``tkinter.Tk`` root running ``mainloop()``.

    Touch Tk objects only in functions passed to :meth:`call` or :meth:`run` (or in Tk
    callbacks, which run on the thread anyway).  Get it with :func:`start_tk_thread`.
    """

    def __init__(self, *, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError("use async_kernel.gui_hosts.tk_thread.start_tk_thread()")
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()  # never held while waiting on the Tk thread
        self._closed = True
        self._wake_pending = False
        self._wake = threading.Event()
        self._wake_target: tuple[Any, str] | None = None  # (tkapp, drain command) while open
        self._waker_busy = False
        self._waker: threading.Thread | None = None
        self._start_request = threading.Event()
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._finished.set()
        self._error: BaseException | None = None
        self._root: tkinter.Tk | None = None
        self._drain_command = ""
        self._graveyard: list[object] = []  # stopped interpreters still referenced elsewhere
        self.threaded_tcl = False
        self.thread = threading.Thread(target=self._main, name="async-kernel-tk", daemon=True)

    # -- public API ---------------------------------------------------------------------------
    @property
    def root(self) -> tkinter.Tk:
        """The hidden root, as a master for ``Toplevel`` windows (use it on the thread only)."""
        root = self._root
        if root is None:
            raise RuntimeError(f"{self!r} is stopped")
        return root

    @property
    def stopped(self) -> bool:
        """True when no loop runs (before start, after :meth:`stop`): ``call`` cancels."""
        return self._closed

    def in_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def call(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> Pending[T]:
        """Run the plain function ``fn(*args)`` on the Tk thread soon; safe from any thread.

        Returns at once.  ``await`` the Pending in a cell, or ``.result(timeout)`` it from a
        thread that is not the Tk thread.  ``fn`` runs in a copy of the calling context (so
        its output goes to the calling cell).  Cancelling the Pending before ``fn`` starts
        skips it; a running ``fn`` cannot be interrupted.
        """
        pending: Pending[T] = Pending()
        job: _Job = (pending, fn, args, contextvars.copy_context())
        with self._lock:
            if self._closed:
                pending.set_cancelled(f"{self!r} is stopped")
                return pending
            self._jobs.put(job)
            if self._wake_pending or not self.threaded_tcl:
                return pending  # a drain is due already, or the poller will see it
            self._wake_pending = True
        if self.in_thread():
            self.root.tk.call("after", 0, self._drain_command)
        else:
            self._wake.set()
        return pending

    def run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts, timeout: float | None = 10.0) -> T:
        """Run ``fn(*args)`` on the Tk thread and wait for its result (blocking).

        On the Tk thread itself ``fn`` is called directly.  In a cell prefer
        ``await tk.call(...)``: ``run`` blocks the kernel's loop while it waits.
        """
        if self.in_thread():
            return fn(*args)
        return self.call(fn, *args).result(timeout)

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Quit the loop and destroy the root; True once that is done (safe from any thread).

        Calls still queued are cancelled.  On the Tk thread this only asks for the stop and
        returns False.  The thread parks (see the module docstring);
        :func:`start_tk_thread` starts a new root on it.
        """
        if self.in_thread():
            self._begin_stop()
            return False
        self.call(self._begin_stop)  # as a job: it must run inside mainloop
        return self._finished.wait(timeout)

    def __repr__(self) -> str:
        state = "stopped" if self._closed else "running"
        return f"<TkThread {state} on {self.thread.name}>"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start a new root and loop on the thread (re-raises a start-up failure)."""
        if not self._finished.wait(timeout):
            raise RuntimeError(f"the previous Tk loop did not end within {timeout} s")
        if not self._closed:
            return
        self._ready.clear()
        self._finished.clear()
        self._error = None
        if not self.thread.is_alive():
            self.thread.start()
        self._start_request.set()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the Tk thread did not start within {timeout} s")
        if self._error is not None:
            raise self._error

    # -- on the Tk thread ---------------------------------------------------------------------
    def _main(self) -> None:
        """Run one loop per start request, for the life of the process."""
        block_sigint_in_this_thread()
        while True:
            while not self._start_request.wait(REAP_POLL if self._graveyard else None):
                self._reap()
            self._start_request.clear()
            self._session()
            self._reap()

    def _session(self) -> None:
        try:
            root = new_root()
        except BaseException as err:
            self._error = err
            self._finished.set()
            self._ready.set()
            return
        self._root = root
        self.threaded_tcl = tcl_is_threaded(root)
        self._drain_command = root.register(self._drain)
        with self._lock:
            self._closed = False
            self._wake_pending = False
            if self.threaded_tcl:
                self._wake_target = (root.tk, self._drain_command)
        if self.threaded_tcl:
            if self._waker is None:
                self._waker = threading.Thread(
                    target=self._wake_loop, name="async-kernel-tk-waker", daemon=True
                )
                self._waker.start()
        else:
            root.after(POLL_MS, self._poll)
        if self._graveyard:
            root.after(int(REAP_POLL * 1000), self._reap_timer)
        root.after(0, self._ready.set)
        try:
            root.mainloop()  # until _begin_stop quits it (or user code quits / destroys it)
        finally:
            self._close_gate(root)
            self._teardown(root)
            self._graveyard.append(root.tk)
            del root
            self._root = None
            self._finished.set()

    def _wake_loop(self) -> None:
        """Make the one blocking, marshalled ``after 0`` call per batch of jobs."""
        block_sigint_in_this_thread()
        while True:
            self._wake.wait()
            self._wake.clear()  # before the call: later jobs set the event again
            with self._lock:
                target = self._wake_target
                self._waker_busy = target is not None
            if target is None:
                continue
            # An error means the loop ended under us; _close_gate then handles the jobs.
            with contextlib.suppress(Exception):
                target[0].call("after", 0, target[1])
            del target  # drop the interpreter here, before saying we are done with it
            with self._lock:
                self._waker_busy = False

    def _drain(self) -> None:
        with self._lock:
            self._wake_pending = False  # before reading: later jobs must wake again
        for _ in range(self._jobs.qsize()):
            if self._closed:
                return  # stopping: _teardown cancels what is left
            self._run_job(self._jobs.get_nowait())

    def _poll(self) -> None:
        self._drain()
        if not self._closed and self._root is not None:
            self._root.after(POLL_MS, self._poll)

    def _reap_timer(self) -> None:
        self._reap()
        if self._graveyard and self._root is not None:
            self._root.after(int(REAP_POLL * 1000), self._reap_timer)

    def _reap(self) -> None:
        """Free (here, on the interpreter's own thread) stopped roots nobody else holds."""
        keep: list[object] = []
        while self._graveyard:
            tkapp = self._graveyard.pop()
            if sys.getrefcount(tkapp) > 2:  # our local and getrefcount's own argument
                keep.append(tkapp)
            del tkapp
        self._graveyard = keep

    @staticmethod
    def _run_job(job: _Job) -> None:
        pending, fn, args, context = job
        if pending.done():  # cancelled before it could start
            return
        try:
            result = context.run(fn, *args)
        except BaseException as err:  # never let it escape into Tk's callback machinery
            pending.set_exception(err)
            return
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            pending.set_exception(
                TypeError("TkThread.call runs plain functions, not coroutine functions")
            )
            return
        pending.set_result(result)

    def _shut_gate(self) -> bool:
        """Refuse new calls and wakes; True if the waker is still inside a call."""
        with self._lock:
            self._closed = True
            self._wake_target = None
            return self._waker_busy

    def _begin_stop(self) -> None:
        self._shut_gate()
        self._quit_when_waker_idle()

    def _quit_when_waker_idle(self) -> None:
        """Keep serving events until the waker's marshalled call has returned, then quit."""
        root = self._root
        if root is None:
            return
        if self._shut_gate():
            root.after(1, self._quit_when_waker_idle)
        else:
            root.quit()

    def _close_gate(self, root: tkinter.Tk) -> None:
        """After mainloop (maybe quit by user code): let a waker mid-call finish (bounded)."""
        import _tkinter

        deadline = time.monotonic() + 2.0
        while self._shut_gate() and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                root.tk.dooneevent(_tkinter.ALL_EVENTS | _tkinter.DONT_WAIT)
            time.sleep(0.001)

    def _teardown(self, root: tkinter.Tk) -> None:
        destroy_root(root)
        while True:
            try:
                pending = self._jobs.get_nowait()[0]
            except queue.Empty:
                break
            pending.set_cancelled(f"{self!r} stopped")
