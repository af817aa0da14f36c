"""The kernel: its shell, callers and transport, and how one request is answered.

Where each message goes (its lane: control, the main shell's queues, a subshell's, the
responder while a lane is blocked) is decided by :mod:`.router`; see docs/concurrency.md.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..debugger import install_debugger
from ..interrupt import (
    REDELIVER_AFTER,
    install_sigint_handler,
    interrupt_main_thread_surely,
    sigint_blocked,
)
from ..parent import (
    Request,
    current_request,
    install_thread_inheritance,
    request_context,
    set_request,
)
from ..settings import InterfaceSettings
from ..shell.comms import install_comms
from ..shell.fdcapture import start_fd_capture
from ..shell.history import batch_history_writes
from ..shell.interactive import AsyncShell
from ..shell.iostream import OutStream
from ..shell.profile import load_profile_config, run_startup_files
from ..shell.stdin import StdinBridge
from ..toolkit.caller import Caller
from ..transport.wire import Channel, Message, error_content, new_message
from .handlers import RequestHandlers
from .router import Router, cell_mode
from .subshells import Subshells
from .validation import invalid_content

if TYPE_CHECKING:
    from ..transport import Transport

__all__ = ["Kernel"]

# Seconds a stopping kernel waits for its main loop before it ends the process (see stop()):
# jupyter_client sends signals about a second after its shutdown_request.
STOP_DEADLINE = 0.6
_SEND_QUEUED_TIMEOUT = 0.005  # seconds a heavy handler waits for replies already made
# Seconds after start-up before the completer and traceback formatter are warmed (on the
# loop, for ~0.1 s): a new client's first requests come at once and should not wait.
_WARM_UP_DELAY = 0.5

log = logging.getLogger("async_kernel")

Handler = Callable[[Request], Awaitable[dict[str, Any] | None]]


class Kernel:
    """One kernel process: a shell, its callers, and a transport."""

    def __init__(
        self,
        settings: InterfaceSettings,
        make_transport: Callable[[], Transport],
        *,
        single_thread: bool = False,
        before_forced_exit: Callable[[], object] | None = None,
    ) -> None:
        self.settings = settings
        # Called before the process is ended because a cell held the main loop past the
        # stop (launch passes: end the processes the cells started).
        self._before_forced_exit = before_forced_exit
        # Single-thread mode (callback interface, Pyodide): control runs on the main loop
        # and the kernel starts no thread of its own.
        self.single_thread = single_thread
        self._make_transport = make_transport
        self.transport: Transport
        self.shell: AsyncShell
        self.main: Caller
        self.control: Caller
        self.stdin: StdinBridge
        self.handlers = RequestHandlers(self)
        self.router: Router
        self.subshells = Subshells(self)
        self.subshells.install()
        self._stopping = False
        self._stopped: anyio.Event | None = None
        self._served = threading.Event()  # serve() has returned

    # -- lifecycle (main thread) -------------------------------------------------------
    async def serve(self, *, ready: Callable[[Kernel], object] | None = None) -> None:
        """Run the kernel until a shutdown_request; must be awaited on the main thread."""
        self._stopped = anyio.Event()
        if self._stopping:  # stop() came first (the parent died during start-up)
            return
        async with Caller.open("shell") as main:
            self.main = main
            self.control = (
                main if self.single_thread else Caller.start_new(self.settings.backend, "control")
            )
            self.router = Router(self, main, self.control)
            self.transport = self._make_transport()
            with sigint_blocked():  # the threads IPython starts must leave SIGINT to us
                self._init_shell()
            self.router.start()
            self.transport.start(self.deliver)
            main.start_soon(self.transport.read_while_free, "shell", self._main_is_free)
            if ready is not None:
                ready(self)
            try:
                await self._stopped.wait()
            finally:
                if self.control is not main:
                    self.control.stop()
                self.router.stop()
                self._teardown_shell()
        self.transport.close()
        self._served.set()

    def _init_shell(self) -> None:
        install_thread_inheritance()
        self._real_stdout, self._real_stderr = sys.stdout, sys.stderr
        self._streams = (
            OutStream("stdout", self.transport, fallback=sys.__stdout__),  # type: ignore[arg-type]
            OutStream("stderr", self.transport, fallback=sys.__stderr__),  # type: ignore[arg-type]
        )
        sys.stdout, sys.stderr = self._streams
        self.stdin = StdinBridge(
            self.transport, self.flush_streams, self.router.wait_letting_comms_through
        )
        self.stdin.install()
        self.shell = AsyncShell.instance(
            config=load_profile_config(), kernel=self, publisher=self, host_gui=self._host_gui()
        )
        self.shell.display_banner = False  # type: ignore[attr-defined]
        self._fd_capture = start_fd_capture(self)  # None when off (see fdcapture.py)
        self.last_activity = [time.monotonic()]
        self.main.start_soon(batch_history_writes, self.shell.history_manager, self.last_activity)
        self.comm_manager = install_comms(self)
        run_startup_files(self.shell)
        if self.is_main_thread:
            install_sigint_handler(
                (AsyncShell.run_code.__code__, AsyncShell._await_interruptibly.__code__),
                lambda: self.main.schedule(self.shell.cancel_awaiting_cells),
                lambda redeliver: self.control.schedule(
                    self.control.call_later, REDELIVER_AFTER, redeliver
                ),
            )
        if not self.single_thread:
            self.shell.magics_manager.register_function(self.subshells.magic, "line", "subshell")
        install_debugger(self)
        if not self.single_thread:
            self.main.start_soon(self._warm_up_soon)

    def _main_is_free(self) -> bool:
        """No request in hand on the main loop (asked on the transport's thread).

        Free, the loop reads the next shell request itself; in hand, a cell may block it,
        and the transport reads on so subshells and '# thread' cells are not held up.
        """
        return self.router.main.handling == 0

    async def _warm_up_soon(self) -> None:
        # A plain task, not Caller.call_later: its Pending would import aiologic (~20 ms,
        # ~4 MiB) into every kernel at start-up, where only user code that needs it should.
        await anyio.sleep(_WARM_UP_DELAY)
        self.handlers.warm_up()
        # What start-up made (IPython, its modules, ~50,000 objects) lives as long as the
        # kernel: frozen, it is no longer scanned by every full collection, a pause of ~5 ms
        # that user code would otherwise pay each time.
        gc.collect()
        gc.freeze()

    def _host_gui(self) -> str:
        return "" if self.settings.loop == "plain" else self.settings.loop

    def _teardown_shell(self) -> None:
        # IPython's own atexit hook saves history and removes temporary files.
        if self._fd_capture is not None:
            self._fd_capture.stop()
        self.flush_streams()
        sys.stdout, sys.stderr = self._real_stdout, self._real_stderr

    def stop(self) -> None:
        """End serve() (thread-safe); queued output is still sent.

        A cell that holds the main loop is interrupted, so it ends as an interrupted cell
        does.  If the loop is still held STOP_DEADLINE seconds later (a C call that ignores
        signals, a cell that swallows KeyboardInterrupt), the process ends anyway: the
        processes its cells started first, then it, once the queued replies are sent.
        """
        if self._stopping:
            return
        self._stopping = True
        if self._stopped is None:  # serve() has not begun and will not wait
            return
        self.main.schedule(self._set_stopped)
        if self.single_thread:
            return
        if self.router.main.handling:
            self.control.start_soon(interrupt_main_thread_surely)
        threading.Thread(target=self._end_if_stuck, name="async-kernel-stop", daemon=True).start()

    def _end_if_stuck(self) -> None:
        if self._served.wait(STOP_DEADLINE):
            return
        log.warning("the main thread is still held %.1f s after the stop: ending", STOP_DEADLINE)
        if self._before_forced_exit is not None:
            self._before_forced_exit()
        self.transport.close()
        os._exit(0)

    def _set_stopped(self) -> None:
        assert self._stopped is not None
        self._stopped.set()

    # -- routing ----------------------------------------------------------------------------
    def deliver(self, channel: Channel, identities: list[bytes], msg: Message) -> None:
        """Hand a message to its lane (see :mod:`.router`); the transport calls this."""
        self.router.deliver(channel, identities, msg)

    def take_queued_executes(self) -> list[Request]:
        """Remove and return the execute_requests waiting behind the current one."""
        request = current_request()
        if request is None or cell_mode(request.msg) != "queue":
            return []  # a task or thread cell is in no queue: its failure aborts nothing
        lane = self.router.lane_of(request)
        return lane.take_queued() if lane is not None else []

    def abort(self, requests: list[Request]) -> None:
        """Answer each request with status 'aborted' (the cell before them failed)."""
        for request in requests:
            aborted = {"status": "aborted", "execution_count": self.shell.execution_count}
            self.answer_unrun(request, aborted)

    def answer_unrun(self, request: Request, content: dict[str, Any], *, busy: bool = True) -> None:
        """Answer a request that will never be handled, in its own context.

        ``busy=False`` when the request's handler has already published busy (and will
        publish idle).
        """
        with request_context(request):
            if busy:
                self.publish_status("busy")
            self.reply(request, content)
            if busy:
                self.publish_status("idle")

    # -- answering ----------------------------------------------------------------------
    async def handle(self, request: Request, *, flush: bool = True) -> None:
        """Answer one request in its own context: busy, reply, idle.

        ``flush=False`` for a request that prints nothing, answered on the transport's own
        thread: a flush may wait for another thread's flush, which may wait for room in the
        transport's queue, which only that thread makes.
        """
        set_request(request)
        msg_type = request.msg["msg_type"]
        self.publish_status("busy")
        try:
            handler: Handler | None = self.handlers.for_type(msg_type)
            if handler is None:
                log.warning("unknown message type %r on %s", msg_type, request.channel)
                unknown = f"unknown msg_type {msg_type!r}"
                self.reply(request, error_content("UnknownMessageType", unknown))
                return
            problem = invalid_content(msg_type, request.msg["content"])
            if problem is not None:
                log.warning("invalid %s on %s: %s", msg_type, request.channel, problem)
                self.reply(request, error_content("InvalidRequest", problem))
                return
            try:
                content = await handler(request)
            except Exception as err:
                log.exception("handling %s failed", msg_type)
                self.reply(request, error_content(type(err).__name__, str(err)))
                return
            if content is not None:
                self.reply(request, content)
        finally:
            if flush:
                self.flush_streams()
            self.publish_status("idle")

    def reply(
        self, request: Request, content: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> None:
        """Send ``request``'s reply; messages that are not requests (comm_*) get none."""
        if not request.msg["msg_type"].endswith("_request"):
            return
        msg_type = request.msg["msg_type"].removesuffix("_request") + "_reply"
        msg = new_message(msg_type, content, request.msg, metadata=metadata)
        self.transport.send(request.channel, msg, request.identities)  # type: ignore[arg-type]

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
    ) -> None:
        """Send on iopub with the current request as parent."""
        request = current_request()
        parent = request.msg if request is not None else None
        msg = new_message(msg_type, content, parent, metadata=metadata, buffers=buffers)
        self.transport.send("iopub", msg)

    def publish_status(self, state: str) -> None:
        self.publish("status", {"execution_state": state})

    def send_queued_first(self) -> None:
        """Let replies already made leave before work that holds the GIL for long.

        A completion keeps the GIL for tens of milliseconds; the transport's thread would get
        it back only at each switch interval, so a kernel_info answered just before it would
        reach the client several milliseconds late.
        """
        self.transport.wait_sent(_SEND_QUEUED_TIMEOUT)

    def flush_streams(self) -> None:
        """Send the kernel's own buffered stdout/stderr now.

        Ours, not whatever ``sys.stdout`` is: a cell may have replaced it, and our buffer
        must still go out before the output that follows it and before idle.
        """
        for stream in self._streams:
            stream.flush()

    def get_parent(self, channel: str | None = None) -> Message:
        """The current request's message (ipywidgets' Output widget asks for it)."""
        request = current_request()
        return request.msg if request is not None else {}

    @property
    def is_main_thread(self) -> bool:
        return threading.current_thread() is threading.main_thread()
