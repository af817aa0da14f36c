"""An interrupted cell's Dask futures are cancelled.

Dask futures run on a cluster, not in the cell: interrupting the cell stops the cell's own
code, but the tasks it submitted would run on, holding the workers.  So when a cell ends
by an interrupt, the Dask futures created while it ran that are not finished yet are
cancelled (``Client.cancel``), on every live ``distributed.Client`` of the process.  Where
the cell kept them does not matter (a variable, a list, a task it started); futures that
existed before the cell started, or that are created after it ended, are left alone.

Nothing of ``distributed`` is patched: when a cell starts, the keys of each client's
``futures`` are noted (a set per client; nothing at all while ``distributed`` has not been
imported, which is never done here); on an interrupt, the new keys whose state is
unfinished are cancelled.  The cancel is not forced: a key another client also wants
(``fire_and_forget`` is one) goes on running for it.

The cancel itself runs on a worker thread through the client's own (blocking) API, which
hands it to the client's loop whatever thread that loop runs on: the kernel's own loop (an
asynchronous client on an asyncio kernel), the client's thread (a synchronous client), a
caller's thread, or an asyncio guest run on this thread.  A client whose loop no longer
runs (an asynchronous client of a ``call_using_backend("asyncio", ...)`` that has ended)
is skipped: it can no longer talk to its scheduler.
"""

from __future__ import annotations

import inspect
import logging
import sys
import weakref
from types import CodeType
from typing import Any, cast

import anyio

__all__ = ["CellFutures", "cancel_started_futures", "interrupted"]

log = logging.getLogger(__name__)

#: The longest an interrupted cell waits for its futures' cancel to reach each client's loop.
CANCEL_TIMEOUT = 10.0  # seconds
FLUSH_STEPS = 200  # of 10 ms: how long the cancel may wait for the client to send it
_UNFINISHED = frozenset({"pending", "lost"})  # FutureState.status of work still to come
_MESSAGE = "the cell that created it was interrupted"


def _live_clients() -> list[Any]:
    """Every running ``distributed.Client`` of the process (none if distributed is not
    imported)."""
    module = sys.modules.get("distributed.client")
    if module is None:
        return []
    instances: Any = getattr(getattr(module, "Client", None), "_instances", ())
    for _ in range(10):
        try:
            clients = list(instances)
            break
        except RuntimeError:  # the weak set changed size as we read it: a client came or went
            continue
    else:
        return []
    return [client for client in clients if getattr(client, "status", None) == "running"]


def _keys(client: Any) -> frozenset[Any]:
    """The keys of ``client``'s futures (its loop may change them while we read)."""
    for _ in range(10):
        try:
            return frozenset(client.futures)
        except RuntimeError:  # changed size during iteration
            continue
    return frozenset()


def _unfinished(client: Any, before: frozenset[Any]) -> list[Any]:
    """The keys of ``client``'s unfinished futures that are not in ``before``."""
    for _ in range(10):
        try:
            states = list(client.futures.items())
            break
        except RuntimeError:
            continue
    else:
        return []
    return [
        key
        for key, state in states
        if key not in before and getattr(state, "status", None) in _UNFINISHED
    ]


class CellFutures:
    """The Dask futures that exist as a cell starts: the keys of each live client's."""

    __slots__ = ("_before",)

    def __init__(self) -> None:
        self._before: dict[int, tuple[weakref.ref[Any], frozenset[Any]]] = {
            id(client): (weakref.ref(client), _keys(client)) for client in _live_clients()
        }

    def started_since(self) -> list[tuple[Any, list[Any]]]:
        """Each live client with the keys of its unfinished futures created since then."""
        found: list[tuple[Any, list[Any]]] = []
        for client in _live_clients():
            ref, before = self._before.get(id(client), (None, frozenset[Any]()))
            if ref is not None and ref() is not client:  # another client with a reused id
                before = frozenset[Any]()
            keys = _unfinished(client, before)
            if keys:
                found.append((client, keys))
        return found


def interrupted(error: BaseException | None) -> bool:
    """Whether a cell's error is an interrupt (alone or in an exception group)."""
    if isinstance(error, KeyboardInterrupt):
        return True
    if isinstance(error, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", error)  # what any group holds
        return group.subgroup(KeyboardInterrupt) is not None
    return False


async def cancel_started_futures(started: CellFutures) -> int:
    """Cancel the unfinished futures created since ``started``; how many were cancelled.

    Never raises (a cell's reply must not depend on a cluster); waits at most about
    CANCEL_TIMEOUT per client.
    """
    cancelled = 0
    for client, keys in started.started_since():
        try:
            if not client.loop.asyncio_loop.is_running():
                continue  # its loop has ended: nothing can reach its scheduler any more
            with anyio.move_on_after(CANCEL_TIMEOUT + 1):
                await anyio.to_thread.run_sync(_cancel, client, keys, abandon_on_cancel=True)
                cancelled += len(keys)
        except Exception:
            log.warning("cancelling the interrupted cell's Dask futures failed", exc_info=True)
    if cancelled:
        print(
            f"Cancelled {cancelled} unfinished Dask future{'s' if cancelled > 1 else ''} this "
            "cell started (%config AsyncShell.cancel_dask_on_interrupt = False keeps them).",
            file=sys.stderr,
        )
    return cancelled


def _cancel(client: Any, keys: list[Any]) -> None:
    """Cancel ``keys`` of ``client`` on its loop, from a worker thread (which waits)."""
    client.sync(_cancel_on_loop, client, keys, asynchronous=False, callback_timeout=CANCEL_TIMEOUT)


async def _cancel_on_loop(client: Any, keys: list[Any]) -> None:
    import asyncio

    from distributed import Future  # imported already: the client is one of its objects

    _quiet_orphaned_gathers(client)
    futures: list[Future[Any]] = [Future(key, client) for key in keys]
    options: dict[str, Any] = {}
    if "msg" in inspect.signature(client.cancel).parameters:  # distributed >= 2024.5
        options.update(reason="interrupted", msg=_MESSAGE)
    await client.cancel(futures, asynchronous=True, **options)
    # The cancel goes out with the client's next batch, from this loop: on the kernel's own
    # loop, a next cell that blocks would hold it back (and the cluster busy) until it ends.
    batched = getattr(client, "scheduler_comm", None)
    for _ in range(FLUSH_STEPS):
        await asyncio.sleep(0.01)
        if not getattr(batched, "buffer", None):
            break


def _quiet_orphaned_gathers(client: Any) -> None:
    """Take the errors of the waits a cancelled ``gather`` left behind (on its loop).

    ``Client.gather`` waits for each future in a task of its own; when the gather itself is
    cancelled (the awaiting cell was interrupted) those tasks live on, and once their
    futures are cancelled each ends with ``AllExit``, distributed's own signal, which
    nobody takes: asyncio would log each one, and the kernel would show each under the
    cell.  Those tasks can end with nothing else, and a gather still waiting on them gets
    the error all the same.
    """
    import asyncio

    wait_code = _gather_wait_code(client.__class__)
    if wait_code is None:
        return
    for task in asyncio.all_tasks():
        if getattr(task.get_coro(), "cr_code", None) is wait_code:
            task.add_done_callback(_take_error)


def _take_error(task: Any) -> None:
    if not task.cancelled():
        task.exception()  # marks it retrieved


def _gather_wait_code(client_class: type) -> CodeType | None:
    """The code of the per-future wait inside ``Client._gather`` (None if it has none)."""
    gather = getattr(client_class, "_gather", None)
    for const in getattr(getattr(gather, "__code__", None), "co_consts", ()):
        if isinstance(const, CodeType) and const.co_name == "wait":
            return const
    return None
