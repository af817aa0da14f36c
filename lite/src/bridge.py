"""The browser side of async-kernel: runs inside Pyodide, in the kernel's Web Worker.

Everything specific to the browser lives here (and in the TypeScript around it); the kernel
itself is the package's own ``CallbackKernel``, serving on Pyodide's asyncio loop.

The worker gives a ``host`` object with three synchronous JavaScript functions:

- ``send(text, buffers)``: post one outgoing message (its JSON without buffers, and the
  buffers as Uint8Arrays) to the page, which hands it to JupyterLite;
- ``ask_input()``: block the worker until the user's ``input_reply`` is in; returns its JSON
  text, JavaScript ``null`` when the wait was interrupted, or raises when the page can't
  wait: it waits on a SharedArrayBuffer when the page is cross-origin isolated, else on a
  synchronous request that JupyterLite's service worker passes to the page;
- ``log(text)``: a line for the browser's console;
- ``stopped(text)``: the kernel's loop ended (shutdown or a crash): the page then answers
  every request with this reason instead of leaving the notebook waiting.
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from typing import Any

__all__ = ["Bridge", "install_orjson_shim", "patch_webloop", "skip_kernel_threads"]


class InputUnavailable(BaseException):
    """input() cannot wait in this page: shown to the user as the cell's error.

    A BaseException so that the transport's guard around the host callback (which logs and
    drops ``Exception``) lets it reach the cell that called ``input()``.
    """


def install_orjson_shim() -> None:
    """Give the kernel's wire codec an ``orjson`` built on ``json`` when the real one is absent.

    orjson is compiled; the npm package ``pyodide`` ships no package wheels, so an offline
    site has none.  The kernel only needs ``dumps``/``loads`` and the option flags.
    """
    try:
        import orjson  # noqa: F401

        return
    except ImportError:
        pass
    shim = types.ModuleType("orjson")
    shim.__doc__ = "json-based stand-in for orjson (async-kernel's JupyterLite bridge)"

    class JSONEncodeError(TypeError):
        pass

    def dumps(obj: Any, default: Any = None, option: int = 0) -> bytes:
        try:
            return json.dumps(obj, default=default, separators=(",", ":")).encode()
        except (TypeError, ValueError) as err:
            raise JSONEncodeError(str(err)) from err

    def loads(data: Any) -> Any:
        return json.loads(data)

    shim.__dict__.update(
        dumps=dumps,
        loads=loads,
        JSONEncodeError=JSONEncodeError,
        JSONDecodeError=json.JSONDecodeError,
        OPT_UTC_Z=0,
        OPT_NON_STR_KEYS=0,
        OPT_SERIALIZE_NUMPY=0,
    )
    sys.modules["orjson"] = shim


def patch_webloop() -> None:
    """Pyodide 314's WebLoop.create_task calls ``asyncio.tasks._set_task_name`` whenever a
    task factory is set (the kernel sets one to watch cells' tasks), and Python 3.14 removed
    that helper: put back what it did."""
    if not hasattr(asyncio.tasks, "_set_task_name"):

        def _set_task_name(task: asyncio.Task[Any], name: str | None) -> None:
            if name is not None:
                task.set_name(name)

        asyncio.tasks._set_task_name = _set_task_name  # type: ignore[attr-defined]


def skip_kernel_threads() -> None:
    """Pyodide has no threads: the kernel's own helper threads (named ``async-kernel-*``,
    e.g. the one that re-sends an interrupt that arrived mid-update) are skipped instead of
    failing the kernel's start.  Threads started by user code still raise as they should."""
    import threading

    original = threading.Thread.start

    def start(self: threading.Thread) -> None:
        try:
            original(self)
        except RuntimeError:
            if not self.name.startswith("async-kernel"):
                raise

    threading.Thread.start = start  # type: ignore[method-assign]


class Bridge:
    """Moves messages between the worker's JavaScript and ``CallbackKernel``."""

    def __init__(self, host: Any) -> None:
        patch_webloop()
        skip_kernel_threads()
        try:  # the package's layout by layers, then the flat one before it
            from async_kernel.kernel.callback import CallbackKernel
        except ImportError:
            from async_kernel.callback_kernel import CallbackKernel  # type: ignore[no-redef]

        self._host = host
        self.kernel = CallbackKernel(self._on_message, backend="asyncio")
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.kernel.run())
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is None:
            self._host.stopped("the kernel stopped")
            return
        import traceback

        lines = "".join(traceback.format_exception(error)).splitlines()
        self._host.stopped(f"the kernel stopped: {error!r}\n" + "\n".join(lines[-60:]))

    def _on_message(self, channel: str, msg: dict[str, Any]) -> None:
        __tracebackhide__ = True  # an interrupted input() shows the user's frames only
        from pyodide.ffi import to_js

        buffers = [bytes(b) for b in msg.pop("buffers", None) or []]
        self._host.send(json.dumps(msg), to_js(buffers))
        if channel == "stdin" and msg["msg_type"] == "input_request":
            self._wait_for_input()

    def _wait_for_input(self) -> None:
        """Block until the page writes the reply, then hand it to the kernel at once.

        The kernel's ``input()`` waits on this same thread, so the reply has to be in
        before this callback returns.
        """
        __tracebackhide__ = True
        try:
            reply = self._host.ask_input()
        except Exception as err:
            raise InputUnavailable(str(getattr(err, "message", err))) from None
        if not isinstance(reply, str):  # JavaScript's null (pyodide.ffi.jsnull, not None)
            raise KeyboardInterrupt("input() interrupted")
        self.kernel.receive(reply, "stdin")

    def receive(self, text: str, buffers: Any = None) -> None:
        """One message from the page: its JSON text and, if any, its buffers."""
        msg = json.loads(text)
        msg["buffers"] = [b.to_bytes() for b in buffers] if buffers else []
        self.kernel.receive(msg, msg.get("channel") or "shell")

    def interrupt(self) -> None:
        """Cancel the cells that await: the page reached us, so the loop is free."""
        self.kernel.interrupt()
