"""The IPython shell, with its output wired to iopub and its awaits made interruptible.

Cells run through ``run_cell_async`` on the kernel's own event loop, so top-level ``await``
uses the kernel's backend (asyncio or trio) directly: no nested loop, no runner thread.
"""

from __future__ import annotations

import bdb
import importlib
import inspect
import re
import sys
import threading
from collections.abc import Coroutine
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
from IPython.core.autocall import ExitAutocall
from IPython.core.completer import IPCompleter, cursor_to_position
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.error import UsageError
from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.interactiveshell import InteractiveShell
from traitlets import Any as AnyTrait
from traitlets import Bool, Instance, default

from ..cells import Cells, RunningCell
from ..interrupt import users_frames
from ..parent import current_request
from ..toolkit.caller import Caller
from .dask_cells import CellFutures, cancel_started_futures, interrupted
from .namespaces import active_namespace
from .payloads import RequestPayloads
from .transform import PlainPythonTransformerManager

if TYPE_CHECKING:
    from types import CodeType, ModuleType

    from IPython.core.interactiveshell import ExecutionResult
    from traitlets.config import Configurable

__all__ = ["AsyncShell", "Publisher", "import_before_threads"]


# Modules that replace themselves in sys.modules while first imported (pygments' lazy
# lexer and formatter registries).  A second thread importing one of them while the first
# import runs gets the module being replaced, without its lazy names: an inspection on the
# responder ("cannot import name 'PythonLexer' from 'pygments.lexers'") raced a traceback
# formatted on the main thread that way.
SELF_REPLACING_MODULES = ("pygments.lexers", "pygments.formatters")


def import_before_threads() -> None:
    """Import the SELF_REPLACING_MODULES that the shell's inspection and traceback
    formatting use, on this thread, before any request can run on another (~3 ms)."""
    for name in SELF_REPLACING_MODULES:
        importlib.import_module(name)


class Publisher(Protocol):
    """What the shell needs from the kernel: a way to put a message on iopub."""

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
    ) -> None: ...

    def flush_streams(self) -> None: ...


def _shell_of(part: DisplayHook | DisplayPublisher) -> AsyncShell:
    """The shell that made ``part``, always an AsyncShell (IPython names the ``shell``
    trait's class by a string, so the type checker cannot know it)."""
    untyped: Any = part
    return untyped.shell


class KernelDisplayHook(DisplayHook):
    """Sends a cell's result as ``execute_result``."""

    def start_displayhook(self) -> None:
        self._data: dict[str, Any] = {}
        self._metadata: dict[str, Any] = {}

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(
        self, format_dict: dict[str, Any], md_dict: dict[str, Any] | None = None
    ) -> None:
        self._data = format_dict
        self._metadata = md_dict or {}

    def finish_displayhook(self) -> None:
        shell = _shell_of(self)
        publisher = shell.publisher
        if publisher is not None and self._data:
            publisher.flush_streams()
            publisher.publish(
                "execute_result",
                {
                    "data": self._data,
                    "metadata": self._metadata,
                    "execution_count": shell.execution_count - 1,  # IPython's prompt_count
                },
            )
        self._data = {}
        self._metadata = {}


class KernelDisplayPublisher(DisplayPublisher):
    """Sends ``display_data``, ``update_display_data`` and ``clear_output``."""

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: object = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        shell = _shell_of(self)
        if shell.publisher is None:
            return
        shell.publisher.flush_streams()
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        shell.publisher.publish("update_display_data" if update else "display_data", content)

    def clear_output(self, wait: bool = False) -> None:
        shell = _shell_of(self)
        if shell.publisher is None:
            return
        shell.publisher.flush_streams()
        shell.publisher.publish("clear_output", {"wait": wait})


GUI_ALIASES = {"qt5": "qt", "qt6": "qt", "qt": "qt", "tk": "tk", "tkagg": "tk", "qtagg": "qt"}


class NamespaceAwareCompleter(IPCompleter):
    """IPython's completer, looking names up in the namespace of the task that asks.

    IPython hands its completer the main namespace once; a subshell with its own namespace
    must complete its own names.  Assignments made from a subshell's task (IPython's
    ``set_completer_frame``) are ignored, so they cannot replace the main namespace.
    """

    _main_namespace: dict[str, Any]
    _main_global_namespace: dict[str, Any]

    def _asker_namespace(self, which: int, main: dict[str, Any]) -> dict[str, Any] | None:
        """The namespace (0: local, 1: global) for the task asking: jedi's view during a
        completion, else the subshell's own, else the main one."""
        view = _jedi_namespaces.get()
        if view is not None:
            return view[which]
        own = active_namespace()
        return main if own is None else own

    @property
    def namespace(self) -> dict[str, Any]:
        namespace = self._asker_namespace(0, self._main_namespace)
        assert namespace is not None  # only the global one may be None (in jedi's view)
        return namespace

    @namespace.setter
    def namespace(self, value: dict[str, Any]) -> None:
        if active_namespace() is None:
            self._main_namespace = value

    @property
    def global_namespace(self) -> dict[str, Any] | None:
        return self._asker_namespace(1, self._main_global_namespace)

    @global_namespace.setter
    def global_namespace(self, value: dict[str, Any]) -> None:
        if active_namespace() is None:
            self._main_global_namespace = value

    def _jedi_matches(self, cursor_column: int, cursor_line: int, text: str) -> Any:
        """Jedi's matches, from namespaces without what cannot matter to ``text``.

        Jedi makes an object for every name it is given, on every completion.  A kernel's
        namespace grows by a history variable per cell (``_i<N>``, ``_<N>``): after a
        thousand cells a completion took ~40 ms instead of ~15.  Jedi can only use a name
        that appears in the text or completes the word at the cursor, so other history
        names are left out; and the global namespace, the same dict in a kernel, is not
        given twice.
        """
        local = self.namespace
        global_ = self.global_namespace
        typed = text[: cursor_to_position(text, cursor_line, cursor_column)]
        view = (
            _names_for(local, typed),
            None if global_ is None or global_ is local else _names_for(global_, typed),
        )
        token = _jedi_namespaces.set(view)
        try:
            ipython: Any = super()  # IPython leaves _jedi_matches untyped
            return ipython._jedi_matches(cursor_column, cursor_line, text)
        finally:
            _jedi_namespaces.reset(token)


# The namespaces a completion in progress hands to jedi (see _jedi_matches).
_jedi_namespaces: ContextVar[tuple[dict[str, Any], dict[str, Any] | None] | None] = ContextVar(
    "_jedi_namespaces", default=None
)
_HISTORY_NAME = re.compile(r"_i?\d+")  # IPython's _i<N> (inputs) and _<N> (outputs)
_WORD_AT_END = re.compile(r"\w*\Z")


def _names_for(namespace: dict[str, Any], typed: str) -> dict[str, Any]:
    """``namespace`` without the history names that neither appear in ``typed`` nor
    complete the word being typed."""
    word = _WORD_AT_END.search(typed)
    prefix = word.group() if word is not None and word.group().startswith("_") else None
    return {
        name: value
        for name, value in namespace.items()
        if _HISTORY_NAME.fullmatch(name) is None
        or name in typed
        or (prefix is not None and name.startswith(prefix))
    }


class KernelExiter(ExitAutocall):
    """``exit`` and ``quit`` in a cell, bare or called: ``exit(keep_kernel=True)`` closes
    the client's view of the kernel but keeps the kernel running (IPython's own takes no
    argument)."""

    _ip: AsyncShell

    def __call__(self, keep_kernel: bool | None = None) -> None:
        shell = self._ip
        kept = shell.keepkernel_on_exit
        if keep_kernel is not None:  # for this call only (else the shell's own setting)
            shell.keepkernel_on_exit = keep_kernel
        try:
            shell.ask_exit()
        finally:
            shell.keepkernel_on_exit = kept


class AsyncShell(InteractiveShell):
    """An InteractiveShell whose output goes to iopub and whose cells can be interrupted."""

    displayhook_class = KernelDisplayHook
    display_pub_class = KernelDisplayPublisher
    publisher = AnyTrait(None, allow_none=True)
    kernel = AnyTrait(None, allow_none=True, help="The kernel that owns this shell.")
    host_gui = Instance(str, ("",), help="The GUI the host loop runs ('' for none).")
    # Attributes IPython's shell sets without a type, as IPython uses them.
    configurables: list[Configurable]
    _user_ns: dict[str, Any]
    user_module: ModuleType
    custom_exceptions: tuple[type[BaseException], ...]

    cancel_dask_on_interrupt = Bool(
        True, config=True, help="Cancel the unfinished Dask futures an interrupted cell started."
    )

    @default("input_transformer_manager")
    def _default_input_transformer_manager(self) -> TransformerManager:
        return PlainPythonTransformerManager()

    def init_payload(self) -> None:
        """Payloads per request, not per shell: concurrent cells must not share them."""
        self.payload_manager = RequestPayloads(parent=self)
        self.configurables.append(self.payload_manager)

    def _ipython(self) -> Any:
        """IPython's own shell methods for this shell, as ``super()`` finds them.

        IPython leaves them untyped: what this class calls of them (``__init__``,
        ``set_hook``, ``excepthook``, ``enable_matplotlib``, ``_get_exc_info``,
        ``run_cell_async``) goes through this one view.
        """
        return super()

    def __init__(self, **kwargs: Any) -> None:
        self._ipython().__init__(**kwargs)
        self.autoawait = True
        self.last_error = None
        self.cells = Cells()  # the cells running now, and the interrupts owed to them
        self._ipython().set_hook("show_in_pager", self._page_payload, 99)
        from .magics import register as register_magics  # %callers, %%thread, %%trio, ...

        register_magics(self)
        self.magics_manager.register_function(self._autoawait_magic, "line", "autoawait")

    # -- namespaces: a subshell's task sees its own (see namespaces.py) ---------------------
    def init_completer(self) -> None:
        super().init_completer()
        completer = self.Completer
        state = vars(completer)
        main, main_global = state.pop("namespace"), state.pop("global_namespace")
        completer.__class__ = NamespaceAwareCompleter
        completer.namespace, completer.global_namespace = main, main_global

    @property
    def user_ns(self) -> dict[str, Any]:
        namespace = active_namespace()
        return self._user_ns if namespace is None else namespace

    @user_ns.setter
    def user_ns(self, ns: dict[str, Any]) -> None:
        self._user_ns = ns

    @property
    def user_global_ns(self) -> dict[str, Any]:
        namespace = active_namespace()
        return self.user_module.__dict__ if namespace is None else namespace

    # The error of the cell running in this task (cells of subshells run at the same time).
    _last_error: ContextVar[dict[str, Any] | None] = ContextVar(
        "async_kernel_last_error", default=None
    )

    @property
    def last_error(self) -> dict[str, Any] | None:
        return self._last_error.get()

    @last_error.setter
    def last_error(self, error: dict[str, Any] | None) -> None:
        self._last_error.set(error)

    # -- output ----------------------------------------------------------------------------
    def init_io(self) -> None:
        """Keep the kernel's sys.stdout/sys.stderr; IPython would otherwise replace them."""

    def _showtraceback(
        self, etype: type[BaseException], evalue: BaseException, stb: list[str]
    ) -> None:
        if self.publisher is not None:
            self.publisher.flush_streams()
        content = {
            "traceback": stb,
            "ename": getattr(etype, "__name__", str(etype)),
            "evalue": str(evalue),
        }
        self.last_error = content
        if self.publisher is not None:
            self.publisher.publish("error", content)

    @staticmethod
    def _page_payload(
        shell: AsyncShell, data: Any, start: int = 0, screen_lines: int = 0, pager_cmd: Any = None
    ) -> None:
        """IPython's pager hook: the page travels as a reply payload, as Jupyter expects."""
        mime = cast("dict[str, Any]", data) if isinstance(data, dict) else {"text/plain": str(data)}
        shell.payloads.write_payload({"source": "page", "data": mime, "start": start})

    def set_next_input(self, s: str, replace: bool = False) -> None:
        self.payloads.write_payload({"source": "set_next_input", "text": s, "replace": replace})

    @default("exiter")
    def _default_exiter(self) -> ExitAutocall:
        return KernelExiter(self)

    def ask_exit(self) -> None:
        """``exit``, ``quit``: the reply's payload asks the client to close, and unless the
        kernel is kept the kernel ends once the cell is answered (see handlers.py)."""
        self.exit_now = not self.keepkernel_on_exit
        self.payloads.write_payload({"source": "ask_exit", "keepkernel": self.keepkernel_on_exit})

    keepkernel_on_exit = False

    @property
    def payloads(self) -> RequestPayloads:
        """This shell's per-request payloads (IPython types the manager as optional)."""
        assert isinstance(self.payload_manager, RequestPayloads)
        return self.payload_manager

    # -- top-level await -------------------------------------------------------------------
    def _autoawait_magic(self, line: str) -> None:
        """``%autoawait [on|off]``: whether cells may use top-level ``await``.

        Cells await on the kernel's own event loop, so the library is the kernel's backend
        (``--interface.backend``), fixed at start-up: there is no runner to choose, and
        IPython's ``%autoawait trio`` would be accepted and then ignored.  Naming the
        kernel's backend is the same as ``on``; another library is an error.  Trio or
        asyncio code in a cell of the other backend: the ``%%trio`` / ``%%asyncio`` cell
        magics.
        """
        backend = self.kernel.settings.backend if self.kernel is not None else "asyncio"
        choice = line.strip()
        if not choice:
            state = "on" if self.autoawait else "off"
            print(f"IPython autoawait is `{state}`, and set to use `{backend}`")
        elif choice.lower() in ("true", "on", backend):
            self.autoawait = True
        elif choice.lower() in ("false", "off"):
            self.autoawait = False
        else:
            raise UsageError(
                f"cells run on the kernel's backend ({backend}), not {choice!r}: use the "
                "%%trio or %%asyncio cell magic for one cell, or start the kernel with "
                "--interface.backend=asyncio|trio"
            )

    # -- GUI -------------------------------------------------------------------------------
    def enable_matplotlib(self, gui: str | None = None) -> tuple[Any, Any]:
        """Check the GUI first: IPython would switch matplotlib and remember the GUI before
        asking ``enable_gui``, leaving a refused GUI stuck for every later ``%matplotlib``."""
        from IPython.core import pylabtools

        tools: Any = pylabtools  # IPython leaves find_gui_and_backend untyped
        self.enable_gui(tools.find_gui_and_backend(gui)[0])
        return self._ipython().enable_matplotlib(gui)

    def enable_gui(self, gui: str | None = None) -> None:
        """GUI event loops are chosen when the kernel starts, never switched inside it."""
        if not gui or gui in ("inline", "widget", "ipympl"):
            return
        wanted = GUI_ALIASES.get(gui.lower(), gui.lower())
        if wanted == self.host_gui:
            return
        if wanted in ("tk", "qt"):
            raise UsageError(
                f"'{gui}' needs a kernel whose host loop is {wanted}, but this kernel's is "
                f"{self.host_gui or 'plain'}. Install and pick the matching kernel spec: "
                f"async-kernel -a async-{wanted} --interface.loop={wanted}"
            )
        raise UsageError(f"GUI '{gui}' is not supported by async-kernel (supported: tk, qt)")

    # -- running code ----------------------------------------------------------------------
    def _get_exc_info(self, exc_tuple: Any = None) -> tuple[Any, Any, Any]:
        """The exception without our own frames on top: users see their code first.

        IPython hides its own ``run_code`` by module name; ours lives in async_kernel.
        """
        etype, value, tb = self._ipython()._get_exc_info(exc_tuple)
        ours = self.cell_codes()
        while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code in ours:
            tb = tb.tb_next
        return etype, value, tb

    async def run_cell_async(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        """IPython's, as one running cell (see cells.py); then an interrupted cell's
        unfinished Dask futures are cancelled."""
        started = CellFutures()  # see dask_cells.py
        request = current_request()
        caller = Caller.of_thread(threading.get_ident())
        frame = inspect.currentframe()
        assert frame is not None  # (CPython: always)
        with self.cells.run(
            frame,
            None if request is None else request.seq,
            None if caller is None else caller.schedule,
        ):
            result: ExecutionResult = await self._ipython().run_cell_async(*args, **kwargs)
        if self.cancel_dask_on_interrupt and interrupted(result.error_in_exec):
            await cancel_started_futures(started)
        return result

    async def run_code(
        self, code_obj: CodeType, result: ExecutionResult | None = None, *, async_: bool = False
    ) -> bool:
        """Run one compiled block; returns True if it raised (shown as a traceback).

        An interrupt is never raised in this method's own lines (see interrupt.py): before
        its ``try`` it would escape into IPython's own handling.
        """
        __tracebackhide__ = "__ipython_bottom__"
        cell = Cells.current()
        saved_hook = sys.excepthook
        try:
            try:
                sys.excepthook = self._ipython().excepthook
                self.sys_excepthook = saved_hook
                if cell is not None and cell.take():  # an interrupt came before this block started
                    raise KeyboardInterrupt
                if async_:
                    coro = eval(code_obj, self.user_global_ns, self.user_ns)
                    await self._await_interruptibly(coro, cell)
                else:
                    exec(code_obj, self.user_global_ns, self.user_ns)
            finally:
                sys.excepthook = saved_hook
        except BaseException as err:
            if cell is not None:
                cell.ending = True  # its error is shown next: no later interrupt is for it
            self._show_error(err, result)
            return True
        return False

    def _show_error(self, err: BaseException, result: ExecutionResult | None) -> None:
        """Show the error a block raised (called while it is being handled), as IPython's
        own ``run_code`` does."""
        if result is not None:
            result.error_in_exec = err
        if isinstance(err, SystemExit):
            self.showtraceback(exception_only=True)
        elif isinstance(err, bdb.BdbQuit):
            return
        elif isinstance(err, self.custom_exceptions):
            self.CustomTB(*sys.exc_info())
        else:
            if isinstance(err, KeyboardInterrupt):
                # Where an interrupt lands in kernel code is chance; the traceback keeps
                # the user's frames and the libraries they called (see users_frames).  Set
                # on the exception, as IPython formats it twice (shown, and for history).
                err.with_traceback(users_frames(err.__traceback__))
            self.showtraceback(running_compiled_code=True)

    async def _await_interruptibly(
        self, coro: Coroutine[Any, Any, Any], cell: RunningCell | None
    ) -> None:
        """Await a cell; an interrupt cancels it and surfaces as KeyboardInterrupt."""
        __tracebackhide__ = True
        with anyio.CancelScope() as scope:
            if cell is not None:
                cell.scopes.add(scope)
            try:
                await coro
            finally:
                if cell is not None:
                    cell.scopes.discard(scope)
        # Delivered here: the cancel surfaced, or the interrupt came while the await could
        # not be cancelled (shielded, or woken just before its cancel) and is still owed.
        owed = cell is not None and cell.take()
        if scope.cancelled_caught or owed:
            raise KeyboardInterrupt("the awaiting cell was interrupted")

    @staticmethod
    def cell_codes() -> tuple[CodeType, CodeType]:
        """The code of the shell's own frames under a cell's code (``run_code`` and the await
        in it): a SIGINT that finds one on the stack is the cell's; tracebacks start below."""
        return (AsyncShell.run_code.__code__, AsyncShell._await_interruptibly.__code__)

    def interrupt_cell_in_hand(self, seq: int) -> None:
        """An interrupt came while a lane's cell in hand (arrival number ``seq``) had not
        started (any thread): it starts owed the interrupt, and its code raises
        KeyboardInterrupt as soon as it starts.  A cell that has ended meanwhile
        is never started again, so the mark then does nothing."""
        if not self.cells.started(seq):
            self.cells.owe_seq(seq)
