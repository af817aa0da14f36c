"""Subshells (JEP 91): more shells in one kernel, each on its own thread and event loop.

A subshell is a :class:`~.router.Lane` with a caller of its own (see :mod:`.router` for how
its messages are routed), so it answers while the main shell or another subshell is busy,
even blocked in ``time.sleep``.  All subshells share the one IPython shell (one history, one
execution count).  As in JupyterLab and ipykernel, a subshell shares the main shell's user
namespace unless asked for its own (``{"user_ns": "own"}`` in the create request, or
``%subshell --new --own``); the namespace is chosen per task (see :mod:`.namespaces`).

The create, delete and list requests run on the control thread (a new subshell's thread is
started from a worker thread, since starting it waits); ``%subshell`` on the thread of the
cell that runs it; :meth:`Subshells.interrupt_all` on the control thread.  None of this
exists in single-thread mode (a subshell is a thread).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import anyio

from ..interrupt import interrupt_cells_on_other_threads
from ..parent import current_request
from ..shell.interactive import AsyncShell
from ..shell.namespaces import Namespace, new_namespace
from ..transport.wire import error_content

if TYPE_CHECKING:
    from ..cells import RunningCell
    from ..parent import Request
    from .replies import Replies, Reply
    from .router import Lane, Router

__all__ = ["Subshells"]

log = logging.getLogger("async_kernel.kernel.subshells")


class Subshells:
    """The subshells' control requests (create, delete, list), interrupts and magic."""

    def __init__(self, router: Router, shell: AsyncShell) -> None:
        self._router = router
        self._shell = shell

    def install(self, replies: Replies) -> None:
        """Register the control handlers and ``%subshell``."""
        replies.register("create_subshell_request", self.create_subshell_request)
        replies.register("delete_subshell_request", self.delete_subshell_request)
        replies.register("list_subshell_request", self.list_subshell_request)
        self._shell.magics_manager.register_function(self.magic, "line", "subshell")

    def namespace_for(self, choice: object) -> Namespace | None:
        """The namespace a new subshell gets: ``"main"`` (shared, the default), ``"own"`` (a
        fresh one) or another subshell's id (shared with it)."""
        if choice in (None, "main"):
            return None
        if choice == "own":
            return new_namespace(self._shell)
        lane = self._router.subshell(choice) if isinstance(choice, str) else None
        if lane is None:
            raise ValueError(f"user_ns must be 'main', 'own' or a subshell id, not {choice!r}")
        return lane.namespace

    def create(self, namespace: Namespace | None) -> str:
        """Start a subshell with ``namespace`` (None: the main one's); any thread but a
        loop's: it waits for the new thread."""
        subshell_id = str(uuid.uuid4())
        self._router.add_subshell(subshell_id, namespace)
        return subshell_id

    # -- control requests (control thread) -----------------------------------------------
    async def create_subshell_request(self, request: Request) -> Reply:
        choice = request.msg["content"].get("user_ns", "main")
        namespace = self.namespace_for(choice)  # a bad choice fails before a thread starts
        subshell_id = await anyio.to_thread.run_sync(self.create, namespace)
        return {"status": "ok", "subshell_id": subshell_id}

    async def delete_subshell_request(self, request: Request) -> Reply:
        subshell_id = request.msg["content"].get("subshell_id")
        lane = self._router.remove_subshell(subshell_id) if isinstance(subshell_id, str) else None
        if lane is None:
            return error_content("SubshellNotFound", f"no subshell with id {subshell_id!r}")
        # Answered at once, whatever the subshell's thread is doing: removed above (a
        # message for it now gets SubshellNotFound), it answers what waits and takes
        # nothing more (close), then its cells are interrupted (in that order: see close);
        # its loop and thread end by themselves once those cells have ended.
        lane.close()
        self.interrupt_lane(lane)
        return {"status": "ok"}

    async def list_subshell_request(self, request: Request) -> Reply:
        return {"status": "ok", "subshell_id": self._router.subshell_ids}

    # -- interrupts ------------------------------------------------------------------------
    def interrupt_lane(self, lane: Lane) -> None:
        """Interrupt the cells of ``lane`` (a subshell being deleted) as an interrupt_request
        does, and no others: those running on its thread, and the one it has in hand that
        has not started yet (it starts owed the interrupt)."""
        thread = lane.caller.thread.ident
        if thread is None:  # pragma: no cover - a lane's thread has started
            return
        for seq in lane.cells_in_hand():
            self._shell.interrupt_cell_in_hand(seq)
        self.interrupt_all(self._shell.cells.owe(thread))

    def interrupt_all(self, owed: list[RunningCell]) -> None:
        """Deliver the interrupt ``owed`` to the cells off the main thread (subshells,
        ``# thread`` cells): raised in the code of those that run, the await cancelled on
        its own loop for those that await (see interrupt.py)."""
        interrupt_cells_on_other_threads(owed, AsyncShell.run_code.__code__)

    # -- %subshell -------------------------------------------------------------------------
    def magic(self, line: str) -> None:
        """%subshell: this shell's subshell id (None for the main shell) and all subshells.

        ``%subshell --new`` starts a subshell sharing the main namespace, ``--new --own``
        one with a namespace of its own; its id is printed.
        """
        args = line.split()
        if "--new" in args:
            print(self.create(self.namespace_for("own" if "--own" in args else "main")))
            return
        request = current_request()
        here = request.msg["header"].get("subshell_id") if request is not None else None
        print(f"subshell id: {here or None}")
        print(f"subshell list: {self._router.subshell_ids}")
