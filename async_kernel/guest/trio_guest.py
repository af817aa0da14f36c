"""Run trio as a guest inside a host event loop: a thin wrapper over trio's own.

Why: give the host the same signature and the same cancellable handle as the
asyncio guest, so host code need not care which backend it drives.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar, TypeVarTuple, Unpack

from async_kernel.guest._outcome import GuestRunCancelled, Outcome

if TYPE_CHECKING:
    import trio

__all__ = ["TrioGuestRun", "start_guest_run"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
RunSoon = Callable[[Callable[[], object]], object]


class TrioGuestRun(Generic[T]):
    """Handle on one trio guest run; ``cancel()`` cancels a scope around ``async_fn``.

    Made by ``start_guest_run``: the constructor starts the run.
    """

    def __init__(
        self,
        async_fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: *Ts,
        run_sync_soon_threadsafe: RunSoon,
        done_callback: Callable[[Outcome[T]], object],
        run_sync_soon_not_threadsafe: RunSoon | None = None,
    ) -> None:
        import trio

        self._lock = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False
        self.done = False

        def on_done(result: Outcome[T]) -> None:
            self.done = True
            done_callback(result)

        trio.lowlevel.start_guest_run(
            self._run,
            async_fn,
            *args,
            run_sync_soon_threadsafe=run_sync_soon_threadsafe,
            run_sync_soon_not_threadsafe=run_sync_soon_not_threadsafe,
            done_callback=on_done,
        )

    def cancel(self) -> None:
        """Cancel the run. Thread-safe; a no-op once the run has finished."""
        import trio

        with self._lock:
            self._cancel_requested = True
            token, scope = self._token, self._scope
        if token is not None and scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)

    async def _run(self, async_fn: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
        import trio

        with trio.CancelScope() as scope:
            with self._lock:
                self._token, self._scope = trio.lowlevel.current_trio_token(), scope
                if self._cancel_requested:
                    scope.cancel()
            return await async_fn(*args)
        raise GuestRunCancelled("the host cancelled the guest run")


def start_guest_run(
    async_fn: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
    run_sync_soon_threadsafe: RunSoon,
    done_callback: Callable[[Outcome[T]], object],
    run_sync_soon_not_threadsafe: RunSoon | None = None,
) -> TrioGuestRun[T]:
    """Start ``async_fn(*args)`` as a trio guest run; see ``trio.lowlevel.start_guest_run``."""
    return TrioGuestRun(
        async_fn,
        *args,
        run_sync_soon_threadsafe=run_sync_soon_threadsafe,
        done_callback=done_callback,
        run_sync_soon_not_threadsafe=run_sync_soon_not_threadsafe,
    )
