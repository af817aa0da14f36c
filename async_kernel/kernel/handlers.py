"""One handler per request type: each takes a request and returns its reply content.

A handler returns ``None`` for messages that have no reply (comm_open, comm_msg, comm_close).
Everything about *where* and *when* a handler runs lives in :mod:`.router`; how it is
answered (busy, reply, idle) in :mod:`.replies`.  A handler runs on the thread of the lane
that answers it: a lane's loop, control's, or the responder's (see docs/concurrency.md).
"""

from __future__ import annotations

import importlib
import linecache
import logging
import os
import platform
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from IPython.core.completer import provisionalcompleter, rectify_completions
from IPython.utils.tokenutil import token_at_cursor

from .._version import __version__
from ..debugger import debugpy_missing
from ..parent import running_cell
from ..shell.history import read_history
from ..transport.wire import PROTOCOL_VERSION, error_content
from .replies import Handler, Replies, Reply

log = logging.getLogger("async_kernel")
# The traceback the warm-up formats: one line, in linecache while it is formatted.
_WARM_UP_NAME = "<async-kernel warm-up>"
_WARM_UP_SOURCE = "raise ValueError('warm-up')\n"
# execute_reply's metadata 'engine': which kernel process answered (one id per process).
_ENGINE = uuid.uuid4().hex
EXIT_GRACE = 1.0  # seconds from an exit's reply to the kernel's stop

if TYPE_CHECKING:
    from comm.base_comm import CommManager

    from ..parent import Request
    from ..shell.interactive import AsyncShell
    from ..toolkit.caller import Caller
    from ..transport import Transport
    from .router import Router

__all__ = ["RequestHandlers"]

# Held while the shell's completer or inspector works (they are one object each, shared by
# every lane and the responder).
_introspecting = threading.Lock()

LANGUAGE_INFO: Reply = {
    "name": "python",
    "version": platform.python_version(),
    "mimetype": "text/x-python",
    "codemirror_mode": {"name": "ipython", "version": 3},
    "pygments_lexer": "ipython3",
    "nbconvert_exporter": "python",
    "file_extension": ".py",
}

HELP_LINKS = [
    {"text": "Python Reference", "url": "https://docs.python.org/3/"},
    {"text": "IPython Reference", "url": "https://ipython.readthedocs.io/en/stable/"},
    {"text": "anyio", "url": "https://anyio.readthedocs.io/"},
]


class _UntypedIPython(Protocol):
    """The shell's IPython methods the handlers call, which IPython leaves untyped."""

    banner: str

    def transform_cell(self, raw_cell: str) -> str: ...

    def user_expressions(self, expressions: dict[str, str]) -> dict[str, Any]: ...

    def object_inspect_mime(self, oname: str, detail_level: int = 0) -> dict[str, Any]: ...


class RequestHandlers:
    """The handlers of the kernel's own request types, with what they use.

    Each part is given by the kernel that composes them (:mod:`.core`): the shell, the
    router (queued executes a failed cell aborts), the comm manager, the transport (its
    connection info), the control loop, and the kernel's ``stop`` and ``interrupt``.
    """

    def __init__(
        self,
        replies: Replies,
        router: Router,
        shell: AsyncShell,
        *,
        comm_manager: CommManager,
        transport: Transport,
        control: Caller,
        stop: Callable[[], None],
        interrupt: Callable[[], None],
        last_activity: list[float],
    ) -> None:
        self._replies = replies
        self._router = router
        self._shell = shell
        self._ipython = cast("_UntypedIPython", shell)
        self._comm_manager = comm_manager
        self._transport = transport
        self._control = control
        self._stop = stop
        self._interrupt = interrupt
        # When the last cell started (history writes wait for a quiet moment).
        self._last_activity = last_activity
        self._process: Any = None  # psutil, imported on first use (Pyodide lacks it)

    def install(self) -> None:
        """Register every handler with :class:`.Replies`."""
        table: dict[str, Handler] = {
            "kernel_info_request": self.kernel_info_request,
            "complete_request": self.complete_request,
            "inspect_request": self.inspect_request,
            "history_request": self.history_request,
            "is_complete_request": self.is_complete_request,
            "comm_info_request": self.comm_info_request,
            "comm_open": self.comm_open,
            "comm_msg": self.comm_msg,
            "comm_close": self.comm_close,
            "connect_request": self.connect_request,
            "usage_request": self.usage_request,
            "shutdown_request": self.shutdown_request,
            "interrupt_request": self.interrupt_request,
        }
        for msg_type, handler in table.items():
            self._replies.register(msg_type, handler)
        self._replies.register(
            "execute_request", self.execute_request, error_fields=self._last_stored_count
        )

    def _last_stored_count(self) -> Reply:
        """An execute_reply's count when no cell was stored (an invalid request): the last
        stored cell's, as for a silent cell."""
        return {"execution_count": self._shell.execution_count - 1}

    def warm_up(self) -> None:
        """Import what a first completion and a first traceback need (jedi; stack_data and
        pygments), tens of milliseconds each the first time, that would otherwise land on a
        user's keystroke or interrupt; format one traceback.

        Run on the shell's own loop, between requests, not on a thread: a first import
        racing one on another thread can break it (pygments' self-replacing modules are
        therefore imported before serving: ``import_before_threads``).
        """
        try:
            # Imported, not run: a warm-up completion saved a first Tab ~30 ms of ~300 but
            # kept ~3 MiB in every kernel; the builtins inference that makes up the rest of
            # a first completion would keep ~25 MiB.
            importlib.import_module("jedi")
        except Exception:
            log.debug("warming the completer failed", exc_info=True)
        # After jedi: a first traceback maps every loaded module to its file once
        # (inspect.getmodule), so modules imported later cost the first error again.  And
        # with the shell's own formatter, whose colour scheme is what a cell's error uses.
        # Its one frame runs a line of its own: stack_data parses the source file of every
        # frame it formats and keeps it: this file's frame kept ~0.9 MiB (RSS) for good.
        source = (len(_WARM_UP_SOURCE), None, [_WARM_UP_SOURCE], _WARM_UP_NAME)
        linecache.cache[_WARM_UP_NAME] = source  # (no mtime: linecache keeps it)
        try:
            try:
                exec(compile(_WARM_UP_SOURCE, _WARM_UP_NAME, "exec"), {})
            except ValueError as err:
                tb = err.__traceback__  # this method's frame, then the warm-up line's
                self._shell.InteractiveTB.structured_traceback(ValueError, err, tb and tb.tb_next)
        except Exception:
            log.debug("warming the traceback formatter failed", exc_info=True)
        finally:
            del linecache.cache[_WARM_UP_NAME]

    # -- execution --------------------------------------------------------------------------
    async def execute_request(self, request: Request) -> None:
        # Counted as running until its reply is sent (on whatever lane or thread it runs):
        # output of code with no request of its own then goes to it (parent.py).
        with running_cell(request):
            await self._run_cell(request)

    async def _run_cell(self, request: Request) -> None:
        started = datetime.now(UTC)
        replies, shell = self._replies, self._shell
        content = request.msg["content"]
        code = str(content.get("code", ""))
        silent = bool(content.get("silent", False))
        # The spec: silent forces store_history off (its reply then carries the last stored
        # cell's number, as one with store_history false does).
        store_history = not silent and bool(content.get("store_history", True))
        stop_on_error = bool(content.get("stop_on_error", True))
        user_expressions: object = content.get("user_expressions")
        count = shell.execution_count  # this cell's number, before another cell moves it
        payloads = shell.payloads
        payloads.begin()
        if not silent:
            replies.publish("execute_input", {"code": code, "execution_count": count})
        shell.last_error = None
        cell_id = request.msg["metadata"].get("cellId")
        try:
            # Entered once for both: IPython's transform_cell and run_cell_async each enter
            # it, and the outermost entry alone swaps the builtins in and out.
            with shell.builtin_trap:
                try:
                    transformed: str | None = self._ipython.transform_cell(code)
                    preprocessing_error = None
                except Exception:
                    transformed, preprocessing_error = None, sys.exc_info()
                self._last_activity[0] = time.monotonic()
                result = await shell.run_cell_async(
                    code,
                    store_history=store_history,
                    silent=silent,
                    transformed_cell=transformed,
                    preprocessing_exc_tuple=preprocessing_error,
                    cell_id=cell_id,
                )
        finally:
            # IPython fires these from its sync run_cell only; extensions hook them
            # (matplotlib-inline sends the cell's figures on post_execute).
            shell.events.trigger("post_execute")
        if not silent:
            shell.events.trigger("post_run_cell", result)
        replies.flush_streams()
        reply: Reply = {"execution_count": count if store_history else count - 1}
        if result.success:
            reply["status"] = "ok"
            reply["user_expressions"] = (
                self._ipython.user_expressions(cast("dict[str, str]", user_expressions))
                if isinstance(user_expressions, dict)
                else {}
            )
        else:
            error: dict[str, Any] = shell.last_error or {
                "ename": type(result.error_in_exec or result.error_before_exec).__name__,
                "evalue": str(result.error_in_exec or result.error_before_exec),
                "traceback": [],
            }
            reply.update(status="error", user_expressions={}, **error)
        reply["payload"] = payloads.read_payload()
        payloads.clear_payload()
        shell.exit_now = False  # (IPython's own loop reads it; here the payload tells)
        # A failing silent cell aborts nothing (the spec; qtconsole's own calls are silent).
        self._send_cell_reply(request, reply, started, aborts=stop_on_error and not silent)

    def _send_cell_reply(
        self, request: Request, reply: Reply, started: datetime, *, aborts: bool
    ) -> None:
        """Send an execute_reply with ipykernel's metadata (JupyterLab's recordTiming keeps
        'started'); then abort what waits behind a failed cell (``aborts``), or end the
        kernel after an exit."""
        shell = self._shell
        metadata = {
            "started": started,
            "dependencies_met": True,
            "engine": _ENGINE,
            "status": reply["status"],
        }
        payload: list[dict[str, Any]] = reply["payload"]
        exits = any(p.get("source") == "ask_exit" and not p.get("keepkernel") for p in payload)
        if exits:  # no cell starts any more, on any lane: each is answered 'aborted'
            self._router.exiting = True
        # Take the queue before replying: a client may answer the reply with a new request
        # at once, and that one must run.
        failed = reply["status"] == "error" and aborts
        queued = self._router.take_queued_executes() if failed else []
        self._replies.reply(request, reply, metadata)
        for later in queued:  # answered 'aborted': the cell before them failed
            aborted = {"status": "aborted", "execution_count": shell.execution_count}
            self._replies.answer_unrun(later, aborted)
        if exits:
            # exit/quit: the kernel stops as on a shutdown_request, but EXIT_GRACE after
            # this reply.  The payload asks the client to close first: jupyter console
            # reads the reply only while the kernel process is alive, then shuts down the
            # kernel it started itself.  A client that ignores the payload (JupyterLab)
            # sees the kernel end and restarts it, as with ipykernel.
            self._control.call_later(EXIT_GRACE, self._stop)

    # -- introspection -------------------------------------------------------------------
    async def kernel_info_request(self, request: Request) -> Reply:
        # Advertised only when debugpy is there (not merely the handler that says it is not).
        handler_for = self._replies.handler_for
        debugger = handler_for("debug_request") not in (None, debugpy_missing)
        features = ["debugger"] if debugger else []
        if handler_for("create_subshell_request") is not None:
            features.append("kernel subshells")
        return {
            "status": "ok",
            "protocol_version": PROTOCOL_VERSION,
            "implementation": "async_kernel",
            "implementation_version": __version__,
            "language_info": LANGUAGE_INFO,
            "banner": self._ipython.banner,
            "help_links": HELP_LINKS,
            "debugger": debugger,
            "supported_features": features,
        }

    async def complete_request(self, request: Request) -> Reply:
        content = request.msg["content"]
        code, cursor_pos = _code_and_cursor(content)
        self._replies.send_queued_first()
        completer = self._shell.Completer
        # The completer keeps state while it works: one completion at a time, whichever
        # thread answers (a lane's loop, or the responder while that loop is blocked).
        with _introspecting, provisionalcompleter():
            found = list(rectify_completions(code, completer.completions(code, cursor_pos)))
        start = found[0].start if found else cursor_pos
        end = found[0].end if found else cursor_pos
        types = [
            {
                "start": c.start,
                "end": c.end,
                "text": c.text,
                "type": c.type,
                "signature": c.signature,
            }
            for c in found
        ]
        return {
            "status": "ok",
            "matches": [c.text for c in found],
            "cursor_start": start,
            "cursor_end": end,
            "metadata": {"_jupyter_types_experimental": types},
        }

    async def inspect_request(self, request: Request) -> Reply:
        content = request.msg["content"]
        code, cursor_pos = _code_and_cursor(content)
        detail = 1 if content.get("detail_level") == 1 else 0
        name = token_at_cursor(code, cursor_pos)
        self._replies.send_queued_first()
        reply: Reply = {"status": "ok", "found": False, "data": {}, "metadata": {}}
        try:
            with _introspecting:
                data = self._ipython.object_inspect_mime(name, detail_level=detail)
            # IPython adds its pygments HTML, whose fixed light colours clash with a dark
            # theme in the client's tooltip: plain text only, unless the user opted in.
            if not self._shell.enable_html_pager:
                data.pop("text/html", None)
            reply["data"] = data
            reply["found"] = True
        except KeyError:
            pass
        return reply

    async def history_request(self, request: Request) -> Reply:
        self._replies.send_queued_first()
        history = self._shell.history_manager
        if history is None or not history.enabled:
            return {"status": "ok", "history": []}
        try:
            entries = read_history(history, request.msg["content"])
        except ValueError as err:
            return error_content("ValueError", str(err))
        return {"status": "ok", "history": entries}

    async def is_complete_request(self, request: Request) -> Reply:
        code = str(request.msg["content"].get("code", ""))
        status, indent = self._shell.input_transformer_manager.check_complete(code)
        reply: Reply = {"status": status}
        if status == "incomplete":
            reply["indent"] = " " * (indent or 0)
        return reply

    # -- comms --------------------------------------------------------------------------
    async def comm_info_request(self, request: Request) -> Reply:
        target = request.msg["content"].get("target_name")
        comms = {
            comm_id: {"target_name": comm.target_name}
            for comm_id, comm in list(self._comm_manager.comms.items())
            if target is None or comm.target_name == target
        }
        return {"status": "ok", "comms": comms}

    async def comm_open(self, request: Request) -> None:
        _call_comm_handler(self._comm_manager.comm_open, request)

    async def comm_msg(self, request: Request) -> None:
        _call_comm_handler(self._comm_manager.comm_msg, request)

    async def comm_close(self, request: Request) -> None:
        _call_comm_handler(self._comm_manager.comm_close, request)

    # -- process --------------------------------------------------------------------------
    async def connect_request(self, request: Request) -> Reply:
        info = self._transport.info
        ports = (
            {f"{c}_port": info.port(c) for c in ("shell", "iopub", "stdin", "control", "hb")}
            if info
            else {}
        )
        return {"status": "ok", **ports}

    async def usage_request(self, request: Request) -> Reply:
        import psutil

        if self._process is None:
            self._process = psutil.Process()
        with self._process.oneshot():
            memory = self._process.memory_info()
            cpu = self._process.cpu_percent()
        return {
            "status": "ok",
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "kernel_cpu": cpu,
            "kernel_memory": memory.rss,
            "host_cpu_percent": psutil.cpu_percent(),
            "cpu_count": psutil.cpu_count(logical=True),
            "host_virtual_memory": dict(psutil.virtual_memory()._asdict()),
        }

    async def shutdown_request(self, request: Request) -> Reply:
        restart = bool(request.msg["content"].get("restart", False))
        reply: Reply = {"status": "ok", "restart": restart}
        # Also on iopub, where every client sees it (JupyterLab drops its pending-input
        # guard on it when another client shuts the kernel down or restarts it).
        self._replies.publish("shutdown_reply", reply)
        # Stop only after this handler's reply and idle status are queued for sending.
        self._control.schedule(self._stop)
        return reply

    async def interrupt_request(self, request: Request) -> Reply:
        self._interrupt()
        return {"status": "ok"}


def _code_and_cursor(content: dict[str, Any]) -> tuple[str, int]:
    """The code and a cursor inside it (a missing or out-of-range cursor means the end)."""
    code = str(content.get("code", ""))
    cursor_pos = content.get("cursor_pos")
    if not isinstance(cursor_pos, int) or not 0 <= cursor_pos <= len(code):
        cursor_pos = len(code)
    return code, cursor_pos


def _call_comm_handler(handler: Callable[..., object], request: Request) -> None:
    """Call one of the comm manager's handlers with ``request``'s message.  They also take
    a ZMQ stream and the identities, which they never use: None for both."""
    handler(None, None, request.msg)
