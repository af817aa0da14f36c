"""The Qt host: a ``QApplication.exec()`` owns the main thread.

Why: with Qt driving the main thread, ``%matplotlib qt`` windows (and any Qt UI
created by user code) stay live while the kernel runs as a guest.  Other
threads wake the host by posting a custom ``QEvent`` to a ``QObject`` living on
the main thread; ``QCoreApplication.postEvent`` is thread-safe and never blocks.

The binding is the one ``QT_API`` names (``pyside6``, ``pyqt6``, ``pyqt5``: the names
matplotlib and qtpy read), else the first installed of PySide6, PyQt6, PyQt5.  Only the
calls the three share are used; where they differ (``exec_``, ``QLibraryInfo``) both are tried.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from async_kernel.gui_hosts.base import CallQueue, HostUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from PySide6.QtWidgets import QApplication

__all__ = ["BINDINGS", "QtHost", "binding", "check"]

# QT_API value -> module, in the order tried when QT_API is unset.
BINDINGS: dict[str, str] = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5"}

_INSTALL_HINT = (
    "no Qt binding is installed (PySide6, PyQt6 or PyQt5): pip install 'async-kernel[qt]'"
)


def binding() -> str:
    """The Qt binding to use (a module name); raises ``HostUnavailableError`` if none."""
    wanted = os.environ.get("QT_API", "").strip().lower()
    if wanted:
        if wanted not in BINDINGS:
            raise HostUnavailableError(
                f"QT_API={wanted!r} is not a binding async-kernel supports "
                f"(one of: {', '.join(BINDINGS)})"
            )
        module = BINDINGS[wanted]
        if importlib.util.find_spec(module) is None:
            raise HostUnavailableError(
                f"QT_API={wanted} names {module}, which is not installed: pip install {module}"
            )
        return module
    for module in BINDINGS.values():
        if importlib.util.find_spec(module) is not None:
            return module
    raise HostUnavailableError(_INSTALL_HINT)


def _qt(submodule: str) -> Any:
    """``<binding>.<submodule>``, e.g. ``QtCore`` of the chosen binding."""
    module: ModuleType = importlib.import_module(f"{binding()}.{submodule}")
    return module


def check() -> None:
    """Raise ``HostUnavailableError`` unless a Qt binding imports and has a display."""
    name = binding()
    try:
        importlib.import_module(f"{name}.QtWidgets")
    except ImportError as exc:
        raise HostUnavailableError(f"{name} cannot be imported ({exc})") from exc
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

    plugins = Path(_plugins_path())
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


def _plugins_path() -> str:
    library_info: Any = _qt("QtCore").QLibraryInfo
    if hasattr(library_info, "path"):  # Qt 6
        return str(library_info.path(library_info.LibraryPath.PluginsPath))
    return str(library_info.location(library_info.PluginsPath))  # Qt 5


def _make_waker(drain: Callable[[], None]) -> tuple[Any, Callable[[], None]]:
    """A main-thread QObject that drains on a custom event, and its thread-safe poster."""
    core = _qt("QtCore")
    QCoreApplication, QEvent, QObject = core.QCoreApplication, core.QEvent, core.QObject

    wake_type = QEvent.Type(QEvent.registerEventType())

    class Waker(QObject):
        def event(self, event: Any) -> bool:
            if event.type() == wake_type:
                drain()
                return True
            handled: bool = QObject.event(self, event)  # the binding's base class is Any
            return handled

    waker = Waker()
    return waker, lambda: QCoreApplication.postEvent(waker, QEvent(wake_type))


class QtHost:
    """``QApplication.exec()`` as the host of a guest run."""

    def __init__(self) -> None:
        check()
        QApplication: Any = _qt("QtWidgets").QApplication

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
        run = getattr(self.app, "exec", None) or getattr(self.app, "exec_")  # noqa: B009
        run()

    def quit(self) -> None:
        self.app.quit()

    def close(self) -> None:
        self._closed = True
        self.app.setQuitOnLastWindowClosed(self._quit_on_last)
        self._waker.deleteLater()
        self.app.sendPostedEvents()
