"""The plain host: no GUI, the backend owns the main thread directly.

Why: the default and cheapest way to run the kernel; kept behind the same
``run_with_host`` API so the kernel need not special-case it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, TypeVarTuple, Unpack

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from async_kernel.guest import Backend

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def run(backend: Backend, async_fn: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
    """Run ``async_fn(*args)`` with ``anyio.run`` on ``backend``."""

    async def main() -> T:
        return await async_fn(*args)

    return anyio.run(main, backend=backend)
