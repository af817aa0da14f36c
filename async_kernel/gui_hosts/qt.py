"""The Qt host: a PySide6 ``QApplication.exec()`` owns the main thread.

Why: with Qt driving the main thread, ``%matplotlib qt`` windows (and any Qt UI
created by user code) stay live while the kernel runs as a guest.  Other
threads wake the host by posting a custom ``QEvent`` to a ``QObject`` living on
the main thread; ``QCoreApplication.postEvent`` is thread-safe and never blocks.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Literal

from async_kernel.gui_hosts.base import CallQueue, HostUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from PySide6.QtCore import QObject
    from PySide6.QtWidgets import QApplication

__all__ = ["QtHost", "check"]

_INSTALL_HINT = "PySide6 is not installed: pip install 'async-kernel[qt]'"


def check() -> None:
    """Raise ``HostUnavailableError`` unless PySide6 imports and has a display."""
    if importlib.util.find_spec("PySide6") is None:
        raise HostUnavailableError(_INSTALL_HINT)
    try:
        importlib.import_module("PySide6.QtWidgets")
    except ImportError as exc:
        raise HostUnavailableError(f"PySide6 cannot be imported ({exc})") from exc
    needs_display = sys.platform not in ("win32", "darwin")
    has_display = any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    if needs_display and not has_display:
        raise HostUnavailableError(
            "no display for Qt: set DISPLAY, run under Xvfb, or set QT_QPA_PLATFORM=offscreen"
        )
    problem = _xcb_problem()
    if problem is not None:
        raise HostUnavailableError(problem)


_XCB_HINT = (
    "install the X11 libraries Qt's xcb plugin needs (Debian/Ubuntu: apt-get install "
    "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0), "
    "or set QT_QPA_PLATFORM=offscreen"
)


def _xcb_problem() -> str | None:
    """Why Qt's X11 (xcb) platform plugin would fail to load, if it would.

    Why: Qt aborts the whole process (SIGABRT) when no platform plugin loads,
    so ask the dynamic loader first and fail with a message instead.
    """
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if sys.platform != "linux" or not os.environ.get("DISPLAY"):
        return None
    if platform and not platform.startswith("xcb"):
        return None
    if not platform and os.environ.get("WAYLAND_DISPLAY"):
        return None  # Qt may pick Wayland; let it try
    import ctypes
    from pathlib import Path

    from PySide6.QtCore import QLibraryInfo

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    plugin = plugins / "platforms" / "libqxcb.so"
    if not plugin.exists():
        return None
    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        return f"Qt's xcb platform plugin cannot load ({exc}): {_XCB_HINT}"
    try:
        ctypes.CDLL("libxcb-cursor.so.0")  # Qt >= 6.5 loads it at run time
    except OSError:
        return f"libxcb-cursor.so.0 is missing for Qt's xcb platform plugin: {_XCB_HINT}"
    return None


def _make_waker(drain: Callable[[], None]) -> tuple[QObject, Callable[[], None]]:
    """A main-thread QObject that drains on a custom event, and its thread-safe poster."""
    from PySide6.QtCore import QCoreApplication, QEvent, QObject

    wake_type = QEvent.Type(QEvent.registerEventType())

    class Waker(QObject):
        def event(self, event: QEvent) -> bool:
            if event.type() == wake_type:
                drain()
                return True
            return super().event(event)

    waker = Waker()
    return waker, lambda: QCoreApplication.postEvent(waker, QEvent(wake_type))


class QtHost:
    """``QApplication.exec()`` as the host of a guest run."""

    def __init__(self) -> None:
        check()
        from PySide6.QtWidgets import QApplication

        existing = QApplication.instance()
        if existing is not None and not isinstance(existing, QApplication):
            raise HostUnavailableError("a non-widget QCoreApplication already exists")
        self.app: QApplication = existing or QApplication([sys.argv[0] if sys.argv else "kernel"])
        # Closing the last plot window must not end the kernel's host loop.
        self._quit_on_last = self.app.quitOnLastWindowClosed()
        self.app.setQuitOnLastWindowClosed(False)
        self._closed = False
        self._calls = CallQueue(self._wake)
        self._waker, self._post_wake = _make_waker(self._calls.drain)

    @property
    def name(self) -> Literal["qt"]:
        return "qt"

    def run_sync_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        self._calls.put(fn)

    def _wake(self) -> None:
        if not self._closed:
            self._post_wake()

    def mainloop(self) -> None:
        self.app.exec()

    def quit(self) -> None:
        self.app.quit()

    def close(self) -> None:
        self._closed = True
        self.app.setQuitOnLastWindowClosed(self._quit_on_last)
        self._waker.deleteLater()
        self.app.sendPostedEvents()
