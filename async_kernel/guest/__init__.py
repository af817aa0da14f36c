"""Guest runs: an async backend (asyncio or trio) driven by a host event loop.

Why: GUI toolkits must own the main thread; the kernel's backend then runs as a
guest whose callbacks execute on that thread between the host's own events.
Both backends share trio's ``start_guest_run`` contract and return a handle
with a thread-safe ``cancel()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, TypeVarTuple, Unpack

from async_kernel.guest._outcome import GuestRunCancelled, Outcome
from async_kernel.settings import Backend

__all__ = ["Backend", "GuestRun", "GuestRunCancelled", "Outcome", "RunSoon", "start_guest_run"]

RunSoon = Callable[[Callable[[], object]], object]
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class GuestRun(Protocol):
    """What ``start_guest_run`` returns."""

    @property
    def done(self) -> bool:
        """True once ``done_callback`` has been called."""
        ...

    def cancel(self) -> None:
        """Ask the run to stop (thread-safe); ``done_callback`` still follows."""
        ...


def start_guest_run(
    backend: Backend,
    async_fn: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
    run_sync_soon_threadsafe: RunSoon,
    done_callback: Callable[[Outcome[T]], object],
    run_sync_soon_not_threadsafe: RunSoon | None = None,
) -> GuestRun:
    """Start ``async_fn(*args)`` on ``backend`` as a guest of the calling host loop.

    Call on the host thread.  ``done_callback`` gets an outcome (``unwrap()``
    returns the value or raises) once the run has fully shut down.
    """
    if backend == "asyncio":
        from async_kernel.guest import asyncio_guest as impl
    elif backend == "trio":
        from async_kernel.guest import trio_guest as impl
    else:
        raise ValueError(f"unknown backend {backend!r}: expected 'asyncio' or 'trio'")
    return impl.start_guest_run(
        async_fn,
        *args,
        run_sync_soon_threadsafe=run_sync_soon_threadsafe,
        done_callback=done_callback,
        run_sync_soon_not_threadsafe=run_sync_soon_not_threadsafe,
    )
