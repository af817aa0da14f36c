"""``debug_request`` on control: a few commands answered here, the rest forwarded to debugpy.

Answered here (the Jupyter extensions of JEP 47, and what needs the kernel's own state):
``debugInfo``, ``dumpCell``, ``configurationDone``, ``inspectVariables``,
``richInspectVariables`` (outside a stopped frame), ``copyToGlobals`` (through debugpy's
``setExpression``), ``modules`` and ``source``.  ``inspectVariables`` and
``richInspectVariables`` show the namespace of the shell the request names (its header's
``subshell_id``): a subshell's own namespace, or the main one it shares.  Everything
else (``setBreakpoints``, ``stackTrace``, ``scopes``, ``variables``, ``evaluate``, stepping,
``continue``, ``disconnect``, ...) goes to debugpy's adapter, which debugs this process.

debugpy is started lazily by the first ``initialize``, on the main thread (where cells run),
after the kernel's own threads are marked so pydevd never traces or suspends them: the
control thread must keep answering while a breakpoint holds the main thread.

Everything here runs on the control thread, but debugpy's start (on the main loop) and the
DAP client's reading of events (a task of the control loop).  What it uses of the kernel is
given to it as :class:`.parts.DebuggerParts`.
"""

from __future__ import annotations

import contextlib
import linecache
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio

from ..parent import set_request
from ..shell.namespaces import main_namespace
from ..shell.transform import PlainPythonTransformerManager
from .cells import HASH_METHOD, HASH_SEED, TMP_SUFFIX, dump_cell, tmp_prefix
from .client import DapClient, DapMessage, dap_response

if TYPE_CHECKING:
    from ..parent import Request
    from .parts import DebuggerParts

__all__ = ["DebugHandlers"]

log = logging.getLogger("async_kernel.debugger")

START_TIMEOUT = 30.0  # seconds to wait for the main thread to start debugpy
_UNTRACED_THREADS = ("async-kernel-io", "async-kernel-heartbeat", "async-kernel-fd-capture")
_REPR_LIMIT = 200
_RESUMING = ("continue", "next", "stepIn", "stepOut", "stepBack", "reverseContinue", "goto")


_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def _fields(value: object) -> dict[str, Any]:
    """A DAP message's nested object; empty if it is missing or not an object."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def _skip_in_debugger(thread: threading.Thread) -> None:
    """pydevd's documented per-thread opt-out: never trace, never suspend this thread."""
    marked: Any = thread  # attributes pydevd reads from a thread; Thread declares neither
    marked.pydev_do_not_trace = True
    marked.is_pydev_daemon_thread = True


class DebugHandlers:
    """The kernel's side of a debug session; runs on the control thread."""

    def __init__(self, parts: DebuggerParts) -> None:
        self._parts = parts
        self.client = DapClient(self._on_event)
        self._endpoint: tuple[str, int] | None = None
        self._started = False  # debugInfo's isStarted: from initialize to disconnect
        self._breakpoints: dict[str, list[dict[str, Any]]] = {}
        self._stopped_threads: set[int] = set()
        self._subshell_id: object = None  # the shell the request being answered names
        self._local: dict[str, Callable[[DapMessage], Awaitable[DapMessage]]] = {
            "initialize": self._initialize,
            "attach": self._attach,
            "configurationDone": self._configuration_done,
            "debugInfo": self._debug_info,
            "dumpCell": self._dump_cell,
            "inspectVariables": self._inspect_variables,
            "richInspectVariables": self._rich_inspect_variables,
            "copyToGlobals": self._copy_to_globals,
            "modules": self._modules,
            "source": self._source,
        }

    def install(self) -> None:
        """Answer debug_request (the shell's cells are already named by CellCompiler)."""
        self._parts.replies.register("debug_request", self.debug_request)

    # -- dispatch -----------------------------------------------------------------------
    async def debug_request(self, request: Request) -> dict[str, Any]:
        message: DapMessage = request.msg["content"]
        command = str(message.get("command", ""))
        local = self._local.get(command)
        if local is not None:
            self._subshell_id = request.msg["header"].get("subshell_id")
            try:
                return await local(message)
            except LookupError as err:  # a subshell that does not exist
                return dap_response(message, message=str(err))
        if not self.client.connected:
            return dap_response(message, message="the debugger is not started: send initialize")
        response = await self.client.request(message)
        self._after(message, response)
        if command == "disconnect":
            await self._reset()
        return response

    def _after(self, request: DapMessage, response: DapMessage) -> None:
        """Keep the state that debugInfo reports in step with what debugpy accepted."""
        if not response.get("success"):
            return
        command = request.get("command")
        arguments: dict[str, Any] = request.get("arguments") or {}
        if command == "setBreakpoints":
            path = str(_fields(arguments.get("source")).get("path", ""))
            wanted: list[dict[str, Any]] = arguments.get("breakpoints") or []
            if wanted:
                self._breakpoints[path] = wanted
            else:
                self._breakpoints.pop(path, None)
        elif command in _RESUMING:
            if command == "continue" and _fields(response.get("body")).get(
                "allThreadsContinued", True
            ):
                self._stopped_threads.clear()
            else:
                self._stopped_threads.discard(arguments.get("threadId", -1))

    def _on_event(self, event: DapMessage) -> None:
        body: dict[str, Any] = event.get("body") or {}
        name = event.get("event")
        if name == "stopped" and "threadId" in body:
            self._stopped_threads.add(body["threadId"])
        elif name == "continued":
            if body.get("allThreadsContinued", True):
                self._stopped_threads.clear()
            else:
                self._stopped_threads.discard(body.get("threadId", -1))
        self._parts.replies.publish("debug_event", event)

    # -- session ------------------------------------------------------------------------
    async def _initialize(self, message: DapMessage) -> DapMessage:
        if not self.client.connected:
            host, port = await self._listen()
            await self.client.connect(host, port)
            self._parts.control.start_soon(self._read_events)
        response = await self.client.request(message)
        # Started as soon as initialize succeeds, as ipykernel reports it: JupyterLab asks
        # debugInfo while its attach is in flight and takes isStarted=false as "stopped".
        if response.get("success"):
            self._started = True
            self._keep_line_numbers(True)
        return response

    def _keep_line_numbers(self, keep: bool) -> None:
        """Cells compile with their lines as dumped (IPython drops leading blank lines)."""
        manager = self._parts.shell.input_transformer_manager
        if isinstance(manager, PlainPythonTransformerManager):
            manager.keep_line_numbers = keep

    async def _read_events(self) -> None:
        set_request(None)  # events belong to no request
        await self.client.read_forever()

    async def _listen(self) -> tuple[str, int]:
        """Start debugpy once, on the main thread, with the kernel's own threads left alone."""
        if self._endpoint is not None:
            return self._endpoint
        _skip_in_debugger(self._parts.control.thread)
        for thread in threading.enumerate():
            if thread.name in _UNTRACED_THREADS:
                _skip_in_debugger(thread)
        result: Future[tuple[str, int]] = Future()

        def listen() -> None:
            try:
                import debugpy

                debugpy.configure(subProcess=False)  # pyright: ignore[reportUnknownMemberType]  # debugpy leaves its keyword arguments untyped
                host, port = debugpy.listen(("127.0.0.1", 0))
                result.set_result((str(host), int(port)))
            except BaseException as err:
                result.set_exception(err)

        self._parts.main.call_soon(listen)
        deadline = time.monotonic() + START_TIMEOUT
        while not result.done():
            if time.monotonic() > deadline:
                raise TimeoutError("the main thread did not start debugpy (is a cell blocking?)")
            await anyio.sleep(0.01)
        self._endpoint = result.result()
        return self._endpoint

    async def _attach(self, message: DapMessage) -> DapMessage:
        """Attach, then finish debugpy's configuration handshake ourselves.

        debugpy answers ``attach`` only after ``configurationDone``, while JupyterLab sends
        ``configurationDone`` only after the attach response: we send our own and answer
        the frontend's locally.
        """
        if not self.client.connected or self._endpoint is None:
            return dap_response(message, message="the debugger is not started: send initialize")
        host, port = self._endpoint
        arguments: dict[str, Any] = {
            "justMyCode": True,
            **_fields(message.get("arguments")),
            "connect": {"host": host, "port": port},
            "logToFile": False,
            # The kernel's own frames are not the user's code: never step into them. By path
            # too: ``python -m async_kernel`` runs its __main__.py as module ``__main__``.
            "rules": [
                {"module": "async_kernel", "include": False},
                {"path": _PACKAGE_DIR, "include": False},
            ],
        }
        box: list[DapMessage] = []

        async def attach() -> None:
            box.append(await self.client.request({**message, "arguments": arguments}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(attach)
            with anyio.fail_after(START_TIMEOUT):
                await self.client.initialized.wait()
            done = {"type": "request", "seq": 0, "command": "configurationDone"}
            await self.client.request(done)
        return box[0]

    async def _configuration_done(self, message: DapMessage) -> DapMessage:
        return dap_response(message)

    async def _reset(self) -> None:
        await self.client.close()
        self._started = False
        self._breakpoints.clear()
        self._stopped_threads.clear()
        self._keep_line_numbers(False)

    # -- Jupyter extensions -------------------------------------------------------------
    async def _debug_info(self, message: DapMessage) -> DapMessage:
        return dap_response(
            message,
            {
                "isStarted": self._started,
                "hashMethod": HASH_METHOD,
                "hashSeed": HASH_SEED,
                "tmpFilePrefix": tmp_prefix(),
                "tmpFileSuffix": TMP_SUFFIX,
                "breakpoints": [
                    {"source": path, "breakpoints": bps} for path, bps in self._breakpoints.items()
                ],
                "stoppedThreads": sorted(self._stopped_threads),
                "richRendering": True,
                "copyToGlobals": True,
                "exceptionPaths": ["Python Exceptions"],
            },
        )

    async def _dump_cell(self, message: DapMessage) -> DapMessage:
        code = str(_fields(message.get("arguments")).get("code", ""))
        return dap_response(message, {"sourcePath": dump_cell(code)})

    def _namespace(self) -> dict[str, Any]:
        """The user namespace of the shell the request names (see the module's docs)."""
        namespace = self._parts.namespace_of(self._subshell_id)  # LookupError: unknown
        if namespace is not None:
            return namespace
        return main_namespace(self._parts.shell)

    def _user_variables(self) -> list[tuple[str, Any]]:
        shell: Any = self._parts.shell  # IPython leaves user_ns_hidden untyped
        hidden = shell.user_ns_hidden
        return [
            (name, value)
            for name, value in list(self._namespace().items())
            if not name.startswith("_") and name not in hidden
        ]

    async def _copy_to_globals(self, message: DapMessage) -> DapMessage:
        """JupyterLab's "copy to globals": a stopped frame's variable into the namespace the
        frame's code runs in (a cell's frame: the user namespace of its shell), as a new
        name.  debugpy assigns it in that frame (``setExpression``)."""
        arguments: dict[str, Any] = message.get("arguments") or {}
        source = str(arguments.get("srcVariableName", ""))
        target = str(arguments.get("dstVariableName", "")) or source
        frame_id = arguments.get("srcFrameId")
        if not (source.isidentifier() and target.isidentifier()) or frame_id is None:
            return dap_response(
                message,
                message="copyToGlobals needs srcVariableName, dstVariableName and srcFrameId",
            )
        if not self.client.connected or not self._stopped_threads:
            return dap_response(message, message="copyToGlobals needs a stopped frame")
        response = await self.client.request(
            {
                "type": "request",
                "seq": message.get("seq", 0),
                "command": "setExpression",
                "arguments": {
                    "expression": f"globals()[{target!r}]",
                    "value": source,
                    "frameId": frame_id,
                },
            }
        )
        if not response.get("success"):
            return dap_response(
                message, message=str(response.get("message", "setExpression failed"))
            )
        return dap_response(message, response.get("body") or {})

    async def _inspect_variables(self, message: DapMessage) -> DapMessage:
        variables: list[dict[str, Any]] = []
        for name, value in self._user_variables():
            try:
                text = repr(value)
            except Exception as err:
                text = f"<repr failed: {err!r}>"
            if len(text) > _REPR_LIMIT:
                text = text[: _REPR_LIMIT - 3] + "..."
            variables.append(
                {
                    "name": name,
                    "value": text,
                    "type": type(value).__name__,
                    "variablesReference": 0,
                }
            )
        return dap_response(message, {"variables": variables})

    async def _rich_inspect_variables(self, message: DapMessage) -> DapMessage:
        """A variable's mime bundle; empty (not a failure) when the context lacks the name.

        JupyterLab's variable view asks again at every change of the variables (continue,
        another frame, each execution) and shows empty data as "undefined in the active
        context"; a failed reply is an uncaught error in the page.
        """
        undefined: dict[str, Any] = {"data": {}, "metadata": {}}
        arguments: dict[str, Any] = message.get("arguments") or {}
        name = str(arguments.get("variableName", ""))
        frame_id = arguments.get("frameId")
        if frame_id is not None and self.client.connected and self._stopped_threads:
            # The value lives in a paused frame: only debugpy can read it.
            evaluated = await self.client.request(
                {
                    "type": "request",
                    "seq": message.get("seq", 0),
                    "command": "evaluate",
                    "arguments": {"expression": name, "frameId": frame_id, "context": "repl"},
                }
            )
            if not evaluated.get("success"):
                return dap_response(message, undefined)
            text = str(_fields(evaluated.get("body")).get("result", ""))
            return dap_response(message, {"data": {"text/plain": text}, "metadata": {}})
        namespace = dict(self._user_variables())
        if name not in namespace:
            return dap_response(message, undefined)
        formatter: Any = self._parts.shell.display_formatter
        data, metadata = formatter.format(namespace[name])
        return dap_response(message, {"data": data, "metadata": metadata})

    async def _modules(self, message: DapMessage) -> DapMessage:
        arguments: dict[str, Any] = message.get("arguments") or {}
        found = [
            {"id": name, "name": name, "path": str(module.__file__)}
            for name, module in list(sys.modules.items())
            if getattr(module, "__file__", None)
        ]
        start = int(arguments.get("startModule", 0))
        count = int(arguments.get("moduleCount", 0)) or len(found)
        return dap_response(
            message, {"modules": found[start : start + count], "totalModules": len(found)}
        )

    async def _source(self, message: DapMessage) -> DapMessage:
        source = _fields(_fields(message.get("arguments")).get("source"))
        name = str(source.get("path", ""))
        path = Path(name)
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if path.is_file():
                return dap_response(message, {"content": path.read_text(encoding="utf-8")})
        # Only cells with breakpoints are dumped, yet every cell's frames name its file
        # (JupyterLab asks when a frame is selected): the shell's compiler left the code
        # that ran in linecache under that name.
        lines = linecache.getlines(name) if name.startswith(tmp_prefix()) else []
        if lines:
            return dap_response(message, {"content": "".join(lines)})
        return dap_response(message, message=f"source unavailable: {path}")
