"""Run a coroutine function on a chosen backend, whatever backend the caller runs on.

Trio code from an asyncio cell (or the reverse) runs on the same thread where it can: a
*guest run* of the other library, driven by the running loop between its own callbacks
(see :mod:`async_kernel.guest`).  Where it cannot (no running loop, or a guest run of that
library already busy on this thread), it runs on a short-lived thread with its own loop.
Either way awaiting does not block the caller's loop, an error crosses back as itself, and
cancelling the awaiting task cancels the work (and the reverse: work that ends cancelled
raises :class:`~async_kernel.PendingCancelled` in the awaiting task).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import sniffio

from .caller import Backend, Caller
from .pending import Pending

__all__ = ["call_using_backend"]

T = TypeVar("T")

# Threads with a guest run going, per guest backend: one library runs once per thread.
_guests: set[tuple[int, str]] = set()
_guests_lock = threading.Lock()


async def call_using_backend(
    backend: Backend, async_fn: Callable[..., Awaitable[T]], *args: Any
) -> T:
    """``await call_using_backend("trio", fn, *args)``: the result of ``fn(*args)`` run on trio.

    On the running loop's own thread as a guest run when possible, else on a new thread.
    """
    try:
        current = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        current = None
    if current == backend:
        return await async_fn(*args)
    key = (threading.get_ident(), backend)
    with _guests_lock:
        as_guest = current in ("asyncio", "trio") and key not in _guests
        if as_guest:
            _guests.add(key)
    if not as_guest:
        return await Caller.spawn(async_fn, *args, backend=backend, name=f"{backend}-call")
    try:
        return await _as_guest(backend, async_fn, args)
    finally:
        with _guests_lock:
            _guests.discard(key)


async def _as_guest(backend: Backend, async_fn: Callable[..., Awaitable[T]], args: Any) -> T:
    from ..guest import GuestRunCancelled, Outcome, start_guest_run
    from .loops import threadsafe_runner

    pending: Pending[T] = Pending()
    run_soon = threadsafe_runner()

    def soon(step: Callable[[], object]) -> object:
        return run_soon(lambda: _as_step_of(step))

    async def main() -> T:
        sniffio.current_async_library_cvar.set(None)  # copied from the host's task
        return await async_fn(*args)

    def done(outcome: Outcome[T]) -> None:
        try:
            pending.set_result(outcome.unwrap())
        except GuestRunCancelled:
            pending.set_cancelled(f"the {backend} guest run was cancelled")
        except BaseException as err:
            if _is_cancellation(err):
                pending.set_cancelled(f"the {backend} work was cancelled")
            else:
                pending.set_exception(err)

    run = start_guest_run(backend, main, run_sync_soon_threadsafe=soon, done_callback=done)
    pending.set_canceller(run.cancel)
    try:
        return await pending
    except BaseException:
        # Cancelled here: the guest run was told to stop; it must be over before this
        # thread may start another of its library.
        import anyio

        with anyio.CancelScope(shield=True):
            await pending.wait(result=False, shield=True)
        raise


def _as_step_of(step: Callable[[], object]) -> None:
    """Run one step of the guest loop with the host library's name hidden from sniffio
    (trio names itself in a thread-local, which would win over the guest's own tasks)."""
    previous = sniffio.thread_local.name
    sniffio.thread_local.name = None
    try:
        step()
    finally:
        sniffio.thread_local.name = previous


def _is_cancellation(error: BaseException) -> bool:
    import asyncio

    if isinstance(error, asyncio.CancelledError):
        return True
    try:
        import trio
    except ImportError:  # pragma: no cover - trio is optional
        return False
    return isinstance(error, trio.Cancelled)
