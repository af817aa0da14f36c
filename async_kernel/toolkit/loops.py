"""The running loop of either backend, reached from any thread.

The few places where asyncio and trio differ for the toolkit: how another thread asks a
loop to run a function soon, how code tells it runs inside that loop, and how a fresh loop
starts in a copied context.  Everything else in the toolkit is written once, for both.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import sniffio

from ..settings import Backend

__all__ = ["Schedule", "loop_handles", "run_fresh", "run_guarded", "threadsafe_runner"]

log = logging.getLogger("async_kernel.toolkit.caller")

#: Thread-safe "run ``fn(*args)`` soon on that loop".
Schedule = Callable[..., None]


def run_guarded(backend: Backend, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
    """Run a scheduled callback; a failure is logged, never allowed to break the loop.

    Callbacks run outside any task, where sniffio (and so anyio) cannot tell the backend;
    naming it in sniffio's thread-local lets a callback start anyio tasks.
    """
    previous = sniffio.thread_local.name
    sniffio.thread_local.name = backend
    try:
        fn(*args)
    except Exception:
        log.exception("callback %r failed", fn)
    finally:
        sniffio.thread_local.name = previous


def loop_handles(backend: Backend) -> tuple[Schedule, Callable[[], bool]]:
    """For the loop running here: a thread-safe ``schedule(fn, *args)`` (each callback run
    through :func:`run_guarded`) and ``in_loop()``, whether the calling code runs inside it.
    """
    if backend == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()

        def schedule_trio(fn: Callable[..., object], *args: Any) -> None:
            token.run_sync_soon(run_guarded, "trio", fn, args)

        return schedule_trio, trio.lowlevel.in_trio_run
    import asyncio

    loop = asyncio.get_running_loop()

    def schedule_asyncio(fn: Callable[..., object], *args: Any) -> None:
        loop.call_soon_threadsafe(run_guarded, "asyncio", fn, args)

    def in_loop() -> bool:
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:  # no loop runs here
            return False

    return schedule_asyncio, in_loop


def threadsafe_runner() -> Callable[[Callable[[], object]], object]:
    """A thread-safe 'run this soon on the calling loop' for the running backend."""
    if sniffio.current_async_library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()
        return token.run_sync_soon
    import asyncio

    return asyncio.get_running_loop().call_soon_threadsafe


def run_fresh(async_fn: Callable[[], Awaitable[None]], backend: Backend) -> None:
    """anyio.run in a copied context, without the copied backend name sniffio would see."""
    sniffio.current_async_library_cvar.set(None)
    anyio.run(async_fn, backend=backend)
