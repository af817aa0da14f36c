"""Subshells (JEP 91): more shells in one kernel, each on its own thread and event loop.

A shell message whose header carries ``subshell_id`` runs in that subshell.  Each subshell is
a :class:`~.caller.Caller` on the kernel's backend with its own ordered queue of execute
requests, so it answers while the main shell (or another subshell) is busy, even blocked in
``time.sleep``.  All subshells share the one IPython shell (one history, one execution
count); what differs is the user namespace, chosen per task (see :mod:`.namespaces`).

Also here: how one execute request runs (:func:`cell_mode`): in its shell's queue (the
default), as a concurrent task (``# task``), or on a worker thread (``# thread``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any, Literal

import anyio

from .caller import Caller, Pending
from .interrupt import interrupt_cells_on_other_threads
from .namespaces import Namespace, new_namespace, set_namespace
from .parent import Request
from .request_queue import RequestQueue
from .shell import AsyncShell
from .wire import error_content

if TYPE_CHECKING:
    from .kernel import Kernel

__all__ = ["CellMode", "Subshell", "Subshells", "cell_mode", "run_on_thread"]

log = logging.getLogger("async_kernel.subshells")

CellMode = Literal["queue", "task", "thread"]
FEATURE = "kernel subshells"
CLOSE_GRACE = 1.0  # seconds a deleted subshell's cells get to end after being cancelled


def cell_mode(msg: dict[str, Any]) -> CellMode:
    """How an execute request runs: first line ``# task`` / ``# thread``, or a metadata tag."""
    content, metadata = msg.get("content"), msg.get("metadata")
    code = content.get("code") if isinstance(content, dict) else None
    if isinstance(code, str) and code.startswith("#"):
        end = code.find("\n")
        first = (code if end < 0 else code[:end]).strip()
        if first in ("# task", "# thread"):
            return "task" if first == "# task" else "thread"
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    if isinstance(tags, list):
        if "thread" in tags:
            return "thread"
        if "task" in tags:
            return "task"
    return "queue"


async def _handle_with(kernel: Kernel, request: Request, namespace: Namespace | None) -> None:
    set_namespace(namespace)
    await kernel.handle(request)


def run_on_thread(kernel: Kernel, request: Request, namespace: Namespace | None = None) -> None:
    """Handle ``request`` on a new worker thread with its own loop (a ``# thread`` cell)."""
    Caller.spawn(
        _handle_with, kernel, request, namespace, backend=kernel.settings.backend, name="cell"
    )


class Subshell:
    """One subshell: a caller (thread + loop), an execute queue and a user namespace."""

    def __init__(self, kernel: Kernel, subshell_id: str, namespace: Namespace | None) -> None:
        self.kernel = kernel
        self.id = subshell_id
        self.namespace = namespace
        self.caller = Caller.start_new(kernel.settings.backend, f"subshell-{subshell_id[:8]}")
        self._running: dict[anyio.CancelScope, Request] = {}
        self._closing = False
        # Executes wait for each other; other requests only for each other (their order
        # matters, and trio starts a batch of new tasks in no fixed order).
        self._executes = RequestQueue(self.caller, self._handle)
        self._others = RequestQueue(self.caller, self._handle)
        self._executes.start()
        self._others.start()

    # -- routing (transport thread) ------------------------------------------------------
    def deliver(self, request: Request) -> None:
        if self._closing:
            _answer_closed(self.kernel, request, "the subshell was deleted", busy=True)
            return
        if request.msg["msg_type"] != "execute_request":
            self._others.put(request)
            return
        mode = cell_mode(request.msg)
        if mode == "queue":
            self._executes.put(request)
        elif mode == "task":
            self.caller.start_soon(self._handle, request)
        else:
            run_on_thread(self.kernel, request, self.namespace)

    # -- this subshell's thread ----------------------------------------------------------
    async def _handle(self, request: Request) -> None:
        set_namespace(self.namespace)
        with anyio.CancelScope() as scope:
            self._running[scope] = request
            try:
                await self.kernel.handle(request)
            finally:
                del self._running[scope]
        if scope.cancelled_caught:
            _answer_closed(self.kernel, request, "the subshell was deleted", busy=False)

    def take_queued(self) -> list[Request]:
        """Remove and return this subshell's queued execute requests."""
        return self._executes.take_all()

    async def _close(self) -> None:
        """Interrupt what runs, answer what waits, then stop the caller."""
        self._closing = True
        for request in self._executes.take_all() + self._others.take_all():
            _answer_closed(self.kernel, request, "aborted", busy=True)
        self.kernel.shell.cancel_awaiting_cells()  # this thread's awaiting cells only
        with anyio.move_on_after(CLOSE_GRACE):
            while self._running:
                await anyio.sleep(0.01)
        for scope in list(self._running):
            scope.cancel()
        await anyio.sleep(0)  # let the cancelled handlers answer
        self.caller.stop()

    def close(self) -> Pending[None]:
        """Delete this subshell (thread-safe); the Pending is done when it has closed."""
        return self.caller.call_soon(self._close)


def _answer_closed(kernel: Kernel, request: Request, why: str, *, busy: bool) -> None:
    """Answer a request its subshell will never run: 'aborted' for executes, else an error."""
    if request.msg["msg_type"] == "execute_request":
        content = {"status": "aborted", "execution_count": kernel.shell.execution_count}
    else:
        content = error_content("SubshellDeleted", why)
    kernel.answer_unrun(request, content, busy=busy)


class Subshells:
    """The kernel's subshells: their control requests, routing, and shutdown."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._by_id: dict[str, Subshell] = {}

    def install(self) -> None:
        """Register the control handlers; not in single-thread mode (a subshell is a thread)."""
        if getattr(self.kernel, "single_thread", False):
            return
        handlers = self.kernel.handlers
        handlers.register("create_subshell_request", self.create_subshell_request)
        handlers.register("delete_subshell_request", self.delete_subshell_request)
        handlers.register("list_subshell_request", self.list_subshell_request)

    # -- control requests (control thread) -----------------------------------------------
    async def create_subshell_request(self, request: Request) -> dict[str, Any]:
        choice = request.msg["content"].get("user_ns", "own")
        if choice == "own":
            namespace: Namespace | None = new_namespace(self.kernel.shell)
        elif choice == "main":
            namespace = None
        elif isinstance(choice, str) and choice in self._by_id:
            namespace = self._by_id[choice].namespace
        else:
            raise ValueError(f"user_ns must be 'own', 'main' or a subshell id, not {choice!r}")
        subshell_id = str(uuid.uuid4())
        subshell = await anyio.to_thread.run_sync(Subshell, self.kernel, subshell_id, namespace)
        self._by_id[subshell_id] = subshell
        return {"status": "ok", "subshell_id": subshell_id}

    async def delete_subshell_request(self, request: Request) -> dict[str, Any]:
        subshell_id = request.msg["content"].get("subshell_id")
        subshell = self._by_id.pop(subshell_id, None) if isinstance(subshell_id, str) else None
        if subshell is None:
            return _unknown_content(subshell_id)
        closed = subshell.close()
        with anyio.move_on_after(CLOSE_GRACE + 1):
            await closed.wait()
        return {"status": "ok"}

    async def list_subshell_request(self, request: Request) -> dict[str, Any]:
        return {"status": "ok", "subshell_id": list(self._by_id)}

    # -- routing (transport thread) ------------------------------------------------------
    def deliver(self, subshell_id: object, request: Request) -> None:
        """Hand a shell message to its subshell; an unknown id gets an error reply."""
        subshell = self._by_id.get(subshell_id) if isinstance(subshell_id, str) else None
        if subshell is None or subshell.caller.stopped:
            self.kernel.main.schedule(self._answer_unknown, request)
        else:
            subshell.deliver(request)

    def _answer_unknown(self, request: Request) -> None:
        subshell_id = request.msg["header"].get("subshell_id")
        log.warning("%s for unknown subshell %r", request.msg["msg_type"], subshell_id)
        self.kernel.answer_unrun(request, _unknown_content(subshell_id))

    def take_queued_for(self, request: Request | None) -> list[Request] | None:
        """The queue behind ``request`` if it is not the main shell's (None: the main one)."""
        if request is None or request.msg["msg_type"] != "execute_request":
            return None
        if cell_mode(request.msg) != "queue":
            return []  # a task or thread cell is in no queue: its failure aborts nothing
        subshell_id = request.msg["header"].get("subshell_id")
        if not subshell_id:
            return None
        subshell = self._by_id.get(subshell_id) if isinstance(subshell_id, str) else None
        return subshell.take_queued() if subshell is not None else []

    def interrupt_all(self) -> None:
        """Cancel the awaiting cells off the main thread (subshells, ``# thread`` cells), each
        on its own loop; stop the Python code of running ones."""
        shell = self.kernel.shell
        main = threading.main_thread().ident
        for ident in shell.threads_with_awaiting_cells() - {main}:
            caller = Caller.of_thread(ident)
            if caller is not None:
                caller.schedule(shell.cancel_awaiting_cells)
        interrupt_cells_on_other_threads(AsyncShell.run_code.__code__)

    def stop_all(self) -> None:
        """Shutdown: stop every subshell's caller at once (their threads are daemons)."""
        subshells, self._by_id = list(self._by_id.values()), {}
        for subshell in subshells:
            subshell.caller.stop()
        for subshell in subshells:
            subshell.caller.join(0.5)


def _unknown_content(subshell_id: object) -> dict[str, Any]:
    return error_content("SubshellNotFound", f"no subshell with id {subshell_id!r}")
