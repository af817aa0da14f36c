"""The router: the one place where an incoming message's lane is decided.

A *lane* is one shell's loop and queues: the main shell's, or a subshell's (each subshell
has a thread and loop of its own).  Where a message goes:

=========================================  ==============================================
stdin ``input_reply``                      the stdin bridge (wakes the waiting ``input()``)
control (any type)                         the control queue: its own thread and loop,
                                           in order, always answered
shell ``comm_*`` and ``comm_info_request``  the main loop's comm queue, in order, whatever
                                           subshell the message names (see below)
shell, with ``subshell_id``                that subshell's lane (unknown: an error reply)
shell ``execute_request``                  the lane's execute queue, one at a time; a
                                           ``# task`` cell as a task of the lane's loop, a
                                           ``# thread`` cell on a thread of its own
shell, anything else                       the lane's queue of other requests, in order
=========================================  ==============================================

**Never deaf.**  The requests that only read (:data:`.responder.ASKS`: kernel_info,
comm_info, history, complete, ...) are handled on their lane's loop while that loop is free;
while it may be blocked by a cell, the router also hands them to the :class:`.Responder`,
which answers them elsewhere if the lane has not taken them up in time (see
:mod:`.responder`).

**Comms stay on the main loop.**  Comm callbacks touch the main shell's objects (a widget,
an asyncio future a cell awaits), so they run on the main loop, in order, also when
JupyterLab sends them over a subshell.  A blocked cell lets them through explicitly with
:func:`process_events`; so does ``input()`` while it waits.

**Threads.**  :meth:`Router.deliver` and :meth:`Lane.put` run on the delivering thread (the
transport's, or a loop reading its own channel); :meth:`Lane.run` on the lane's thread;
the control queue, and :meth:`Lane.close` (a subshell's delete), on the control thread;
:func:`process_events` and ``input()``'s wait on the main thread, inside a cell.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Literal, cast

import anyio

from ..interrupt import Latch, cell_facing
from ..parent import Request, current_request
from ..shell.namespaces import Namespace, set_namespace
from ..shell.stdin import StdinBridge
from ..toolkit.caller import Caller
from ..transport.wire import Message, error_content
from .queues import RequestQueue
from .responder import ASKS, Responder, answer_in, run_to_end

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..settings import Backend
    from ..shell.interactive import AsyncShell
    from ..transport import Transport
    from .replies import Replies

__all__ = ["COMMS", "CellMode", "Lane", "Router", "cell_mode", "process_events"]

log = logging.getLogger("async_kernel")

CellMode = Literal["queue", "task", "thread"]

COMMS = frozenset({"comm_open", "comm_msg", "comm_close"})
"""Comm messages: always on the main loop, in order."""


def cell_mode(msg: Message) -> CellMode:
    """How an execute request runs: first line ``# task`` / ``# thread``, or a metadata tag."""
    code = _field(msg.get("content"), "code")
    if isinstance(code, str) and code.startswith("#"):
        end = code.find("\n")
        first = (code if end < 0 else code[:end]).strip()
        if first in ("# task", "# thread"):
            return "task" if first == "# task" else "thread"
    tags = _field(msg.get("metadata"), "tags")
    if isinstance(tags, list):
        if "thread" in tags:
            return "thread"
        if "task" in tags:
            return "task"
    return "queue"


def _field(part: object, key: str) -> object:
    """``part[key]`` if ``part`` (a message's content or metadata, unchecked) is a dict."""
    return cast("dict[str, object]", part).get(key) if isinstance(part, dict) else None


class Lane:
    """One shell's loop and queues: the main shell, or a subshell.

    Executes wait for each other; other requests only for each other (their order matters,
    and trio starts a batch of new tasks in no fixed order).
    """

    def __init__(
        self, router: Router, caller: Caller, namespace: Namespace | None, subshell_id: str = ""
    ) -> None:
        self.router = router
        self.caller = caller
        self.namespace = namespace
        self.subshell_id = subshell_id
        self.executes = RequestQueue(caller, self.run)
        self.others = RequestQueue(caller, self.run)
        self.closing = False
        # Cells handed to this loop and not yet answered: while any is, the loop may be
        # blocked.  Two counters, each written by one thread only (no lock needed).
        self._cells_in = 0  # by the delivering thread
        self._cells_out = 0  # by this lane's thread
        self.handling = 0  # requests in hand on this loop (this lane's thread only)
        self._running: dict[int, Request] = {}  # by arrival number
        self._cell_started: anyio.Event | None = None
        # '# task' cells handed to this lane's loop, for a delete to answer those not yet
        # started (see close; what waits in the two queues, the queues tell).  Only the
        # delivering thread changes it (dropping the claimed ones at the front as it
        # appends); the control thread copies it.
        self._tasks_to_start: deque[Request] = deque()

    def start(self) -> None:
        self.executes.start()
        self.others.start()

    # -- routing (the delivering thread) ---------------------------------------------------
    def put(self, request: Request) -> None:
        msg_type = request.msg["msg_type"]
        is_cell = msg_type == "execute_request"
        if self.closing or (is_cell and self.router.exiting):
            self.router.answer_closed_soon(request)
            return
        if is_cell:
            mode = cell_mode(request.msg)
            if mode == "thread" and not self.router.single_thread:
                self.router.run_on_thread(request, self.namespace)
                return
            self._cells_in += 1
            if mode == "queue":
                self._hand_over(self.executes.put, request)
            else:
                _note_task(self._tasks_to_start, request)
                self._hand_over(functools.partial(self.caller.start_soon, self._run_task), request)
        elif msg_type in ASKS and self.may_be_blocked():
            # The responder takes it, or puts it on the lane's queue (through _put_other).
            self.router.responder.route(
                request, self.caller.thread, self.namespace, self._put_other
            )
        else:
            self._put_other(request)

    def _put_other(self, request: Request) -> None:
        self._hand_over(self.others.put, request)

    def _hand_over(self, hand: Callable[[Request], object], request: Request) -> None:
        """``hand(request)`` to this lane's loop, then the look at ``closing``: if the lane
        was deleted meanwhile (close, on the control thread), its look at what waits may
        have missed this one, handed over after it, and the loop may end (or have ended)
        before taking it up.  Whoever claims it first answers it."""
        try:
            hand(request)
        except RuntimeError:  # the deleted lane's loop has ended (trio: RunFinishedError)
            if not self.closing:
                raise
        if self.closing:
            self.router.answer_closed_soon(request)

    def may_be_blocked(self) -> bool:
        """Whether this lane's loop may not take up a request soon (asked off it, or with a
        cell in hand)."""
        if self.router.single_thread:
            return False
        return not self.caller.in_loop() or self.has_cells_in_hand() or self.handling > 0

    def has_cells_in_hand(self) -> bool:
        """Whether a cell delivered to this lane has not been answered yet (any thread)."""
        return self._cells_in != self._cells_out

    def cells_in_hand(self) -> list[int]:
        """The arrival numbers of the cells this lane has taken up and not answered: the
        one taken off its queue included, running or still being prepared (on this lane's
        thread, its signal handler, or any other).  Not those still waiting: an interrupt is
        for what runs, and one that came as a cell ended must not stop the next."""
        in_hand = [*self._running.values(), self.executes.current]  # (atomic copies)
        return sorted(
            {r.seq for r in in_hand if r is not None and r.msg["msg_type"] == "execute_request"}
        )

    def take_queued(self) -> list[Request]:
        """Remove and return this lane's queued execute requests (on this lane's thread).

        They will be answered without running (aborted), so they are counted out here: a
        cell counted in and never out would leave the lane looking busy for good.
        """
        taken = self.executes.take_all()
        self._cells_out += len(taken)
        return taken

    async def let_earlier_cells_start(self, seq: int) -> None:
        """Wait (on this lane's loop) while a cell that arrived before request ``seq`` waits
        to start on a free loop.  Not while a cell is in hand: it may await what the later
        request brings (a widget's value), and waiting would deadlock."""
        while self.handling == 0 and (first := self.executes.first_seq()) is not None:
            if first >= seq:
                return
            if self._cell_started is None:
                self._cell_started = anyio.Event()
            await self._cell_started.wait()

    # -- this lane's thread ----------------------------------------------------------------
    async def _run_task(self, request: Request) -> None:
        """Run a ``# task`` cell, unless a delete has answered it meanwhile (see close)."""
        if request.claim():
            await self.run(request)
        else:
            self._cells_out += 1

    async def run(self, request: Request) -> None:
        """Handle ``request`` on this lane's loop, in its namespace (claimed already)."""
        set_namespace(self.namespace)
        is_cell = request.msg["msg_type"] == "execute_request"
        if is_cell and self is self.router.main:
            # The comm messages that came before this cell are handled before it, as a
            # client expects (a slider moved, then a cell reading its value), and those that
            # came after it, after (a cell registering a comm target, then its comm_open):
            # the two queues are otherwise woken in whatever order the loop picks.
            self.router.run_waiting_comms(before=request.seq)
            started, self._cell_started = self._cell_started, None
            if started is not None:
                started.set()
        self.handling += 1
        # In hand (for an interrupt: cells_in_hand) before the look at ``closing``: a delete
        # sets that flag first, then interrupts what is in hand (see close).
        self._running[request.seq] = request
        try:
            if self.closing or (is_cell and self.router.exiting):  # deleted, or an exit came
                self.router.answer_closed(request)
            else:
                await self.router.replies.answer(request)
        finally:
            del self._running[request.seq]
            self.handling -= 1
            if is_cell:
                self._cells_out += 1
                self.router.shell.cells.forget_seq(request.seq)

    def close(self) -> None:
        """Delete this subshell's lane (on the control thread, at once: its own thread may
        be held by a cell).

        It takes no request any more: what nobody has taken up is answered here ('aborted'
        for executes, an error for the rest), and one that is being delivered now (put, on
        the delivering thread) is answered there.  Nothing is taken out of the queues (only
        their consumer pops, on this lane's thread): each request is claimed once, by this
        method, by put, or by the consumer, whose :meth:`run` then answers it unrun.  What
        runs is the caller's to interrupt (after this: run's look at ``closing`` comes after
        it puts its request in hand).  The loop ends once nothing runs on it (:meth:`_end`).
        """
        self.closing = True
        waiting = [*self.executes.waiting(), *self.others.waiting(), *self._tasks_to_start.copy()]
        for request in waiting:
            if request.claim():
                self.router.answer_closed(request)
        self.caller.start_soon(self._end)

    async def _end(self) -> None:
        """Stop this deleted lane's loop and thread once nothing is handled on it (on its own
        thread: it starts once the cell holding the loop, if any, gives it back)."""
        while self.handling:  # an interrupted cell ending, a request being answered
            await anyio.sleep(0.01)
        self.caller.stop()


def _note_task(tasks: deque[Request], request: Request) -> None:
    """Append ``request`` to a lane's ``tasks`` to start (on the delivering thread), after
    dropping those at the front that have been claimed (started, or answered elsewhere)."""
    while tasks and tasks[0].claimed:
        tasks.popleft()
    tasks.append(request)


class Router:
    """Decides every incoming message's lane (see the module's docstring)."""

    current: Router | None = None  # the serving kernel's, for process_events()

    def __init__(
        self,
        main: Caller,
        control: Caller,
        replies: Replies,
        shell: AsyncShell,
        transport: Transport,
        *,
        backend: Backend,
        single_thread: bool,
    ) -> None:
        self.replies = replies
        self.shell = shell
        self.backend: Backend = backend
        self.single_thread = single_thread
        self.main = Lane(self, main, None)
        # In arrival order with the main shell's cells too: a comm message waits for the
        # cells that came before it to start (in the queue, where process_events finds it).
        self.comms = RequestQueue(main, self._handle_comm, gate=self._let_earlier_cells_start)
        self.control = RequestQueue(control, replies.answer)
        self.responder = Responder(replies.answer, transport, backend)
        # input(): its replies come through deliver(); its waits let comm messages through.
        self.stdin = StdinBridge(transport, replies.flush_streams, self.wait_letting_comms_through)
        self._subshells: dict[str, Lane] = {}
        self._arrivals = itertools.count(1)  # deliver() runs on one thread at a time
        # An exit (``exit``/``quit`` in a cell) came: the kernel ends shortly, and cells not
        # started yet are answered 'aborted' instead of being run and then cut short.
        self.exiting = False

    def start(self) -> None:
        self.main.start()
        self.comms.start()
        self.control.start()
        Router.current = self

    def stop(self) -> None:
        """Shutdown: stop the subshells and the responder (their threads are daemons)."""
        if Router.current is self:
            Router.current = None
        lanes, self._subshells = list(self._subshells.values()), {}
        callers = [lane.caller for lane in lanes]
        for caller in callers:
            caller.stop()
        responder = self.responder.stop()
        if responder is not None:
            callers.append(responder)
        for caller in callers:
            caller.join(0.5)

    # -- subshells ---------------------------------------------------------------------------
    def add_subshell(self, subshell_id: str, namespace: Namespace | None) -> Lane:
        """Start a subshell's lane: a new thread and loop (call it off any loop: it waits)."""
        caller = Caller.start_new(self.backend, f"subshell-{subshell_id[:8]}")
        lane = Lane(self, caller, namespace, subshell_id)
        lane.start()
        self._subshells[subshell_id] = lane
        return lane

    def remove_subshell(self, subshell_id: str) -> Lane | None:
        return self._subshells.pop(subshell_id, None)

    def subshell(self, subshell_id: str) -> Lane | None:
        return self._subshells.get(subshell_id)

    @property
    def subshell_ids(self) -> list[str]:
        return list(self._subshells)

    def namespace_of(self, subshell_id: object) -> Namespace | None:
        """The namespace of the shell ``subshell_id`` names (None: the main one, shared);
        LookupError if there is no such subshell."""
        if not subshell_id:
            return None
        lane = self._subshells.get(subshell_id) if isinstance(subshell_id, str) else None
        if lane is None:
            raise LookupError(f"no subshell {subshell_id!r}")
        return lane.namespace

    def lane_of(self, request: Request | None) -> Lane | None:
        """The lane ``request`` was routed to (None: a '# thread' cell or an unknown one)."""
        if request is None:
            return None
        subshell_id = request.msg["header"].get("subshell_id")
        if not subshell_id:
            return self.main
        return self._subshells.get(subshell_id) if isinstance(subshell_id, str) else None

    def take_queued_executes(self) -> list[Request]:
        """Remove and return the execute_requests waiting behind the current one."""
        request = current_request()
        if request is None or cell_mode(request.msg) != "queue":
            return []  # a task or thread cell is in no queue: its failure aborts nothing
        lane = self.lane_of(request)
        return lane.take_queued() if lane is not None else []

    # -- routing (the transport's thread, or a loop reading its own channel) ----------------
    def deliver(self, channel: str, identities: list[bytes], msg: Message) -> None:
        """Hand a message to its lane; quick, never raises for a message's content."""
        if channel == "stdin":
            if msg["msg_type"] == "input_reply":
                self.stdin.on_reply(msg)
            else:
                log.warning("ignored %s on stdin", msg["msg_type"])
            return
        request = Request(msg, channel, identities, next(self._arrivals))
        if channel == "control":
            self.control.put(request)
            return
        if msg["msg_type"] in COMMS:
            self.comms.put(request)
            return
        if msg["msg_type"] == "comm_info_request":  # in order with the comms it lists
            if self.main.may_be_blocked():
                main = self.main.caller.thread
                self.responder.route(request, main, None, self.comms.put, in_order=True)
            else:
                self.comms.put(request)
            return
        subshell_id = msg["header"].get("subshell_id")
        if not subshell_id:
            self.main.put(request)
            return
        lane = self._subshells.get(subshell_id) if isinstance(subshell_id, str) else None
        if lane is None or lane.caller.stopped:
            self.main.caller.schedule(self._answer_unknown_subshell, request)
        else:
            lane.put(request)

    def _answer_unknown_subshell(self, request: Request) -> None:
        subshell_id = request.msg["header"].get("subshell_id")
        log.warning("%s for unknown subshell %r", request.msg["msg_type"], subshell_id)
        content = error_content("SubshellNotFound", f"no subshell with id {subshell_id!r}")
        if request.claim():
            self.replies.answer_unrun(request, content)

    def answer_closed(self, request: Request) -> None:
        """Answer a request its lane will never run (claimed): 'aborted' for executes (a
        deleted subshell's, or any after an exit), else an error."""
        if request.msg["msg_type"] == "execute_request":
            content = {"status": "aborted", "execution_count": self.shell.execution_count}
        else:
            content = error_content("SubshellDeleted", "the subshell was deleted")
        self.replies.answer_unrun(request, content)

    def answer_closed_soon(self, request: Request) -> None:
        """:meth:`answer_closed`, on the main loop, if nobody else claims it first: not here
        on the delivering thread, which holds the transport's lock (an answer may wait for
        room in the transport's queue, which that thread makes)."""
        self.main.caller.schedule(self._answer_closed_if_claimed, request)

    def _answer_closed_if_claimed(self, request: Request) -> None:
        if request.claim():
            self.answer_closed(request)

    def run_on_thread(self, request: Request, namespace: Namespace | None) -> None:
        """Handle ``request`` on a new worker thread with its own loop (a ``# thread`` cell)."""
        request.claim()
        answer = self.replies.answer
        Caller.spawn(answer_in, answer, request, namespace, backend=self.backend, name="cell")

    # -- comms on the main thread ------------------------------------------------------------
    async def _let_earlier_cells_start(self, request: Request) -> None:
        await self.main.let_earlier_cells_start(request.seq)

    async def _handle_comm(self, request: Request) -> None:
        set_namespace(None)
        await self.replies.answer(request)

    def process_events(self, timeout: float) -> int:
        """Run the comm messages waiting for the main shell, here (the main thread); with
        none waiting, wait up to ``timeout`` seconds for one."""
        deadline = time.monotonic() + timeout
        latch = Latch()
        while True:
            handled = self._comms_or_wakeup(latch, deadline - time.monotonic())
            if handled or time.monotonic() >= deadline:
                return handled

    def wait_letting_comms_through(self, wakeup: Latch) -> None:
        """One wait of a blocking kernel call (``input()``) until ``wakeup`` is set.

        On the main thread the comm messages that wait meanwhile run here, and one that
        arrives sets ``wakeup`` too; elsewhere the main loop runs them itself.
        """
        if threading.current_thread() is not self.main.caller.thread:
            wakeup.wait_for_cell()
        else:
            self._comms_or_wakeup(wakeup, None)

    def _comms_or_wakeup(self, wakeup: Latch, timeout: float | None) -> int:
        """Run the waiting comm messages; with none, wait for ``wakeup`` (which a comm
        message's arrival sets too) at most ``timeout`` seconds.  How many ran."""
        self.comms.waiter = wakeup  # before the look: a message put after it wakes us
        try:
            handled = self.run_waiting_comms()
            if not handled and (timeout is None or timeout > 0):
                wakeup.wait_for_cell(timeout)
            return handled
        finally:
            self.comms.waiter = None

    def run_waiting_comms(self, before: int | None = None) -> int:
        """Run the comm messages waiting for the main loop, here and now (those that arrived
        before request number ``before``, if given); how many ran."""
        handled = 0
        while (request := self.comms.take_one(before)) is not None:
            run_to_end(contextvars.copy_context(), self._handle_comm(request))
            handled += 1
        return handled


@cell_facing
def process_events(timeout: float = 0.0) -> int:
    """Let a blocking cell handle the comm messages that wait for it; returns how many ran.

    A cell that blocks the main thread (a loop polling a widget's value with ``time.sleep``)
    keeps widget messages waiting: they run on the main loop, which the cell holds.  Called
    in such a loop, this runs the waiting comm messages right here, in order, and nothing
    else (no other cell).  With none waiting it waits up to ``timeout`` seconds for one::

        slider = ipywidgets.IntSlider()
        display(slider)
        while slider.value < 5:
            async_kernel.process_events(timeout=0.05)

    Anywhere but the main thread (a subshell, a ``# thread`` cell) the main loop handles
    comm messages itself; this then only waits ``timeout`` seconds.
    """
    router = Router.current
    if router is None or threading.current_thread() is not router.main.caller.thread:
        if timeout > 0:
            Latch().wait_for_cell(timeout)  # (an interruption point, as a sleep is not)
        return 0
    return router.process_events(timeout)
