"""``debug_request`` on control: a few commands answered here, the rest forwarded to debugpy.

Answered here (the Jupyter extensions of JEP 47, and what needs the kernel's own state):
``debugInfo``, ``dumpCell``, ``configurationDone``, ``inspectVariables``,
``richInspectVariables`` (in a stopped frame through debugpy's ``evaluate``),
``copyToGlobals`` (through debugpy's ``setExpression``), ``modules`` and ``source``.
``inspectVariables`` and ``richInspectVariables`` show the namespace of the shell the
request names (its header's ``subshell_id``): a subshell's own namespace, or the main one
it shares.  Everything else (``setBreakpoints``, ``stackTrace``, ``scopes``, ``variables``,
``evaluate``, stepping, ``continue``, ``disconnect``, ...) goes to debugpy's adapter, which
debugs this process (``variables`` of a user namespace come back without IPython's names).

debugpy is started lazily by the first ``initialize``, on the main thread (where cells run),
after the kernel's own threads are marked so pydevd never traces or suspends them: the
control thread must keep answering while a breakpoint holds the main thread.  If a cell
blocks the main thread, ``initialize`` fails within a second and the start waits for the
cell.

A request whose handling raises gets a failed DAP response, never a kernel error content.

Everything here runs on the control thread, but debugpy's start (on the main loop) and the
DAP client's reading of events (a task of the control loop).  What it uses of the kernel is
given to it as :class:`.parts.DebuggerParts`.
"""

from __future__ import annotations

import ast
import contextlib
import json
import linecache
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio

from ..parent import set_request
from ..shell.namespaces import main_namespace
from ..shell.transform import PlainPythonTransformerManager
from ..toolkit.pending import Pending
from .cells import HASH_METHOD, HASH_SEED, TMP_SUFFIX, dump_cell, tmp_prefix
from .client import DapClient, DapMessage, dap_response

if TYPE_CHECKING:
    from ..parent import Request
    from .parts import DebuggerParts

__all__ = ["DebugHandlers"]

log = logging.getLogger("async_kernel.debugger")

BEGIN_TIMEOUT = 1.0  # seconds for the main thread to take up debugpy's start: it is idle
START_TIMEOUT = 30.0  # seconds for debugpy's start, once under way
BUSY = "the main thread is running a cell: the debugger starts once the running cell ends"
_UNTRACED_THREADS = ("async-kernel-io", "async-kernel-heartbeat", "async-kernel-fd-capture")
_REPR_LIMIT = 200
# The nodes debugpy groups a scope's variables under (pydevd's DAPGrouper), never a name.
_GROUPS = ("special variables", "protected variables", "function variables", "class variables")
_RESUMING = ("continue", "next", "stepIn", "stepOut", "stepBack", "reverseContinue", "goto")


_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def _fields(value: object) -> dict[str, Any]:
    """A DAP message's nested object; empty if it is missing or not an object."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def _describe(error: BaseException) -> str:
    """What went wrong, for a failed response: an exception group by its first leaf."""
    while isinstance(error, BaseExceptionGroup):
        error = cast("BaseExceptionGroup[BaseException]", error).exceptions[0]
    return str(error) or type(error).__name__


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
        self._listening: Pending[tuple[str, int]] | None = None  # debugpy's start, once
        self._began: Pending[None] = Pending()  # the main thread took that start up
        self._started = False  # debugInfo's isStarted: from initialize to disconnect
        self._breakpoints: dict[str, list[dict[str, Any]]] = {}
        self._stopped_threads: set[int] = set()
        # While stopped: the stack's cell frames (id -> whether it is the cell's top level,
        # whose locals are its globals) and the scopes that show a user namespace.
        self._cell_frames: dict[int, bool] = {}
        self._user_scopes: set[int] = set()
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
        """The DAP response to the request in ``request``: a failed one if answering raised
        (a kernel error content is no DAP response: JupyterLab shows "undefined")."""
        message: DapMessage = request.msg["content"]
        try:
            return await self._answer(request, message)
        except Exception as err:
            log.exception("debug request %r failed", message.get("command"))
            return dap_response(message, message=_describe(err))

    async def _answer(self, request: Request, message: DapMessage) -> DapMessage:
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
        if command == "variables":
            self._hide_internals(message, response)
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
        elif command == "stackTrace":
            frames: list[dict[str, Any]] = _fields(response.get("body")).get("stackFrames") or []
            for frame in frames:
                path = str(_fields(frame.get("source")).get("path", ""))
                if path.startswith(tmp_prefix()) and "id" in frame:
                    self._cell_frames[frame["id"]] = frame.get("name") == "<module>"
        elif command == "scopes":
            top_level = self._cell_frames.get(arguments.get("frameId", -1))
            if top_level is None:
                return
            scopes: list[dict[str, Any]] = _fields(response.get("body")).get("scopes") or []
            for scope in scopes:
                name = scope.get("name")
                if name == "Globals" or (top_level and name == "Locals"):
                    self._user_scopes.add(scope.get("variablesReference", 0))
        elif command in _RESUMING:
            self._forget_frames()
            if command == "continue" and _fields(response.get("body")).get(
                "allThreadsContinued", True
            ):
                self._stopped_threads.clear()
            else:
                self._stopped_threads.discard(arguments.get("threadId", -1))

    def _forget_frames(self) -> None:
        """Frame ids and variable references last only while the program is stopped."""
        self._cell_frames.clear()
        self._user_scopes.clear()

    def _hide_internals(self, request: DapMessage, response: DapMessage) -> None:
        """A user namespace's variables without IPython's (``In``, ``_i1``, ``exit``, ...),
        by the rule ``inspectVariables`` follows; a function's locals are shown whole.  The
        groups debugpy makes (functions, classes, ``__dunder__`` names) stay, filtered too."""
        reference = _fields(request.get("arguments")).get("variablesReference")
        body = _fields(response.get("body"))
        if reference not in self._user_scopes or not isinstance(body.get("variables"), list):
            return
        variables: list[dict[str, Any]] = body["variables"]
        for group in variables:
            if group.get("name") in _GROUPS:  # its variables are the namespace's too
                self._user_scopes.add(group.get("variablesReference", 0))
        body["variables"] = [v for v in variables if not self._hidden(str(v.get("name", "")))]

    def _on_event(self, event: DapMessage) -> None:
        body: dict[str, Any] = event.get("body") or {}
        name = event.get("event")
        if name == "stopped" and "threadId" in body:
            self._stopped_threads.add(body["threadId"])
        elif name == "continued":
            self._forget_frames()
            if body.get("allThreadsContinued", True):
                self._stopped_threads.clear()
            else:
                self._stopped_threads.discard(body.get("threadId", -1))
        self._parts.replies.publish("debug_event", event)

    # -- session ------------------------------------------------------------------------
    async def _initialize(self, message: DapMessage) -> DapMessage:
        if not self.client.connected:
            endpoint = await self._listen()
            if endpoint is None:
                return dap_response(message, message=BUSY)
            await self.client.connect(*endpoint)
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

    async def _listen(self) -> tuple[str, int] | None:
        """debugpy's endpoint; None if the main thread is busy (it listens once it is free).

        debugpy is started once, on the main thread: ``debugpy.listen`` installs pydevd's
        tracer on the thread that calls it, and reaches other threads' running frames only
        through native code injected into them (``set_trace_to_threads``, built for a few
        platforms).  The main thread runs the cells, so it must be the caller.  A cell that
        blocks holds that thread: rather than hold control (interrupt!) until it ends, we
        wait only for the main thread to take the job up, and say so when it does not.
        The job stays queued there, and its endpoint is kept for the next ``initialize``:
        ``debugpy.listen`` can be called only once in a process.
        """
        if self._listening is None:
            _skip_in_debugger(self._parts.control.thread)
            for thread in threading.enumerate():
                if thread.name in _UNTRACED_THREADS:
                    _skip_in_debugger(thread)
            began: Pending[None] = Pending()

            def listen() -> tuple[str, int]:
                began.set_result(None)
                import debugpy

                debugpy.configure(subProcess=False)  # pyright: ignore[reportUnknownMemberType]  # debugpy leaves its keyword arguments untyped
                host, port = debugpy.listen(("127.0.0.1", 0))
                return str(host), int(port)

            self._began = began
            self._listening = self._parts.main.call_soon(listen)
        listening = self._listening
        try:
            # Shielded: a wait that ends early leaves the job queued on the main thread.
            await self._began.wait(BEGIN_TIMEOUT, shield=True)
        except TimeoutError:
            return None
        try:
            return await listening.wait(START_TIMEOUT, shield=True)
        except Exception:
            if listening.done():  # it failed: the next initialize tries again
                self._listening = None
            raise

    async def _attach(self, message: DapMessage) -> DapMessage:
        """Attach, then finish debugpy's configuration handshake ourselves.

        debugpy answers ``attach`` only after ``configurationDone``, while JupyterLab sends
        ``configurationDone`` only after the attach response: we send our own and answer
        the frontend's locally.
        """
        listening = self._listening
        if not self.client.connected or listening is None or not listening.done():
            return dap_response(message, message="the debugger is not started: send initialize")
        if self.client.attached:
            # debugpy's initialized event came already: our configurationDone would race
            # the attach.  A second session (another panel) shares the first one.
            return dap_response(message, message="the debugger is already attached")
        host, port = listening.result()
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
        if box[0].get("success"):
            self.client.attached = True
        return box[0]

    async def _configuration_done(self, message: DapMessage) -> DapMessage:
        return dap_response(message)

    async def _reset(self) -> None:
        await self.client.close()
        self._started = False
        self._breakpoints.clear()
        self._stopped_threads.clear()
        self._forget_frames()
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

    def _hidden(self, name: str) -> bool:
        """Whether a user namespace's ``name`` is IPython's, not the user's: ``_``-prefixed
        (``_``, ``_i1``, ``_oh``, ...) or one the shell put there (``In``, ``exit``, ...)."""
        shell: Any = self._parts.shell  # IPython leaves user_ns_hidden untyped
        return name.startswith("_") or name in shell.user_ns_hidden

    def _user_variables(self) -> list[tuple[str, Any]]:
        return [
            (name, value)
            for name, value in list(self._namespace().items())
            if not self._hidden(name)
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
            # The value lives in a paused frame: only debugpy can read it.  The frame
            # formats it with IPython's display formatter, as JSON we decode (no eval).
            if not name.isidentifier():
                return dap_response(message, undefined)
            # Bytes (a PNG from _repr_png_) go as base64, as the kernel's messages send
            # them; anything else JSON cannot say, as its repr.
            formatted = (
                "__import__('json').dumps(__import__('IPython').get_ipython()"
                f".display_formatter.format({name}), default=lambda v: "
                "__import__('base64').b64encode(v).decode() if isinstance(v, bytes) "
                "else repr(v))"
            )
            evaluated = await self.client.request(
                {
                    "type": "request",
                    "seq": message.get("seq", 0),
                    "command": "evaluate",
                    # "clipboard": the whole value, where "repl" may cut a long one short
                    "arguments": {
                        "expression": formatted,
                        "frameId": frame_id,
                        "context": "clipboard",
                    },
                }
            )
            if not evaluated.get("success"):
                return dap_response(message, undefined)
            text = str(_fields(evaluated.get("body")).get("result", ""))
            try:  # the repr of the JSON text; or, for a name the frame lacks, of the error
                data, metadata = json.loads(ast.literal_eval(text))
            except (ValueError, SyntaxError, TypeError):
                return dap_response(message, undefined)
            return dap_response(message, {"data": data, "metadata": metadata})
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
