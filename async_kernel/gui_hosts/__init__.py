"""GUI host loops: let Tk or Qt own the main thread with the kernel as a guest.

Why: GUI toolkits insist on the main thread; running the async backend as a
guest of their loop keeps user windows (``%matplotlib tk``/``qt``) responsive
while the kernel serves requests.  ``plain`` runs the backend directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, TypeVarTuple, Unpack

from async_kernel.gui_hosts.base import (
    HostLoop,
    HostName,
    HostUnavailableError,
    active_host,
    drive,
)
from async_kernel.interrupt import sigint_blocked

if TYPE_CHECKING:
    import tkinter
    from collections.abc import Awaitable, Callable

    from PySide6.QtWidgets import QApplication

    from async_kernel.guest import Backend

__all__ = [
    "HostName",
    "HostUnavailableError",
    "check_host",
    "current_host",
    "qt_app",
    "run_with_host",
    "tk_root",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
HOST_NAMES: tuple[HostName, ...] = ("plain", "tk", "qt")


def check_host(name: HostName) -> None:
    """Raise ``HostUnavailableError`` now if ``name`` cannot run (before the kernel starts)."""
    if name == "plain":
        return
    if name == "tk":
        from async_kernel.gui_hosts import tk

        tk.check()
    elif name == "qt":
        from async_kernel.gui_hosts import qt

        qt.check()
    else:
        raise HostUnavailableError(f"unknown host {name!r}: expected one of {HOST_NAMES}")


def run_with_host(
    name: HostName,
    backend: Backend,
    async_fn: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
) -> T:
    """Run ``async_fn(*args)`` to completion with host ``name`` owning this (main) thread.

    Returns its value or raises its exception once the host loop has quit and
    the GUI is torn down.  Raises ``HostUnavailableError`` (from the host's own set-up, the
    same test ``check_host`` makes) when the GUI cannot start here.
    """
    if name == "plain":
        from async_kernel.gui_hosts import plain

        return plain.run(backend, async_fn, *args)
    # Tk and Qt start threads of their own; they must not be where SIGINT lands.
    with sigint_blocked():
        if name == "tk":
            from async_kernel.gui_hosts.tk import TkHost

            host: HostLoop = TkHost()
        else:
            from async_kernel.gui_hosts.qt import QtHost

            host = QtHost()
    return drive(host, backend, async_fn, *args)


def current_host() -> HostName:
    """The host owning the main thread now (``plain`` when no GUI loop runs)."""
    host = active_host()
    return host.name if host is not None else "plain"


def tk_root() -> tkinter.Tk | None:
    """The running Tk host's root window, for user code that needs a Tk master."""
    if current_host() != "tk":
        return None
    from async_kernel.gui_hosts.tk import TkHost

    host = active_host()
    return host.root if isinstance(host, TkHost) else None


def qt_app() -> QApplication | None:
    """The running Qt host's ``QApplication``."""
    if current_host() != "qt":
        return None
    from async_kernel.gui_hosts.qt import QtHost

    host = active_host()
    return host.app if isinstance(host, QtHost) else None
