"""The kernel: makes its parts and wires them together; its start and stop.

The parts do not know the kernel: each is given what it uses.  :class:`.Replies` answers a
request (busy, its handler's reply, idle) and sends; :class:`.Router` decides each message's
lane (control, the main shell's queues, a subshell's, the responder while a lane is blocked;
see docs/concurrency.md); :class:`.RequestHandlers`, :class:`.Subshells` and the debugger
register their handlers with the replies.

:meth:`Kernel.serve` runs on the main thread, and so does everything it makes but the
transport's thread, the control loop's (a thread of its own but in single-thread mode), the
subshells' and the responder's.  :meth:`Kernel.stop` may be called from any thread.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio

from ..debugger import install_debugger
from ..debugger.parts import DebuggerParts
from ..interrupt import (
    install_sigint_handler,
    interrupt_main_thread_surely,
    sigint_blocked,
)
from ..parent import current_request, install_thread_inheritance
from ..settings import InterfaceSettings
from ..shell.comms import install_comms
from ..shell.fdcapture import start_fd_capture
from ..shell.history import batch_history_writes
from ..shell.interactive import AsyncShell, import_before_threads
from ..shell.iostream import OutStream
from ..shell.profile import load_profile_config, run_startup_files
from ..toolkit.caller import Caller
from .handlers import RequestHandlers
from .replies import Replies
from .router import Router
from .subshells import Subshells

if TYPE_CHECKING:
    from comm.base_comm import CommManager

    from ..cells import RunningCell
    from ..shell.stdin import StdinBridge
    from ..transport import Transport
    from ..transport.wire import Message

__all__ = ["Kernel"]

# Seconds a stopping kernel waits for its main loop before it ends the process (see stop()):
# jupyter_client sends signals about a second after its shutdown_request.
STOP_DEADLINE = 0.6
CLOSE_DEADLINE = 10.0  # seconds serve()'s close of the transport may take, once under way
# Seconds after start-up before the completer and traceback formatter are warmed (on the
# loop, for ~0.1 s): a new client's first requests come at once and should not wait.
_WARM_UP_DELAY = 0.5

log = logging.getLogger("async_kernel")


def _schedule_from_handler(caller: Caller, fn: Callable[..., object], *args: object) -> None:
    """``caller.schedule(fn, *args)`` from the SIGINT handler: nothing once the caller's loop
    has ended (the kernel is stopping; a late signal came), rather than an exception raised
    into whatever the main thread was running (seen: the transport's close at exit)."""
    with contextlib.suppress(RuntimeError):  # (trio's RunFinishedError is one)
        caller.schedule(fn, *args)


class _MainThreadCells:
    """The SIGINT handler's view of the main thread's cells (``interrupt.MainThreadCells``);
    called from the handler, on the main thread."""

    def __init__(
        self, shell: AsyncShell, main: Caller, owe: Callable[[int | None], object]
    ) -> None:
        self._cells = shell.cells
        self._main = main
        self._owe = owe  # Kernel._owe_interrupt
        self._thread = threading.get_ident()

    def signalled(self, fresh: bool) -> None:
        if fresh:
            self._owe(self._thread)
        if self._cells.owed_on(self._thread):  # those that await (``# task`` cells too)
            _schedule_from_handler(self._main, self._cells.cancel_owed_awaits)

    def owed(self) -> bool:
        return self._cells.owed_on(self._thread)


class Kernel:
    """One kernel process: a shell, its callers, and a transport."""

    def __init__(
        self,
        settings: InterfaceSettings,
        make_transport: Callable[[], Transport],
        *,
        single_thread: bool = False,
        before_forced_exit: Callable[[], object] | None = None,
        ipython_config: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        # ``--Class.trait=value`` from the command line, over the profile's config files.
        self._ipython_config = tuple(ipython_config)
        # Called before the process is ended because a cell held the main loop past the
        # stop (launch passes: end the processes the cells started).
        self._before_forced_exit = before_forced_exit
        # Single-thread mode (callback interface, Pyodide): control runs on the main loop
        # and the kernel starts no thread of its own.
        self.single_thread = single_thread
        self._make_transport = make_transport
        # Made by serve(), in this order.
        self.main: Caller
        self.control: Caller
        self.transport: Transport
        self.replies: Replies
        self.shell: AsyncShell
        self.router: Router
        self.stdin: StdinBridge
        self.comm_manager: CommManager
        self.handlers: RequestHandlers
        self.subshells: Subshells | None = None  # none in single-thread mode
        self._stopping = False
        self._stopped: anyio.Event | None = None
        self._served = threading.Event()  # serve() has returned
        # serve()'s loop has ended and it closes the transport: nothing holds the main
        # thread any more, so the stop's watchdog leaves the end to it (see _end_if_stuck).
        self._closing = threading.Event()

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
            self.transport = self._make_transport()
            with sigint_blocked():  # the threads IPython starts must leave SIGINT to us
                self._init_shell()
            self.router.start()
            self.transport.start(self.router.deliver)
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
        self._closing.set()
        self.transport.close()
        self._served.set()

    def _init_shell(self) -> None:
        install_thread_inheritance()
        import_before_threads()  # before the responder, a subshell or control can race it
        self._real_stdout, self._real_stderr = sys.stdout, sys.stderr
        self._streams = (
            OutStream("stdout", self.transport, fallback=sys.__stdout__),
            OutStream("stderr", self.transport, fallback=sys.__stderr__),
        )
        sys.stdout, sys.stderr = self._streams
        self.replies = replies = Replies(self.transport, self._streams)
        self.shell = AsyncShell.instance(
            config=load_profile_config(self._ipython_config),
            kernel=self,
            publisher=replies,
            host_gui=self._host_gui(),
        )
        self.shell.display_banner = False  # pyright: ignore[reportAttributeAccessIssue]  # a terminal shell's option, undeclared here
        self.router = Router(
            self.main,
            self.control,
            replies,
            self.shell,
            self.transport,
            backend=self.settings.backend,
            single_thread=self.single_thread,
        )
        self.stdin = self.router.stdin
        self.stdin.install()
        self._fd_capture = start_fd_capture(  # None when off (see fdcapture.py)
            self._streams,
            self.shell.events,
            enabled=not self.single_thread and self.settings.capture_fd_output,
        )
        last_activity = [time.monotonic()]
        self.main.start_soon(batch_history_writes, self.shell.history_manager, last_activity)
        self.comm_manager = install_comms(replies)
        self.handlers = RequestHandlers(
            replies,
            self.router,
            self.shell,
            comm_manager=self.comm_manager,
            transport=self.transport,
            control=self.control,
            stop=self.stop,
            interrupt=self.interrupt,
            last_activity=last_activity,
        )
        self.handlers.install()
        run_startup_files(self.shell)
        if self.is_main_thread:
            install_sigint_handler(
                AsyncShell.cell_codes(),
                _MainThreadCells(self.shell, self.main, self._owe_interrupt),
                lambda delay, redeliver: _schedule_from_handler(
                    self.control, self.control.call_later, delay, redeliver
                ),
            )
        if not self.single_thread:  # subshells and the debugger need threads of their own
            self.subshells = Subshells(self.router, self.shell)
            self.subshells.install(replies)
            install_debugger(
                DebuggerParts(
                    replies, self.shell, self.main, self.control, self.router.namespace_of
                )
            )
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
        self.replies.flush_streams()
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
        router: Router | None = getattr(self, "router", None)  # None: serve() is starting
        if router is not None and router.main.handling:
            self._owe_interrupt()
            self.control.start_soon(interrupt_main_thread_surely)
        threading.Thread(target=self._end_if_stuck, name="async-kernel-stop", daemon=True).start()

    def interrupt(self) -> None:
        """Interrupt every cell running now (an interrupt_request, on the control loop):
        each is owed the interrupt until it is delivered (see cells.py)."""
        owed = self._owe_interrupt()
        if self.single_thread:
            # No signals between threads here: cancel what awaits (blocking code cannot be
            # interrupted in this mode, as in Pyodide).
            self.shell.cells.cancel_owed_awaits()
            return
        self.control.start_soon(interrupt_main_thread_surely)
        if self.subshells is not None:
            self.subshells.interrupt_all(owed)

    def _owe_interrupt(self, thread: int | None = None) -> list[RunningCell]:
        """An interrupt came: every cell running now (on ``thread``, if given) is owed it,
        and so is each main-shell cell in hand that has not started (any thread; the SIGINT
        handler too); the cells running now."""
        for seq in self.router.main.cells_in_hand():
            self.shell.interrupt_cell_in_hand(seq)
        return self.shell.cells.owe(thread)

    def _end_if_stuck(self) -> None:
        """The stop's watchdog (its own thread): end the process if the main thread is still
        held STOP_DEADLINE seconds after the stop.

        Once serve() is closing the transport, its loop has ended, so nothing holds the
        thread; that close is only slow (a loaded machine), and a second teardown here would
        race it: the watchdog waits for it longer (CLOSE_DEADLINE), then ends the process
        without closing again.  A close that serve() begins after this look waits for ours.
        """
        if self._served.wait(STOP_DEADLINE):
            return
        if self._closing.is_set():
            if not self._served.wait(CLOSE_DEADLINE):
                log.warning("closing the transport took over %.0f s: ending", CLOSE_DEADLINE)
                os._exit(0)
            return
        log.warning("the main thread is still held %.1f s after the stop: ending", STOP_DEADLINE)
        if self._before_forced_exit is not None:
            self._before_forced_exit()
        self.transport.close()
        os._exit(0)

    def _set_stopped(self) -> None:
        assert self._stopped is not None
        self._stopped.set()

    # -- for the shell's users (ipywidgets, comm) ------------------------------------------
    def get_parent(self, channel: str | None = None) -> Message:
        """The current request's message (ipywidgets' Output widget asks for it)."""
        request = current_request()
        return request.msg if request is not None else {}

    @property
    def is_main_thread(self) -> bool:
        return threading.current_thread() is threading.main_thread()
