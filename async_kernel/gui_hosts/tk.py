"""The Tk host: a withdrawn ``tkinter.Tk`` root whose mainloop owns the main thread.

Why: with Tk driving the main thread, ``%matplotlib tk`` windows (and any other
Tk UI created by user code) stay live while the kernel runs as a guest.

Scheduling from other threads: with a threaded Tcl (the norm), tkinter
marshals a call made on another thread to the Tk thread, so a waking thread
runs ``after 0 <drain>`` through a Tcl command registered once (one marshalled
call per wake; measured wake latency ~0.1 ms median, no idle wake-ups).
``event_generate("<<Wake>>", when="tail")`` was tried first and rejected: under
load Tk occasionally dropped the generated virtual event, hanging the guest.
The marshalled call blocks the caller until the Tk thread takes it, so wakes
are coalesced (one per batch: at most one thread waits) and the host thread
never waits on a thread that might be waking it.  With an unthreaded Tcl such
calls are unsafe, so the host polls the queue every ``POLL_MS`` instead
(latency up to that period).  ``createfilehandler`` is not used: it does not
exist on Windows.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Literal

from async_kernel.gui_hosts.base import CallQueue, HostUnavailableError

if TYPE_CHECKING:
    import tkinter
    from collections.abc import Callable

__all__ = ["POLL_MS", "TkHost", "check"]

POLL_MS = 5


def _import_tkinter() -> None:
    try:
        importlib.import_module("tkinter")
    except ImportError as exc:
        raise HostUnavailableError(
            f"tkinter is not available ({exc}): install your Python's Tk support "
            "(e.g. apt-get install python3-tk)"
        ) from exc


def _needs_x_display() -> bool:
    return sys.platform not in ("win32", "darwin")


def new_root() -> tkinter.Tk:
    """A withdrawn Tk root, or HostUnavailableError saying what to install or set."""
    _import_tkinter()
    import tkinter

    if _needs_x_display() and not os.environ.get("DISPLAY"):
        raise HostUnavailableError("no display for Tk: set DISPLAY or run under Xvfb")
    try:
        root = tkinter.Tk()
    except tkinter.TclError as exc:
        raise HostUnavailableError(
            f"Tk cannot open the display ({exc}): set DISPLAY or run under Xvfb"
        ) from exc
    root.withdraw()
    return root


def tcl_is_threaded(root: tkinter.Tk) -> bool:
    """Whether Tcl takes calls from other threads (else a poll must drain them)."""
    return bool(int(root.tk.eval("set tcl_platform(threaded)")))


def destroy_root(root: tkinter.Tk) -> None:
    """Destroy ``root`` without Tcl errors from work still queued on it."""
    import tkinter

    try:
        # Idle handlers Tk queued itself (ttk's ThemeChanged after start-up) would fire
        # into a dead root and print a Tcl error: run them now.  Pending ``after`` scripts
        # (ours or user timers) are cancelled instead.
        root.update_idletasks()
        for script in _after_ids(root):
            root.after_cancel(script)
        root.destroy()
    except tkinter.TclError:
        pass  # already destroyed by user code


def _after_ids(root: tkinter.Tk) -> list[str]:
    """The ids of the ``after`` scripts pending on ``root``'s interpreter.

    Why: typeshed leaves ``splitlist``'s argument untyped; Tcl gives back strings.
    """
    tcl: Any = root.tk
    return [str(script) for script in tcl.splitlist(tcl.call("after", "info"))]


def check() -> None:
    """Raise ``HostUnavailableError`` unless a Tk root can be created here."""
    new_root().destroy()


class TkHost:
    """Tk mainloop as the host of a guest run."""

    def __init__(self) -> None:
        self.root = new_root()
        self._thread = threading.get_ident()
        self.threaded_tcl = tcl_is_threaded(self.root)
        self._calls = CallQueue(self._wake)
        self._closed = False
        # A Tcl command registered once: a wake from a thread is one marshalled call.
        self._drain_command = self.root.register(self._calls.drain)
        if not self.threaded_tcl:
            self.root.after(POLL_MS, self._poll)

    @property
    def name(self) -> Literal["tk"]:
        return "tk"

    def run_sync_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        self._calls.put(fn)

    def _wake(self) -> None:
        if self._closed:
            return
        if threading.get_ident() == self._thread or self.threaded_tcl:
            self.root.tk.call("after", 0, self._drain_command)
        # else: the poller drains the queue within POLL_MS

    def _poll(self) -> None:
        self._calls.drain()
        self.root.after(POLL_MS, self._poll)

    def mainloop(self) -> None:
        self.root.mainloop()

    def quit(self) -> None:
        self.root.quit()

    def close(self) -> None:
        self._closed = True
        destroy_root(self.root)
